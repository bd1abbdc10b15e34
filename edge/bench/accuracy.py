"""Accuracy figures from the probabilities and the truths, with numpy only.

Images whose truth (sub-folder name) is not a label of the model are counted under ``unknown_folders`` and
left out of every figure; images without a truth (directly in the images folder) are left out silently.
An image goes to the reject bin when its top-1 probability is below the threshold, as in the sorting loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

CURVE_STEPS = 101  # thresholds 0.00, 0.01, ..., 1.00


def evaluate(truths: Sequence[str | None], probabilities: np.ndarray, labels: Sequence[str],
             threshold: float) -> dict[str, Any] | None:
    """Every accuracy figure of one model; None when no image has a truth."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = Counter(t for t in truths if t is not None and t not in index)
    known = np.array([t in index for t in truths], dtype=bool)
    if not any(t is not None for t in truths):
        return None
    truth = np.array([index[t] for t in truths if t in index], dtype=np.int64)
    probs = probabilities[known]
    predicted = probs.argmax(axis=1) if len(truth) else np.empty(0, np.int64)
    confusion = confusion_matrix(truth, predicted, len(labels))
    return {
        "images": len(truth),
        "unknown_folders": dict(sorted(unknown.items())),
        "top1": share(predicted == truth),
        "top3": share(top_k_hits(probs, truth, 3)),
        **f1_scores(confusion),
        "per_class": per_class(confusion, labels),
        "confusion": {"rows": "truth", "columns": "predicted", "labels": list(labels),
                      "matrix": confusion.tolist()},
        "top_confusions": top_confusions(confusion, labels),
        "threshold": at_threshold(probs, truth, threshold),
        "curve": threshold_curve(probs, truth),
    }


def share(mask: np.ndarray) -> float | None:
    """Fraction of True in ``mask``; None if it is empty."""
    return float(np.mean(mask)) if mask.size else None


def top_k_hits(probabilities: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """Whether the truth is among the k most probable classes, per image (ties broken by label order)."""
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return (top == truth[:, None]).any(axis=1)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Counts: row = truth, column = prediction."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def class_f1(confusion: np.ndarray) -> np.ndarray:
    """F1 per class, 2·TP / (2·TP + FP + FN); 0 where the class is neither true nor predicted."""
    tp = np.diag(confusion).astype(float)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def f1_scores(confusion: np.ndarray) -> dict[str, float | None]:
    """F1 averaged over the classes present: weighted by their support, and unweighted (macro)."""
    support = confusion.sum(axis=1)
    f1 = class_f1(confusion)
    present = support > 0
    if not present.any():
        return {"f1_weighted": None, "f1_macro": None}
    return {"f1_weighted": float(np.average(f1, weights=support)), "f1_macro": float(f1[present].mean())}


def per_class(confusion: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, float | int | None]]:
    """Support, predictions, precision, recall and F1 per label (None where undefined: nothing to divide by)."""
    tp, predicted, support = np.diag(confusion), confusion.sum(axis=0), confusion.sum(axis=1)
    f1 = class_f1(confusion)
    return {label: {"support": int(support[i]), "predicted": int(predicted[i]),
                    "precision": float(tp[i] / predicted[i]) if predicted[i] else None,
                    "recall": float(tp[i] / support[i]) if support[i] else None,
                    "f1": float(f1[i])}
            for i, label in enumerate(labels)}


def top_confusions(confusion: np.ndarray, labels: Sequence[str], count: int = 10) -> list[dict[str, Any]]:
    """The most frequent mistakes: truth, predicted, count, and share of that truth's images."""
    errors = confusion.copy()
    np.fill_diagonal(errors, 0)
    order = np.argsort(-errors, axis=None, kind="stable")[:count]
    support = confusion.sum(axis=1)
    return [{"truth": labels[t], "predicted": labels[p], "count": int(errors[t, p]),
             "share_of_truth": float(errors[t, p] / support[t])}
            for t, p in (np.unravel_index(i, errors.shape) for i in order) if errors[t, p] > 0]


def at_threshold(probabilities: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, float | int | None]:
    """Images rejected at ``threshold``, the top-1 accuracy of the accepted rest, and the share of all images
    accepted with a wrong class (sorted wrongly unless both classes share a bin)."""
    accepted = probabilities.max(axis=1) >= threshold if len(truth) else np.empty(0, bool)
    correct = probabilities.argmax(axis=1) == truth if len(truth) else np.empty(0, bool)
    return {"value": threshold, "rejected": int((~accepted).sum()), "rejected_share": share(~accepted),
            "accepted_accuracy": share(correct[accepted]),
            "accepted_wrong_share": share(accepted & ~correct)}


def threshold_curve(probabilities: np.ndarray, truth: np.ndarray) -> dict[str, list[float | None]]:
    """Rejected share and accepted accuracy at thresholds 0.00 … 1.00 (for the plot)."""
    points = [at_threshold(probabilities, truth, round(float(t), 2)) for t in np.linspace(0, 1, CURVE_STEPS)]
    return {key: [p[source] for p in points]
            for key, source in (("threshold", "value"), ("rejected_share", "rejected_share"),
                                ("accepted_accuracy", "accepted_accuracy"))}
