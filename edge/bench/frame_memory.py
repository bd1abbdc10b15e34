"""What a frame size costs in memory through the sorter: peak RSS on the belt simulator, measured, against
``edge.footprint``'s bound.

    .venv/bin/python -m edge.bench.frame_memory [--sizes 640x360,1280x720,1920x1080,4056x3040] [--seconds 40]

For each camera size, a fresh process runs the sorter (``edge.app.Sorter``: the embedded config at that size,
mock pins, records in a temp dir) on the simulator for ``--seconds`` and prints its peak RSS (``VmHWM``), twice:
with the shipped model (the line keeping up), and with a classifier that never answers (``edge.fakes.
FakeClassifier`` held: the items pile up in the backlog, the worst case ``edge.footprint`` bounds). Then the
bound ``smartbin check`` compares with the machine's memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edge.config import Settings, load_settings, parse_settings
from edge.footprint import MIB, footprint, frames_held


def settings_at(width: int, height: int, folder: Path) -> Settings:
    """The embedded config with the camera at ``width`` x ``height``, mock pins, records in ``folder``."""
    data = load_settings(None).model_dump(mode="json")
    data["camera"].update(width=width, height=height, stall_timeout_s=3600.0)  # large frames render slowly
    data["gpio"]["pin_factory"] = "mock"
    data["records"]["path"] = str(folder / "items.db")
    return parse_settings(data)


def child(width: int, height: int, held: bool, seconds: float) -> None:
    """Run the sorter for ``seconds`` and print its peak RSS and the items recorded as JSON; exits without
    stopping it (a held classifier never lets it stop)."""
    from edge.app import Sorter
    from edge.classifier import Classifier
    from edge.fakes import FakeClassifier

    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_at(width, height, Path(tmp))
        classifier = None
        if held:  # the model loaded all the same (its memory counts), but the sorter's classifier never answers
            model = Classifier(settings.model.path).__enter__()
            classifier = FakeClassifier(model.labels, input_size=model.input_size, hold=threading.Event())
        sorter = Sorter(settings, classifier=classifier).__enter__()
        threading.Thread(target=sorter.loop.run, daemon=True).start()
        time.sleep(seconds)
        status = Path("/proc/self/status").read_text()
        peak = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024
        print(json.dumps({"peak": peak, "items": sorter.loop.tally.items}), flush=True)
        os._exit(0)


def measure(width: int, height: int, held: bool, seconds: float) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-m", "edge.bench.frame_memory", "--child", f"{width}x{height}",
                          *(["--held"] if held else []), "--seconds", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 300)
    if out.returncode != 0 or not out.stdout.strip():
        raise SystemExit(f"{width}x{height}: the sorter failed:\n{out.stderr[-2000:]}")
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="640x360,1280x720,1920x1080,4056x3040")
    parser.add_argument("--seconds", type=float, default=40.0, help="how long each run lasts (default 40)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--held", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        width, height = (int(v) for v in args.child.split("x"))
        child(width, height, args.held, args.seconds)
        return
    print(f"{'camera':>10} {'frame MiB':>9} {'peak, keeping up':>16} {'peak, classifier held':>21} "
          f"{'bound (frames)':>16}  ({args.seconds:g} s each)")
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        settings = settings_at(width, height, Path(tempfile.gettempdir()))
        normal, held = measure(width, height, False, args.seconds), measure(width, height, True, args.seconds)
        print(f"{size:>10} {width * height * 3 / MIB:9.1f} {normal['peak'] / MIB:5.0f} MiB "
              f"({normal['items']:2d} items) {held['peak'] / MIB:17.0f} MiB {footprint(settings) / MIB:9.0f} MiB "
              f"({frames_held(settings)})", flush=True)


if __name__ == "__main__":
    main()
