"""PNG plots: latency distribution per model and thread count, confusion matrix per model, accuracy vs threshold,
and reject rate against bin purity as the cost of a reject varies.

matplotlib is optional (``pip install 'smartbin[bench]'``, or ``apt install python3-matplotlib`` on a Pi): without
it the benchmark writes every other output and says that the plots were skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.bench.runner import Bench


def missing() -> str | None:
    """Why plots cannot be drawn (matplotlib not installed), or None when they can."""
    try:
        import matplotlib
    except ImportError:
        return "skipped: matplotlib is not installed (pip install 'smartbin[bench]' or apt install python3-matplotlib)"
    matplotlib.use("Agg")
    return None


def write(bench: Bench, report: dict[str, Any], out: Path) -> list[str]:
    """Draw every plot into ``out``; returns the file names written."""
    import matplotlib.pyplot as plt

    names = [latency(bench, out / "latency.png", plt)]
    for model in report["models"]:
        if model["accuracy"]:
            names.append(confusion(model, out / f"confusion-{model['name']}.png", plt))
    if any(model["accuracy"] for model in report["models"]):
        names.append(threshold(report, out / "threshold.png", plt))
    if any(model.get("reject_cost_curve") for model in report["models"]):
        names.append(reject_cost(report, out / "reject-cost.png", plt))
    return names


def latency(bench: Bench, path: Path, plt: Any) -> str:
    """Histogram of invoke and total latency per thread count, one panel per model."""
    figure, axes = plt.subplots(len(bench.models), 2, figsize=(11, 3.2 * len(bench.models)), squeeze=False)
    for row, model in zip(axes, bench.models, strict=True):
        for ax, stage in zip(row, ("invoke", "total"), strict=True):
            values = [p.latency_ms[stage] for p in model.passes if p.latency_ms[stage].size]
            if not values:
                continue
            low, high = min(v.min() for v in values), max(np.percentile(v, 99.5) for v in values)
            bins = np.linspace(low, max(high, low + 0.01), 60)
            for run, v in zip(model.passes, values, strict=True):
                ax.hist(v, bins=bins, histtype="step", linewidth=1.5,
                        label=f"{run.threads} thread(s): p50 {np.median(v):.3g} ms, p99 {np.percentile(v, 99):.3g}")
            ax.set(title=f"{model.name}: {stage}", xlabel="ms (clipped at p99.5)", ylabel="images")
            ax.legend(fontsize=8)
    return save(figure, path, plt)


def confusion(model: dict[str, Any], path: Path, plt: Any) -> str:
    """Confusion matrix, rows normalised to the share of each true class, counts written in the cells."""
    labels = model["accuracy"]["confusion"]["labels"]
    counts = np.array(model["accuracy"]["confusion"]["matrix"])
    support = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    size = 2 + 0.55 * len(labels)
    figure, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (t, p), count in np.ndenumerate(counts):
        if count:
            ax.text(p, t, str(count), ha="center", va="center", fontsize=7,
                    color="white" if shares[t, p] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="truth",
           title=f"{model['name']}: top-1 {100 * model['accuracy']['top1']:.1f} %")
    figure.colorbar(image, ax=ax, label="share of the true class")
    return save(figure, path, plt)


def threshold(report: dict[str, Any], path: Path, plt: Any) -> str:
    """Against the confidence threshold: top-1 accuracy of the accepted images (left), share rejected (right)."""
    figure, (accepted, rejected) = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in report["models"]:
        curve = model["accuracy"]["curve"] if model["accuracy"] else None
        if curve:
            accuracy = [np.nan if a is None else 100 * a for a in curve["accepted_accuracy"]]
            accepted.plot(curve["threshold"], accuracy, label=model["name"])
            rejected.plot(curve["threshold"], [100 * r for r in curve["rejected_share"]], label=model["name"])
    configured = report["settings"]["threshold"]
    for ax, title in ((accepted, "top-1 of the accepted images, %"), (rejected, "images to the reject bin, %")):
        ax.axvline(configured, color="grey", linewidth=1, label=f"configured threshold {configured:g}")
        ax.set(xlabel="confidence threshold", title=title, xlim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(figure, path, plt)


def reject_cost(report: dict[str, Any], path: Path, plt: Any) -> str:
    """Purity of the bins but the reject bin (pooled, and the worst one) against the reject rate, one point per
    reject cost, the configured setting ringed: where an operator picks the cost of a reject."""
    figure, ax = plt.subplots(figsize=(7.5, 5))
    configured = (report["settings"].get("decisions") or {}).get("costs") or {}
    for model in report["models"]:
        curve = model.get("reject_cost_curve")
        if not curve:
            continue
        rate = [100 * r for r in curve["reject_rate"]]
        for key, style in (("purity", "-o"), ("worst_purity", "--s")):
            values = [np.nan if v is None else 100 * v for v in curve[key]]
            ax.plot(rate, values, style, markersize=4,
                    label=f"{model['name']}: {'all bins' if key == 'purity' else 'worst bin'}")
            for x, y, cost in zip(rate, values, curve["reject_cost"], strict=True):
                if key == "purity":
                    ax.annotate(f"{cost:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
                if cost == configured.get("reject"):
                    ax.plot([x], [y], "o", markersize=11, fillstyle="none", color="black")
    ax.set(xlabel="items rejected, %", ylabel="purity of the bins but the reject bin, %",
           title="Reject rate against purity as costs.reject varies (labels: its value; ring: configured)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(figure, path, plt)


def save(figure: Any, path: Path, plt: Any) -> str:
    """Write and close a figure; returns its file name."""
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name
