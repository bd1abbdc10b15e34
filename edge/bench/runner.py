"""The benchmark run: cold start of each model, then one timed pass per model and thread count, then accuracy."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edge.bench.accuracy import evaluate
from edge.bench.bins import sorting_report
from edge.bench.dataset import ImageSet, collect
from edge.bench.model_info import delegation, memory, ops_of
from edge.bench.platform_info import platform_info
from edge.bench.timing import Pass, load, run_pass, warm_up
from edge.config import Settings
from edge.model_card import ModelCard, sha256_of
from edge.progress import Progress


@dataclass(frozen=True)
class Options:
    """What to benchmark; see ``smartbin bench --help``."""

    models: tuple[Path, ...]
    images: Path
    threads: tuple[int, ...]
    threshold: float
    votes: int = 1
    warmup: int = 5
    manifest: Path | None = None
    split: str | None = None
    max_images: int | None = None
    config: Settings | None = field(default=None, compare=False)  # bins, costs, quarantine: the sorting figures


@dataclass
class ModelRun:
    """One model: what it is, its cold start, its passes (one per thread count) and its accuracy."""

    name: str
    path: Path
    labels: tuple[str, ...]
    info: dict[str, Any]
    temperature: float = 1.0
    passes: list[Pass] = field(default_factory=list)
    accuracy: dict[str, Any] | None = None
    sorting: dict[str, Any] | None = None


@dataclass
class Bench:
    """A finished benchmark run."""

    options: Options
    image_set: ImageSet
    platform: dict[str, Any]
    models: list[ModelRun]
    created: str
    elapsed_s: float


def run(options: Options, stream: TextIO | None = None) -> Bench:
    """Run the benchmark; the progress bar goes to ``stream`` (default stderr)."""
    started = time.monotonic()
    created = datetime.now(UTC).isoformat(timespec="seconds")
    image_set = collect(options.images, options.manifest, options.split, options.max_images)
    platform = platform_info()
    models = [cold_start(path, name, options.threads[0])
              for path, name in zip(options.models, unique_names(options.models), strict=True)]
    images = image_set.images
    progress = Progress("benchmark", len(models) * len(options.threads) * len(images), stream, every=10.0)
    for model in models:
        for threads in options.threads:
            model.passes.append(run_pass(model.path, threads, images, options.warmup, progress,
                                         f"{model.name} ×{threads}"))
        first = model.passes[0]
        truths = [images[i].truth for i in first.readable]
        model.accuracy = evaluate(truths, first.probabilities, model.labels, options.threshold)
        known = [i for i, t in enumerate(truths) if t in model.labels]
        if options.config is not None and known:
            truth = np.array([model.labels.index(truths[i]) for i in known])
            model.sorting = sorting_report(options.config, model.labels, model.temperature,
                                           first.probabilities[known], truth)
    progress.finish()
    return Bench(options, image_set, platform, models, created, time.monotonic() - started)


def cold_start(path: Path, name: str, threads: int) -> ModelRun:
    """Build the model for the first time in this process: load time, first invoke, what the runtime made of it."""
    classifier, load_s, log = load(path, threads)
    with classifier:
        width, height = classifier.input_size
        first_invoke_ms = warm_up(classifier, np.full((height, width, 3), 128, np.uint8), 1)
        ops = ops_of(classifier.interpreter)
        info = {
            "path": str(path), "sha256": sha256_of(path), "size_bytes": path.stat().st_size,
            "runtime": classifier.runtime,
            "card": card_summary(classifier.card), "input_quantization": list(classifier.input_quantization),
            "cold_start": {"threads": threads, "load_s": load_s, "first_invoke_ms": first_invoke_ms},
            "xnnpack": delegation(ops, log),
            "memory": memory(classifier.interpreter, ops),
        }
        return ModelRun(name, path, classifier.labels, info, classifier.card.temperature)


def unique_names(paths: tuple[Path, ...]) -> list[str]:
    """File stems, numbered where two models share one (they name the per-model files)."""
    stems = [p.stem for p in paths]
    return [f"{stem}-{i + 1}" if stems.count(stem) > 1 else stem for i, stem in enumerate(stems)]


def card_summary(card: ModelCard) -> dict[str, Any]:
    """The card's labels, input size and quantization mode."""
    quantization = card.extra.get("quantization")
    return {"labels": list(card.labels), "input": {"width": card.input.width, "height": card.input.height},
            "quantization": quantization.get("mode") if isinstance(quantization, dict) else None}
