"""Loop benchmark: per-stage latency of the sorting loop and its throughput as a share of the bare
``Interpreter.invoke`` rate of the same model, both measured in one run.

    .venv/bin/python -m edge.bench.loop --images DIR [--config F] [--items 200]

Runs the real loop on DIR's images as a camera's frames (``FolderSource(photo_items=False)``: unpaced, one item
per ``votes`` frames, mock pins, records in a temporary database), then invokes the same interpreter on a fixed
input as fast as it goes. The ratio is loop frames per second over bare invokes per second: near 1 means the
loop adds little to inference. Frames per item are counted from the records, not taken from the settings.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.app import Sorter
from edge.classifier import Classifier
from edge.config import Settings, load_settings
from edge.sources.folder import FolderSource


def measure(settings: Settings, images: Path, items: int) -> dict[str, float]:
    """Run ``items`` items through the loop, then the bare invoke; returns the figures."""
    frames = FolderSource(images, loop=True, photo_items=False)
    with tempfile.TemporaryDirectory() as tmp, \
            Sorter(with_bench_overrides(settings, Path(tmp)), source=frames) as sorter:
        sorter.loop.run(max_items=3)  # warm-up
        started = time.perf_counter()
        sorter.loop.run(max_items=items + 3)
        loop_s = time.perf_counter() - started
        timed = [r for r in sorter.records.recent(items) if r["outcome"] != "error"]
        latencies = [r["latency_ms"] for r in timed]
        classifier = sorter.classifier
        assert isinstance(classifier, Classifier)  # the settings' model, not a fake: its bare invoke is timed
        pixels = np.zeros((*classifier.input_size[::-1], 3), np.uint8)
        classifier.probabilities(pixels)
        started = time.perf_counter()
        for _ in range(items):
            classifier.invoke()
        invoke_s = time.perf_counter() - started
    figures = {f"{stage}_ms_p50": statistics.median(item[stage] for item in latencies) for stage in latencies[0]}
    figures["frames_per_item"] = statistics.mean(r["frames"] for r in timed)
    figures["loop_items_per_s"] = items / loop_s
    figures["invoke_per_s"] = items / invoke_s
    figures["ratio"] = figures["loop_items_per_s"] * figures["frames_per_item"] / figures["invoke_per_s"]
    return figures


def with_bench_overrides(settings: Settings, tmp: Path) -> Settings:
    """Unpaced replay, one item per ``votes`` frames, mock pins, records in ``tmp``, no kept frames."""
    return settings.model_copy(update={
        "camera": settings.camera.model_copy(update={"fps": 0.0}),
        "conveyor": settings.conveyor.model_copy(update={"trigger": "frames"}),
        "retrain": settings.retrain.model_copy(update={"enabled": False}),
        "gpio": settings.gpio.model_copy(update={"pin_factory": "mock"}),
        "records": settings.records.model_copy(update={"path": tmp / "items.db"}),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=None, help="settings (default: embedded)")
    parser.add_argument("--images", type=Path, required=True, help="folder of images to replay")
    parser.add_argument("--items", type=int, default=200, help="items to sort (default 200)")
    args = parser.parse_args()
    settings = load_settings(args.config)
    figures = measure(settings, args.images, args.items)
    for stage in ("preprocess", "classify", "decide", "plan", "total"):
        print(f"{stage:<11} p50 {figures[f'{stage}_ms_p50']:8.2f} ms")
    frames = figures["frames_per_item"]
    print(f"loop        {figures['loop_items_per_s']:8.2f} items/s ({frames:g} frame(s) per item: "
          f"{figures['loop_items_per_s'] * frames:.2f} frames/s)")
    print(f"bare invoke {figures['invoke_per_s']:8.2f} /s")
    print(f"loop / invoke ratio {figures['ratio']:.3f}")


if __name__ == "__main__":
    main()
