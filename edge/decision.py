"""Decision: from the class probabilities of an item's frames to a label, a confidence and a bin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edge.classifier import Prediction


@dataclass(frozen=True)
class Decision:
    """What to do with one item: the bin, and why."""

    label: str
    confidence: float
    bin: str
    rejected: bool
    top: tuple[tuple[str, float], ...]
    frames: int


class Decider:
    """Averages the probabilities of an item's frames (a soft vote), takes the most probable class, and sends
    the item to its class's bin, or to ``reject_bin`` when the confidence is below ``threshold``."""

    def __init__(self, bin_of: Mapping[str, str], threshold: float, reject_bin: str, top_k: int = 5) -> None:
        self.bin_of = dict(bin_of)
        self.threshold = threshold
        self.reject_bin = reject_bin
        self.top_k = top_k

    def decide(self, predictions: Sequence[Prediction]) -> Decision:
        """The decision for one item seen in ``predictions`` (one per frame, at least one)."""
        if not predictions:
            raise ValueError("an item needs at least one prediction")
        vote = Prediction(np.mean([p.probabilities for p in predictions], axis=0), predictions[0].labels)
        rejected = vote.confidence < self.threshold
        return Decision(
            label=vote.label,
            confidence=vote.confidence,
            bin=self.reject_bin if rejected else self.bin_of[vote.label],
            rejected=rejected,
            top=tuple(vote.top(self.top_k)),
            frames=len(predictions),
        )
