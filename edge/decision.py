"""Decision: from the class probabilities of an item's frames to a bin, and why.

The frames' probabilities are averaged (a soft vote). Then, in order:

1. **quarantine**: an item whose calibrated probability of a hazardous class (a class of a bin marked
   ``hazardous``) reaches ``sorting.quarantine_p`` goes to that class's bin, whatever its top class;
2. with ``[costs]``, **expected cost**: the bin (or the reject bin) with the lowest expected cost
   ``sum over classes of P(class) * cost(class, bin)``; on a tie the top class's bin, then the reject bin;
3. without ``[costs]``, **threshold**: the top class's bin if its confidence reaches its threshold
   (``sorting.thresholds``, else ``sorting.threshold``), else the reject bin (the rule of earlier releases).

Costs and quarantine weigh probabilities calibrated with the card's temperature (``calibration.temperature``,
fitted on the validation split): a model trained with label smoothing is under-confident, and an expected cost
is only as good as its probabilities. Thresholds apply to the model's own confidence, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge.classifier import Prediction
from edge.config import Settings

Reason = Literal["top", "cost", "quarantine", "below threshold"]
REASONS: tuple[Reason, ...] = ("top", "cost", "quarantine", "below threshold")
REJECT = "reject"  # the destination of a rejected item: physically the reject bin


@dataclass(frozen=True)
class Decision:
    """What to do with one item: the bin, and why."""

    label: str
    confidence: float
    bin: str
    rejected: bool
    top: tuple[tuple[str, float], ...]
    frames: int
    reason: Reason = "top"
    expected_cost: float | None = None


@dataclass(frozen=True)
class Choices:
    """The decisions for N items at once (the bench decides every photo of a folder this way)."""

    destination: np.ndarray  # index into Decider.destinations: a bin, or the last one, REJECT
    reason: np.ndarray  # index into REASONS
    expected_cost: np.ndarray  # NaN where no cost table is configured


def calibrate(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of probabilities: softmax(log p / T) along the last axis (T = 1: unchanged)."""
    if temperature == 1.0:
        return probabilities
    with np.errstate(divide="ignore"):
        logits = np.log(probabilities.astype(np.float64)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=-1, keepdims=True)


