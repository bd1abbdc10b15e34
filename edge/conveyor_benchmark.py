"""Conveyor benchmark: the whole line on the belt simulator with real photos, at several belt speeds.

    .venv/bin/python -m edge.conveyor_benchmark --images ../shared/data/garbage12 --speeds 0.2,0.4 --items 40

For each speed: items per minute sustained, the share of items that reached the bin their class belongs to
(read from the mock gate pins, not from the sorter's intentions), and the shares rejected, late, too close and
failed. Uses the config's model, bins and gates (default: the embedded config with the bundled model).
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

from edge.config import Settings, load_settings
from edge.simulation import simulate


def at_speed(settings: Settings, images: Path, speed: float, records: Path) -> Settings:
    """The settings on the simulator with real photos at belt speed ``speed``, mock pins, records in ``records``."""
    return settings.model_copy(update={
        "camera": settings.camera.model_copy(update={"source": "synthetic"}),
        "conveyor": settings.conveyor.model_copy(update={"belt_speed_m_s": speed, "trigger": "vision"}),
        "simulator": settings.simulator.model_copy(update={"items": images}),
        "gpio": settings.gpio.model_copy(update={"pin_factory": "mock"}),
        "records": settings.records.model_copy(update={"path": records}),
        "retrain": settings.retrain.model_copy(update={"enabled": False}),
    })


def measure(settings: Settings, images: Path, speed: float, items: int) -> dict[str, float]:
    """One run at one speed; returns the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        result, elapsed = simulate(at_speed(settings, images, speed, Path(tmp) / "items.db"), items)
    outcomes = Counter(r.record["outcome"] for r in result)
    n = len(result)
    return {
        "speed_m_s": speed,
        "items": n,
        "items_per_min": n / elapsed * 60,
        "correct_bin": sum(r.reached == r.wanted for r in result) / n,
        "as_recorded": sum(r.reached == r.record["bin"] for r in result) / n,
        **{outcome: outcomes[outcome] / n for outcome in ("sorted", "rejected", "late", "too_close", "error")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="labelled photos, one sub-folder per class")
    parser.add_argument("--speeds", default="0.2,0.4", help="belt speeds in m/s, comma-separated")
    parser.add_argument("--items", type=int, default=40, help="items per speed")
    parser.add_argument("--config", type=Path, default=None, help="settings (default: embedded)")
    args = parser.parse_args()
    settings = load_settings(args.config)
    print(f"{'speed m/s':>9} {'items':>5} {'items/min':>9} {'correct bin':>11} {'as recorded':>11} "
          f"{'rejected':>8} {'late':>6} {'too close':>9} {'error':>6}")
    for speed in (float(s) for s in args.speeds.split(",")):
        f = measure(settings, args.images, speed, args.items)
        print(f"{speed:9.2f} {f['items']:5.0f} {f['items_per_min']:9.1f} {f['correct_bin']:11.1%} "
              f"{f['as_recorded']:11.1%} {f['rejected']:8.1%} {f['late']:6.1%} {f['too_close']:9.1%} "
              f"{f['error']:6.1%}", flush=True)


if __name__ == "__main__":
    main()
