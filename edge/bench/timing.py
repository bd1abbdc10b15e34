"""One timed pass: one model at one thread count over every image, each stage timed on its own.

Per image: ``decode`` (read the file; a camera hands over decoded frames, so it is not part of ``total``),
``preprocess`` (crop, resize, set the input tensor), ``invoke``, ``postprocess`` (read and dequantize the output,
rank the top 3, as the loop does), and ``total`` = the last three. Peak RSS is the process's high-water mark,
reset before the model is built where Linux allows it (freed heap handed back with glibc's ``malloc_trim``,
then ``/proc/self/clear_refs``; ``rss_before`` is the RSS then), else the process's peak so far. The CPU time
other processes took during the timed images (``/proc/stat`` minus this process) says whether the machine was
quiet: a busy core slows a multi-threaded invoke down to the pace of its slowest thread.
"""

from __future__ import annotations

import ctypes
import gc
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.bench.dataset import BenchImage
from edge.classifier import Classifier, Prediction
from edge.errors import ImageError
from edge.images import read_rgb
from edge.preprocess import prepare
from edge.progress import Progress

STAGES = ("decode", "preprocess", "invoke", "postprocess", "total")
PERCENTILES = (50, 90, 99)


@dataclass
class Pass:
    """What one pass measured. ``latency_ms[stage]`` and ``probabilities`` have one row per readable image."""

    threads: int
    load_s: float
    peak_rss_bytes: int
    rss_before_bytes: int | None
    peak_scope: str
    other_cpu_share: float | None
    latency_ms: dict[str, np.ndarray]
    probabilities: np.ndarray
    readable: list[int]
    top3: list[list[tuple[str, float]]]
    unreadable: list[tuple[BenchImage, str]]

    @property
    def throughput(self) -> float:
        """Images per second, one after the other (from the summed per-image totals)."""
        total_s = float(self.latency_ms["total"].sum()) / 1000
        return len(self.readable) / total_s if total_s > 0 else 0.0


def cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine since boot, CPU seconds of this process); None off Linux."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (ticks + [0] * 8)[:8]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    machine = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return machine, usage.ru_utime + usage.ru_stime


def other_cpu_share(before: tuple[float, float] | None, wall_s: float) -> float | None:
    """Share of the machine's CPU time that other processes (or the hypervisor) took since ``before``."""
    after = cpu_seconds()
    if before is None or after is None or wall_s <= 0:
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    return min(max(others / (wall_s * (os.cpu_count() or 1)), 0.0), 1.0)


def stats(values_ms: np.ndarray) -> dict[str, float | int]:
    """n, mean, min, p50, p90, p99 and max of latencies in ms."""
    if values_ms.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(values_ms, PERCENTILES)
    return {"n": int(values_ms.size), "mean": float(values_ms.mean()), "min": float(values_ms.min()),
            "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(values_ms.max())}


def peak_rss_bytes() -> int:
    """The process's peak resident set size (getrusage)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_rss() -> bool:
    """Free what can be freed, then reset the peak RSS to the current RSS (Linux ≥ 4.0); False where the reset
    is not possible."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)  # glibc keeps freed heap (decoded photos, a closed model) otherwise
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def load(model: Path, threads: int) -> tuple[Classifier, float, list[str]]:
    """Build the classifier; returns it, the seconds it took, and what the runtime logged meanwhile."""
    started = time.perf_counter()
    classifier = Classifier(model, threads)
    return classifier, time.perf_counter() - started, classifier.runtime_log


def warm_up(classifier: Classifier, pixels: np.ndarray, count: int) -> float:
    """Invoke ``count`` times on ``pixels``; returns the first invoke's ms."""
    classifier.set_input(pixels)
    started = time.perf_counter()
    classifier.invoke()
    first_ms = (time.perf_counter() - started) * 1000
    for _ in range(count - 1):
        classifier.invoke()
    return first_ms


def time_image(classifier: Classifier, path: Path) -> tuple[list[float], Prediction, list[tuple[str, float]]]:
    """Seconds per stage (in STAGES order), the prediction and its top 3 for one image file; ImageError if the
    file is unreadable."""
    t0 = time.perf_counter()
    frame = read_rgb(path)
    t1 = time.perf_counter()
    classifier.set_input(prepare(frame, classifier.input_size))
    t2 = time.perf_counter()
    classifier.invoke()
    t3 = time.perf_counter()
    prediction = Prediction(classifier.output(), classifier.labels)
    top = prediction.top(3)
    t4 = time.perf_counter()
    return [t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t1], prediction, top


def run_pass(model: Path, threads: int, images: Sequence[BenchImage], warmup: int, progress: Progress,
             label: str) -> Pass:
    """Build ``model`` with ``threads`` threads, warm it up, then time every image (see the module docstring)."""
    reset = reset_peak_rss()
    rss_before = peak_rss_bytes() if reset else None
    classifier, load_s, _ = load(model, threads)
    seconds: list[list[float]] = []
    predictions: list[Prediction] = []
    tops: list[list[tuple[str, float]]] = []
    readable: list[int] = []
    unreadable: list[tuple[BenchImage, str]] = []
    with classifier:
        width, height = classifier.input_size
        warm_up(classifier, np.full((height, width, 3), 128, np.uint8), warmup)
        started, cpu_before = time.perf_counter(), cpu_seconds()
        for index, image in enumerate(images):
            progress.advance(task=label)
            try:
                row, prediction, top = time_image(classifier, image.path)
            except ImageError as exc:
                unreadable.append((image, str(exc)))
                continue
            seconds.append(row)
            predictions.append(prediction)
            tops.append(top)
            readable.append(index)
        others = other_cpu_share(cpu_before, time.perf_counter() - started)
    times = np.array(seconds, dtype=np.float64).reshape(-1, len(STAGES)) * 1000
    return Pass(
        threads=threads, load_s=load_s, peak_rss_bytes=peak_rss_bytes(), rss_before_bytes=rss_before,
        peak_scope="this pass" if reset else "process", other_cpu_share=others,
        latency_ms={stage: times[:, i] for i, stage in enumerate(STAGES)},
        probabilities=np.array([p.probabilities for p in predictions], np.float32).reshape(-1, len(classifier.labels)),
        readable=readable, top3=tops, unreadable=unreadable,
    )