class Decider:
    """Decides items by one rule: a cost table (``costs``: classes × destinations) or per-class thresholds."""

    def __init__(self, labels: Sequence[str], bin_of: Mapping[str, str], bins: Sequence[str], reject_bin: str,
                 *, thresholds: Sequence[float] | None = None, costs: np.ndarray | None = None,
                 hazardous: Sequence[str] = (), quarantine_p: float = 1.0, temperature: float = 1.0,
                 top_k: int = 5) -> None:
        if (thresholds is None) == (costs is None):
            raise ValueError("a Decider needs either thresholds or costs")
        self.labels = tuple(labels)
        self.bin_of = dict(bin_of)
        self.destinations = (*bins, REJECT)
        self.reject_bin = reject_bin
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        self.costs = None if costs is None else np.asarray(costs, dtype=np.float64)
        self.hazardous = np.array([self.labels.index(c) for c in hazardous], dtype=np.int64)
        self.quarantine_p = quarantine_p
        self.temperature = temperature
        self.top_k = top_k
        self.bin_index = np.array([self.destinations.index(self.bin_of[label]) for label in self.labels])

    @property
    def mode(self) -> str:
        """The rule in words, for the start line and the bench."""
        if self.costs is None:
            assert self.thresholds is not None
            low, high = float(self.thresholds.min()), float(self.thresholds.max())
            rule = f"threshold {low:g}" if low == high else f"thresholds {low:g}-{high:g} per class"
        else:
            rule = "expected cost"
        if len(self.hazardous):
            rule += f", quarantine at P({'/'.join(self.labels[i] for i in self.hazardous)}) >= {self.quarantine_p:g}"
        calibrated = self.costs is not None or len(self.hazardous)
        return rule + (f", calibration T={self.temperature:g}" if calibrated and self.temperature != 1.0 else "")

    def choose(self, probabilities: np.ndarray) -> Choices:
        """Decisions for the (already averaged) probabilities of N items, shape (N, classes)."""
        raw = np.asarray(probabilities, dtype=np.float64)
        calibrated = calibrate(raw, self.temperature)
        top = raw.argmax(axis=1)
        top_bin = self.bin_index[top]
        reject = len(self.destinations) - 1
        expected = calibrated @ self.costs if self.costs is not None else None
        if expected is not None:
            best = expected.min(axis=1, keepdims=True)
            tied = expected <= best + 1e-9
            # tie-break: the top class's bin, then the reject bin, then the bins in config order
            destination = np.where(tied[np.arange(len(raw)), top_bin], top_bin,
                                   np.where(tied[:, reject], reject, tied.argmax(axis=1)))
            reason = np.where(destination == top_bin, REASONS.index("top"), REASONS.index("cost"))
            cost = expected[np.arange(len(raw)), destination]
        else:
            assert self.thresholds is not None
            accepted = raw[np.arange(len(raw)), top] >= self.thresholds[top]
            destination = np.where(accepted, top_bin, reject)
            reason = np.where(accepted, REASONS.index("top"), REASONS.index("below threshold"))
            cost = np.full(len(raw), np.nan)
        if len(self.hazardous):
            hazard = calibrated[:, self.hazardous]
            quarantined = hazard.max(axis=1) >= self.quarantine_p
            hazard_bin = self.bin_index[self.hazardous[hazard.argmax(axis=1)]]
            destination = np.where(quarantined, hazard_bin, destination)
            reason = np.where(quarantined, REASONS.index("quarantine"), reason)
            if expected is not None:
                cost = np.where(quarantined, expected[np.arange(len(raw)), destination], cost)
        return Choices(destination, reason, cost)

    def decide(self, predictions: Sequence[Prediction]) -> Decision:
        """The decision for one item seen in ``predictions`` (one per frame, at least one)."""
        if not predictions:
            raise ValueError("an item needs at least one prediction")
        vote = Prediction(np.mean([p.probabilities for p in predictions], axis=0), predictions[0].labels)
        choice = self.choose(vote.probabilities[None, :])
        destination = self.destinations[int(choice.destination[0])]
        rejected = destination == REJECT
        cost = float(choice.expected_cost[0])
        return Decision(
            label=vote.label,
            confidence=vote.confidence,
            bin=self.reject_bin if rejected else destination,
            rejected=rejected,
            top=tuple(vote.top(self.top_k)),
            frames=len(predictions),
            reason=REASONS[int(choice.reason[0])],
            expected_cost=None if np.isnan(cost) else round(cost, 4),
        )


def cost_table(settings: Settings, labels: Sequence[str]) -> np.ndarray:
    """The configured cost of an item of each class (rows, in ``labels`` order) in each bin and rejected
    (columns: the bins in config order, then the reject bin). Requires ``[costs]``."""
    costs = settings.costs
    assert costs is not None
    bin_of = settings.bin_of()
    hazardous = set(settings.hazardous_classes)
    bins = list(settings.bins)
    table = np.zeros((len(labels), len(bins) + 1))
    for row, label in enumerate(labels):
        own = bin_of[label]
        for column, destination in enumerate((*bins, REJECT)):
            if label in hazardous and destination != own and not (destination == REJECT and
                                                                   settings.sorting.reject_bin == own):
                value = costs.hazardous_elsewhere
            elif destination == REJECT:
                value = costs.reject
            else:
                value = 0.0 if destination == own else costs.wrong_bin
            table[row, column] = costs.overrides.get(label, {}).get(destination, value)
    return table


def decider_for(settings: Settings, labels: Sequence[str], temperature: float = 1.0, top_k: int = 5,
                *, costs: bool | None = None) -> Decider:
    """The Decider the config asks for (``costs=False``: the threshold rule even where ``[costs]`` is set,
    without quarantine: the rule of earlier releases, which the bench reports beside the configured one)."""
    use_costs = settings.costs is not None if costs is None else costs
    sorting = settings.sorting
    return Decider(
        labels, settings.bin_of(), list(settings.bins), sorting.reject_bin,
        thresholds=None if use_costs else [sorting.thresholds.get(label, sorting.threshold) for label in labels],
        costs=cost_table(settings, labels) if use_costs else None,
        hazardous=settings.hazardous_classes if costs is not False else (),
        quarantine_p=sorting.quarantine_p, temperature=temperature, top_k=top_k,
    )
