"""Memory of the running sorter: RSS over a replay with the web page on, and where it goes.

    .venv/bin/python -m edge.bench.memory --images DIR [--seconds 300] [--no-web]

Runs ``smartbin run`` as the service would (a subprocess, the embedded config with the camera a replay of
``DIR`` in a loop, mock pins, records in a temp dir, the web page on a free port, fetched every 5 s as an open
page does) and samples its RSS every second. At the end it prints the RSS at start, the peak and at the end,
the growth over the second half of the run, and the breakdown of the resident pages by mapping
(``/proc/PID/smaps``): the model file, LiteRT, OpenCV, numpy, Python, other libraries, and anonymous memory
(Python's objects, XNNPACK's packed weights, buffers, thread stacks).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from edge.config import DEFAULT_CONFIG

GROUPS = (("model file", re.compile(r"\.tflite$")), ("LiteRT", re.compile(r"litert|tflite|tensorflow", re.I)),
          ("OpenCV", re.compile(r"cv2|opencv", re.I)), ("numpy", re.compile(r"numpy|openblas", re.I)),
          ("Python", re.compile(r"python|\.pyc?$", re.I)), ("other libraries", re.compile(r"\.so")))
MIB = 1024 * 1024


def rss_of(pid: int) -> int:
    """Resident bytes of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def breakdown(pid: int) -> dict[str, int]:
    """Resident bytes per group of mappings."""
    groups: dict[str, int] = defaultdict(int)
    name = "anonymous"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        header = re.match(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$", line)
        if header:
            path = header[1].strip()
            name = next((group for group, pattern in GROUPS if pattern.search(path)),
                        "anonymous" if not path or path.startswith("[") else "other files")
        elif line.startswith("Rss:"):
            groups[name] += int(line.split()[1]) * 1024
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def config_for(images: Path | None, folder: Path, web: bool) -> Path:
    """The embedded config, the camera a looping replay of ``images`` (``None``: the belt simulator), mock pins,
    records in ``folder``."""
    text = DEFAULT_CONFIG.read_text()
    if images is not None:
        text = text.replace("[camera]\n", f'[camera]\nsource = "{images}"\nloop = true\n', 1)
    text = text.replace("[gpio]\n", '[gpio]\npin_factory = "mock"\n', 1)
    text = text.replace("[records]\n", f'[records]\npath = "{folder / "items.db"}"\n', 1)
    if web:
        text = text.replace("[web]\n", "[web]\nenabled = true\nport = 0\n", 1)
    path = folder / "smartbin.toml"
    path.write_text(text)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="photos to replay, one sub-folder per class")
    parser.add_argument("--seconds", type=float, default=300, help="length of the run")
    parser.add_argument("--no-web", action="store_true", help="without the web page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = config_for(args.images.resolve(), Path(tmp), not args.no_web)
        log = Path(tmp) / "log"
        with log.open("w") as out:
            process = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                                       stdout=out, stderr=subprocess.STDOUT)
        try:
            samples = watch(process, log, args.seconds, not args.no_web)
            parts = breakdown(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
        items = log.read_text().count("smartbin.items: item ")
    half = samples[len(samples) // 2:]
    print(f"{items} items in {args.seconds:.0f} s, web page {'off' if args.no_web else 'on, fetched every 5 s'}")
    print(f"RSS MiB: after start {samples[0] / MIB:.1f}, peak {max(samples) / MIB:.1f}, end {samples[-1] / MIB:.1f}, "
          f"second half {min(half) / MIB:.1f}-{max(half) / MIB:.1f}")
    print("resident at the end, by mapping:")
    for name, size in parts.items():
        print(f"  {name:16} {size / MIB:7.1f} MiB")


def watch(process: subprocess.Popen[bytes], log: Path, seconds: float, web: bool) -> list[int]:
    """RSS every second from the first item on, for ``seconds``; the page's endpoints fetched every 5 s."""
    deadline = time.monotonic() + 120
    while "smartbin.items: item " not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the sorter did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)
    url = re.search(r"web page at (http://\S+/)", log.read_text())
    samples: list[int] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if web and url and len(samples) % 5 == 0:
            for endpoint in ("api/live", "api/today", "api/items?limit=50", "api/health"):
                with urllib.request.urlopen(url[1] + endpoint, timeout=10) as response:
                    response.read()
        samples.append(rss_of(process.pid))
        time.sleep(1)
    return samples


if __name__ == "__main__":
    main()
