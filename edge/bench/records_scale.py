"""Records at scale: how long ``smartbin status`` and each web API endpoint take on 1, 5 and 10 million items,
and how many bytes the sorter writes per item.

    .venv/bin/python -m edge.bench.records_scale --items 1000000,5000000,10000000 [--db DIR]

One database grows to each size in turn (items one every 2 s up to now, 12 classes over 7 bins, 1 % errors,
as the sorter writes them: through the schema's trigger and indexes). At each size: the database's size, then
the median of ``--repeat`` calls (after one warm-up) of ``smartbin status``'s report (in-process, and the CLI
once as a subprocess, Python's start included) and of every read endpoint of the web page over HTTP. Then the
bytes written per item: ``--wear`` items through ``Records.add`` as the loop commits them (WAL, synchronous=FULL,
the periodic checkpoints), read from ``/proc/self/io`` (what reached the block layer), and a kept frame
(JPEG + JSON, written for rejected and low-confidence items only) of a 1280×720 simulator frame.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from edge.config import load_settings
from edge.records import ItemRecord, Records
from edge.service.status import report

LABELS = ("battery", "biological", "brown-glass", "cardboard", "clothes", "green-glass", "metal", "paper",
          "plastic", "shoes", "trash", "white-glass")
BINS = ("hazardous", "organic", "glass", "paper", "textiles", "glass", "packaging", "paper", "packaging",
        "textiles", "residual", "glass")
CHUNK = 50_000
ENDPOINTS = ("api/health", "api/today", "api/items?limit=50", "api/items/{mid}", "api/live")


def grow(path: Path, start: int, stop: int, now: float, rng: np.random.Generator) -> None:
    """Add items ``start`` .. ``stop``-1 (item i at ``now - 2 s × (stop_final - i)``), in large transactions."""
    Records(path).close()  # the schema, the trigger and the indexes, as the sorter makes them
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")  # building only: the measured writes below use the sorter's settings
    columns = ("time, frame, source, label, confidence, top_k, bin, gate_action, outcome, error, latency_ms, "
               "frames, truth, model, reason, expected_cost")
    for first in range(start, stop, CHUNK):
        n = min(CHUNK, stop - first)
        classes = rng.integers(0, len(LABELS), n)
        errors = rng.random(n) < 0.01
        rows = [(now - 2.0 * (stop - first - k), first + k, "picamera2", LABELS[c], 0.93,
                 f'[["{LABELS[c]}",0.93],["trash",0.02]]', "residual" if e else BINS[c],
                 "none" if e else "flap→30°", "error" if e else "sorted", "dead frame" if e else None,
                 '{"preprocess":2.7,"classify":48.6,"decide":0.2,"plan":0.1,"total":51.6}', 3, None,
                 "garbage12_resnet50_int8.tflite", None if e else "top", None if e else 0.21)
                for k, (c, e) in enumerate(zip(classes, errors, strict=True))]
        with db:
            db.executemany(f"INSERT INTO items ({columns}) VALUES ({', '.join('?' * 16)})", rows)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def median_ms(call: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``call`` in ms, after one warm-up call."""
    call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(path: Path, items: int, repeat: int) -> dict[str, float]:
    """Every timing at one size."""
    from edge.web import WebServer

    figures = {"items": items, "file_mb": path.stat().st_size / 1e6,
               "status_ms": median_ms(lambda: report(path, 10, None), repeat)}
    config = path.with_suffix(".toml")
    config.write_text(f'[records]\npath = "{path}"\n[web]\nport = 0\n\n' + _bins_section())
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edge.cli", "status", "--config", str(config)], check=True,
                   capture_output=True)
    figures["status_cli_ms"] = (time.perf_counter() - started) * 1000
    settings = load_settings(config)
    with WebServer(settings) as server:
        for endpoint in ENDPOINTS:
            url = server.url + endpoint.format(mid=items // 2)
            figures[endpoint] = median_ms(partial(fetch, url), repeat)
    return figures


def fetch(url: str) -> bytes:
    """One GET, read to the end."""
    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


def _bins_section() -> str:
    """The embedded default's gates and bins, so that the status and the page name the same bins."""
    text = (Path(__file__).resolve().parents[1] / "smartbin.toml").read_text()
    return text[text.index("[gates.flap]"):]


def written_bytes() -> int:
    """Bytes this process has caused to be written to the block layer (Linux /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise OSError("no write_bytes in /proc/self/io")


def wear(folder: Path, items: int) -> dict[str, float]:
    """Bytes written per item by the records (database + WAL + checkpoints) and per kept frame."""
    from edge.retrain import FrameKeeper
    from edge.sources import Frame
    from edge.sources.conveyor import simulator_for

    path = folder / "wear.db"
    with Records(path) as records:
        record = ItemRecord(time=time.time(), frame=0, source="picamera2", bin="glass", gate_action="flap→-60°",
                            outcome="sorted", model="garbage12_resnet50_int8.tflite", label="green-glass",
                            confidence=0.93, top_k=(("green-glass", 0.93), ("white-glass", 0.03)),
                            latency_ms={"preprocess": 2.7, "classify": 48.6, "total": 51.6}, frames=3,
                            reason="top", expected_cost=0.21)
        os.sync()
        before = written_bytes()
        for i in range(items):
            records.add(ItemRecord(**{**record.__dict__, "frame": i, "time": record.time + i}))
        os.sync()
        per_item = (written_bytes() - before) / items
    settings = load_settings()
    simulator = simulator_for(settings)
    frame: Frame | None = None
    with simulator:
        while frame is None or frame.number < 30:
            frame = simulator.read()
    keeper = FrameKeeper(folder / "kept", keep_below=1.0, max_mb=100)
    keeper.keep(1, frame, ItemRecord(**{**record.__dict__, "outcome": "rejected"}))
    kept = sum(p.stat().st_size for p in (folder / "kept").iterdir())
    return {"records_bytes_per_item": per_item, "db_bytes_per_item": path.stat().st_size / items,
            "kept_frame_bytes": kept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", default="1000000,5000000,10000000", help="sizes, comma-separated")
    parser.add_argument("--db", type=Path, default=None, help="folder for the database (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per figure (median)")
    parser.add_argument("--wear", type=int, default=2000, help="items written to measure bytes per item")
    args = parser.parse_args()
    sizes = sorted(int(float(s)) for s in args.items.split(","))
    with tempfile.TemporaryDirectory(dir=args.db) as tmp:
        path = Path(tmp) / "items.db"
        rng = np.random.default_rng(0)
        now, done = time.time(), 0
        header = ["items", "file MB", "status ms", "status CLI ms", *(e.split("?")[0] for e in ENDPOINTS)]
        print("  ".join(f"{h:>14}" for h in header), flush=True)
        for size in sizes:
            started = time.monotonic()
            grow(path, done, size, now, rng)
            done = size
            built = time.monotonic() - started
            f = measure(path, size, args.repeat)
            print("  ".join(f"{v:>14,.1f}" if isinstance(v, float) else f"{v:>14,}" for v in f.values())
                  + f"   (built in {built:.0f} s)", flush=True)
        w = wear(Path(tmp), args.wear)
        print(json.dumps({k: round(v, 1) for k, v in w.items()}))
        print(f"bytes written per item: records {w['records_bytes_per_item']:,.0f} (database, WAL and checkpoints, "
              f"synchronous=FULL), kept frame {w['kept_frame_bytes']:,.0f} (rejected and uncertain items only); "
              f"database size per item {w['db_bytes_per_item']:,.0f}")


if __name__ == "__main__":
    main()
