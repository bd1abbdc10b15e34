"""Conveyor benchmark: the whole line on the belt simulator with real photos, at several belt speeds.

    .venv/bin/python -m edge.bench.conveyor --images ../shared/data/garbage12 --speeds 0.2,0.4 --items 40

For each speed: items per minute sustained, the share of items that reached the bin their class belongs to
("right bin", read from the mock gate pins over each item's passage, not from the sorter's intentions), the
share of recorded items that reached the bin their record names ("as recorded"), the shares sorted, rejected,
late, too close, failed and missed (no record: the trigger never saw them), the share that met a gate moving
("moving": they reached no known bin), and records that match no item ("extra"); then per bin the
items that reached it and its purity (the share of them that belong there). Uses the
config's model, bins, gates and simulator (default: the embedded config with the bundled model).
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from edge.bench.simulation import MOVING, simulate
from edge.config import Settings, load_settings
from edge.errors import ConfigError

OUTCOMES = ("sorted", "rejected", "late", "too_close", "error", "missed")


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


def measure(settings: Settings, images: Path, speed: float, items: int) -> dict[str, Any]:
    """One run at one speed; returns the figures (shares of the items that came past the camera)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = simulate(at_speed(settings, images, speed, Path(tmp) / "items.db"), items)
    result = run.items
    outcomes = Counter(r.record["outcome"] if r.record else "missed" for r in result)
    n = len(result)
    return {
        "speed_m_s": speed,
        "items": n,
        "items_per_min": n / run.seconds * 60,
        "correct_bin": sum(r.reached == r.wanted for r in result) / n,
        "as_recorded": sum(r.record is not None and r.reached == r.record["bin"] for r in result)
        / max(1, n - outcomes["missed"]),
        **{outcome: outcomes[outcome] / n for outcome in OUTCOMES},
        "moving": sum(r.reached == MOVING for r in result) / n,
        "extra_records": run.extra_records,
        "bins": {name: {"items": len(here := [r for r in result if r.reached == name]),
                        "purity": sum(r.wanted == name for r in here) / len(here) if here else None}
                 for name in settings.bins},
    }


def belt_arguments(description: str, items: int, images_required: bool = True) -> argparse.Namespace:
    """The belt benchmarks' command line: ``images``, ``speeds`` (a list of m/s), ``items``, ``settings``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--images", type=Path, required=images_required, default=None,
                        help="labelled photos, one sub-folder per class" + ("" if images_required else
                                                                            " (default: drawn items)"))
    parser.add_argument("--speeds", default="0.2,0.4", help="belt speeds in m/s, comma-separated")
    parser.add_argument("--items", type=int, default=items, help="items per speed")
    parser.add_argument("--config", type=Path, default=None, help="settings (default: embedded)")
    args = parser.parse_args()
    try:
        args.speeds = [float(s) for s in args.speeds.split(",")]
    except ValueError:
        parser.error(f"--speeds: comma-separated numbers, got {args.speeds!r}")
    if args.images is not None and not args.images.is_dir():
        parser.error(f"--images: not a folder: {args.images}")
    if not all(0.01 <= s <= 5 for s in args.speeds) or not 1 <= args.items <= 100_000:
        parser.error("--speeds: each 0.01-5 m/s (as conveyor.belt_speed_m_s); --items: 1-100000")
    try:
        args.settings = load_settings(args.config)
    except ConfigError as exc:
        parser.exit(2, f"{exc}\n")
    return args


def main() -> None:
    args = belt_arguments(__doc__.split("\n\n")[0], items=40)
    settings = args.settings
    print(f"{'speed m/s':>9} {'items':>5} {'items/min':>9} {'right bin':>9} {'as recorded':>11} "
          + " ".join(f"{o.replace('_', ' '):>9}" for o in OUTCOMES) + f" {'moving':>6} {'extra':>5}")
    for speed in args.speeds:
        f = measure(settings, args.images, speed, args.items)
        print(f"{speed:9.2f} {f['items']:5.0f} {f['items_per_min']:9.1f} {f['correct_bin']:9.1%} "
              f"{f['as_recorded']:11.1%} " + " ".join(f"{f[o]:9.1%}" for o in OUTCOMES)
              + f" {f['moving']:6.1%} {f['extra_records']:5.0f}", flush=True)
        print(" " * 10 + "purity: " + ", ".join(f"{name} {b['purity']:.0%} of {b['items']}"
                                                for name, b in f["bins"].items() if b["items"]), flush=True)


if __name__ == "__main__":
    main()
