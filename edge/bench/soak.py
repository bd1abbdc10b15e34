"""Resource soak: ``smartbin run`` left running, its RSS, open files, threads and frames a second over time.

    .venv/bin/python -m edge.bench.soak [--images DIR] [--items 200] [--minutes 30] [--every 60] [--speed 0.2]

Runs ``smartbin run`` as the service would (a subprocess, the embedded config, mock pins, records in a temp
dir, Prometheus metrics on a free port for the frame count) on the belt simulator, or with ``--images`` on a
looping replay of that folder's photos. ``--speed`` runs the belt faster than the embedded 0.2 m/s, so that as
many items come in less time (the simulator's items, the gates' timing and the sorter follow it; a replay is
paced by ``camera.fps``). Prints a line at the first item, every ``--every`` seconds and at the end (when
``--items`` are recorded, or after ``--minutes``): items, RSS, the peak RSS so far, open files, threads, frames
a second since the last line; then the peak RSS up to each of ``--marks`` items and how far the last one is
above the first. It is a short soak (minutes): a day-long run is the same command with a longer ``--minutes``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from edge.bench.fault_soak import recorded
from edge.bench.memory import MIB, config_for, rss_of


@dataclass(frozen=True)
class Sample:
    """One look at the sorter's process."""

    seconds: float  # since the first item
    items: int
    rss: int  # bytes
    files: int  # open file descriptors
    threads: int
    frames: int  # received from the camera since the start


def sample(pid: int, started: float, items: int, metrics_url: str) -> Sample:
    """RSS, open files and threads of ``pid`` from /proc, and the frames counter from its metrics."""
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M)[1])  # type: ignore[index]
    files = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    frames = int(float(re.search(r"^smartbin_frames_total (\S+)$", text, re.M)[1]))  # type: ignore[index]
    return Sample(time.monotonic() - started, items, rss_of(pid), files, threads, frames)


def line(now: Sample, last: Sample | None, peak: int) -> str:
    """One printed line: items, RSS, peak, open files, threads, frames a second since ``last``."""
    fps = (now.frames - last.frames) / (now.seconds - last.seconds) if last and now.seconds > last.seconds else 0.0
    return (f"{now.seconds:7.0f} s {now.items:6d} items  RSS {now.rss / MIB:7.1f} MiB (peak {peak / MIB:7.1f})  "
            f"{now.files:3d} open files  {now.threads:3d} threads  {fps:5.1f} frames/s")


def peaks_at(samples: list[Sample], marks: list[int]) -> dict[int, int]:
    """The peak RSS over the samples taken up to (and at) each number of items reached."""
    return {mark: max(s.rss for s in samples[: next(i for i, s in enumerate(samples) if s.items >= mark) + 1])
            for mark in marks if any(s.items >= mark for s in samples)}


def soak_config(images: Path | None, folder: Path, speed: float) -> Path:
    """The embedded config as ``edge.bench.memory`` writes it, metrics on a free port, the belt at ``speed``."""
    path = config_for(images, folder, web=False)
    text = path.read_text().replace("[metrics]\n", "[metrics]\nenabled = true\nport = 0\n", 1)
    path.write_text(text.replace("[conveyor]\n", f"[conveyor]\nbelt_speed_m_s = {speed}\n", 1))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=None, help="replay these photos (default: the simulator)")
    parser.add_argument("--items", type=int, default=200, help="stop when this many items are recorded")
    parser.add_argument("--minutes", type=float, default=30.0, help="stop after this long at the most")
    parser.add_argument("--every", type=float, default=60.0, metavar="S", help="seconds between printed lines")
    parser.add_argument("--speed", type=float, default=0.2, metavar="M_S", help="belt speed (default 0.2 m/s)")
    parser.add_argument("--marks", default="20,200", help="item counts to give the peak RSS at (default 20,200)")
    args = parser.parse_args()
    marks = sorted(int(m) for m in args.marks.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        config = soak_config(args.images.resolve() if args.images else None, Path(tmp), args.speed)
        log = Path(tmp) / "log"
        with log.open("w") as out:
            process = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                                       stdout=out, stderr=subprocess.STDOUT)
        try:
            samples = watch(process, log, Path(tmp) / "items.db", args)
        finally:
            process.terminate()
            process.wait(timeout=30)
    peaks = peaks_at(samples, marks)
    print("peak RSS up to " + ", ".join(f"item {m}: {p / MIB:.1f} MiB" for m, p in peaks.items()))
    if len(peaks) > 1:
        print(f"item {max(peaks)} against item {min(peaks)}: {(peaks[max(peaks)] - peaks[min(peaks)]) / MIB:+.1f} MiB")


def watch(process: subprocess.Popen[bytes], log: Path, database: Path, args: argparse.Namespace) -> list[Sample]:
    """Samples every second from the first item on; a line printed at the first, every ``args.every`` s, at
    the end."""
    deadline = time.monotonic() + 180
    while recorded(database) < 1 or not (url := re.search(r"metrics at (http://\S+)", log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the sorter did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)
    started, samples, printed = time.monotonic(), [], None
    items = 1
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the sorter exited ({process.returncode}):\n{log.read_text()[-2000:]}")
        items = max(items, recorded(database))
        samples.append(sample(process.pid, started, items, url[1]))
        end = items >= args.items or samples[-1].seconds >= args.minutes * 60
        if printed is None or end or samples[-1].seconds - printed.seconds >= args.every:
            print(line(samples[-1], printed, max(s.rss for s in samples)), flush=True)
            printed = samples[-1]
        if end:
            return samples
        time.sleep(1)


if __name__ == "__main__":
    main()
