"""Loop benchmark: per-stage latency of the sorting loop and its throughput as a share of the bare
``Interpreter.invoke`` rate of the same model, both measured in one run.

    .venv/bin/python -m edge.loop_benchmark [--config F] [--items 200] [--source SPEC]

Runs the real loop (synthetic conveyor unpaced, mock pins, records in a temporary database), then invokes the
same interpreter on a fixed input as fast as it goes. A ratio near 1 means the loop adds little to inference.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.app import Sorter
from edge.config import Settings, load_settings


def measure(settings: Settings, items: int) -> dict[str, float]:
    """Run ``items`` items through the loop, then the bare invoke; returns the figures."""
    with tempfile.TemporaryDirectory() as tmp, Sorter(with_bench_overrides(settings, Path(tmp))) as sorter:
        sorter.loop.run(max_items=3)  # warm-up
        started = time.perf_counter()
        sorter.loop.run(max_items=items + 3)
        loop_s = time.perf_counter() - started
        latencies = [r["latency_ms"] for r in sorter.records.recent(items)]
        pixels = np.zeros((*sorter.classifier.input_size[::-1], 3), np.uint8)
        sorter.classifier.probabilities(pixels)
        started = time.perf_counter()
        for _ in range(items):
            sorter.classifier.invoke()
        invoke_s = time.perf_counter() - started
    figures = {f"{stage}_ms_p50": statistics.median(l[stage] for l in latencies) for stage in latencies[0]}
    figures["loop_items_per_s"] = items / loop_s
    figures["invoke_per_s"] = items / invoke_s
    figures["ratio"] = figures["loop_items_per_s"] / figures["invoke_per_s"] * settings.sorting.votes
    return figures


def with_bench_overrides(settings: Settings, tmp: Path) -> Settings:
    """Unpaced camera, mock pins, records in ``tmp``."""
    return settings.model_copy(update={
        "camera": settings.camera.model_copy(update={"fps": 0.0}),
        "gpio": settings.gpio.model_copy(update={"pin_factory": "mock"}),
        "records": settings.records.model_copy(update={"path": tmp / "items.db"}),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=None, help="settings (default: embedded)")
    parser.add_argument("--items", type=int, default=200, help="items to sort (default 200)")
    parser.add_argument("--source", help="camera source spec (default: the config's)")
    args = parser.parse_args()
    settings = load_settings(args.config)
    if args.source:
        settings = settings.model_copy(update={"camera": settings.camera.model_copy(update={"source": args.source})})
    figures = measure(settings, args.items)
    for stage in ("capture", "preprocess", "classify", "decide", "actuate", "total"):
        print(f"{stage:<11} p50 {figures[f'{stage}_ms_p50']:8.2f} ms")
    print(f"loop        {figures['loop_items_per_s']:8.2f} items/s ({settings.sorting.votes} frame(s) per item)")
    print(f"bare invoke {figures['invoke_per_s']:8.2f} /s")
    print(f"loop / invoke ratio {figures['ratio']:.3f}")


if __name__ == "__main__":
    main()
