"""What lands where: per-bin purity and recall, the hazardous leak, the reject rate and the cost of a rule.

An item lands in its decision's bin; a rejected one in the reject bin. Purity of a bin: the share of the items
that landed there whose class belongs there; recall: the share of the items that belong there that landed
there. The hazardous leak: the share of items of a hazardous bin's class that landed in any other bin. The
cost per 1,000 items: the configured cost table (``[costs]``, or its defaults) summed over what happened.
Shares are fractions 0-1, None where there is nothing to divide by.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.bench.accuracy import share
from edge.config import CostSettings, Settings
from edge.decision import REASONS, REJECT, Decider, cost_table, decider_for

REJECT_COSTS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)  # the curve, and what tune tries


def with_costs(settings: Settings, **changes: float) -> Settings:
    """``settings`` with a cost table (its own, or the defaults where it has none), ``changes`` applied."""
    costs = settings.costs or CostSettings()
    return settings.model_copy(update={"costs": costs.model_copy(update=changes)})


def landed(decider: Decider, destination: np.ndarray) -> np.ndarray:
    """The bin index (into ``decider.destinations``) each item physically reaches: rejects reach the reject bin."""
    reject = len(decider.destinations) - 1
    return np.where(destination == reject, decider.destinations.index(decider.reject_bin), destination)


def figures(decider: Decider, settings: Settings, probabilities: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Every figure of one rule on items with known truths (``truth``: label indices into ``decider.labels``)."""
    choices = decider.choose(probabilities)
    where = landed(decider, choices.destination)
    belongs = decider.bin_index[truth]
    bins: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(decider.destinations[:-1]):
        here, own = where == index, belongs == index
        bins[name] = {"items": int(here.sum()), "belonging": int(own.sum()),
                      "purity": share(own[here]), "recall": share(here[own])}
    hazardous = np.isin(truth, [decider.labels.index(c) for c in settings.hazardous_classes])
    costs = cost_table(with_costs(settings), decider.labels)
    reasons = {reason: int(np.sum(choices.reason == i)) for i, reason in enumerate(REASONS)}
    return {
        "rule": decider.mode,
        "items": len(truth),
        "bins": bins,
        "hazardous_items": int(hazardous.sum()),
        "hazardous_leaked": int((hazardous & (where != belongs)).sum()),
        "hazardous_leak": share((where != belongs)[hazardous]),
        "reject_rate": share(choices.destination == len(decider.destinations) - 1),
        "right_bin": share(where == belongs),
        "cost_per_1000": float(costs[truth, choices.destination].mean() * 1000) if len(truth) else None,
        "reasons": reasons,
    }


def pooled_purity(result: dict[str, Any], skip: str) -> float | None:
    """Purity of every bin but ``skip`` (the reject bin) taken together."""
    kept = [b for name, b in result["bins"].items() if name != skip and b["items"]]
    total = sum(b["items"] for b in kept)
    return sum(b["purity"] * b["items"] for b in kept) / total if total else None


def reject_cost_curve(settings: Settings, labels: Sequence[str], temperature: float, probabilities: np.ndarray,
                      truth: np.ndarray) -> dict[str, list[float | None]]:
    """Reject rate, pooled purity and the worst bin's purity (bins but the reject bin) as the reject cost
    varies over REJECT_COSTS, the rest of the cost table as configured: the operator's trade-off."""
    curve: dict[str, list[float | None]] = {"reject_cost": [], "reject_rate": [], "purity": [], "worst_purity": [],
                                            "hazardous_leak": []}
    reject_bin = settings.sorting.reject_bin
    for cost in REJECT_COSTS:
        variant = with_costs(settings, reject=cost)
        result = figures(decider_for(variant, labels, temperature), variant, probabilities, truth)
        purities = [b["purity"] for name, b in result["bins"].items() if name != reject_bin and b["items"]]
        curve["reject_cost"].append(cost)
        curve["reject_rate"].append(result["reject_rate"])
        curve["purity"].append(pooled_purity(result, reject_bin))
        curve["worst_purity"].append(min(purities) if purities else None)
        curve["hazardous_leak"].append(result["hazardous_leak"])
    return curve


def sorting_report(settings: Settings, labels: Sequence[str], temperature: float, probabilities: np.ndarray,
                   truth: np.ndarray) -> dict[str, Any]:
    """The configured rule's figures, the same for the single-threshold rule of earlier releases, and the
    reject-cost curve."""
    configured = figures(decider_for(settings, labels, temperature), settings, probabilities, truth)
    old = figures(decider_for(settings, labels, temperature, costs=False), settings, probabilities, truth)
    return {**configured, "threshold_rule": old,
            "reject_cost_curve": reject_cost_curve(settings, labels, temperature, probabilities, truth),
            "destinations": [*settings.bins, REJECT]}
