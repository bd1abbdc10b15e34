"""Classification metrics in plain numpy: confusion matrix, top-1, per-class precision/recall/F1, weighted F1."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np


def confusion(true: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """Confusion counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (np.asarray(true), np.asarray(pred)), 1)
    return matrix


def summary(true: np.ndarray, pred: np.ndarray, labels: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Top-1, weighted and macro F1, per-class precision/recall/F1/support, and the confusion matrix."""
    matrix = confusion(true, pred, len(labels))
    hits = np.diag(matrix).astype(np.float64)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(hits), where=denom > 0)
    return {
        "images": int(support.sum()),
        "top1": float(hits.sum() / max(support.sum(), 1)),
        "weighted_f1": float((f1 * support).sum() / max(support.sum(), 1)),
        "macro_f1": float(f1.mean()),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "confusion": matrix.tolist(),
    }


def top_confusions(matrix: np.ndarray, labels: list[str] | tuple[str, ...], k: int = 5) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal cells: true label, predicted label, count."""
    off = np.array(matrix, copy=True)
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    cells = [np.unravel_index(i, off.shape) for i in order]
    return [{"true": labels[t], "predicted": labels[p], "count": int(off[t, p])} for t, p in cells if off[t, p]]


def machine() -> dict[str, Any]:
    """CPU model, core count, OS and Python of this machine, for the record."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "os": platform.platform(), "python": platform.python_version()}
