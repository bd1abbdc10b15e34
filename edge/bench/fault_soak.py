"""Fault soak: the service on the belt simulator for thousands of items, with faults injected at random.

    .venv/bin/python -m edge.bench.fault_soak [--items 10000] [--images ~/.cache/smartbin/split/test]

Runs ``serve()`` (what ``smartbin run`` runs) in a child process under ``edge.bench.supervise``, which restarts
it as systemd restarts the unit (the unit file's own Restart / RestartSec / WatchdogSec / start limit, and
its ExecStopPost: every gate to safe). The child's camera is the belt simulator wrapped in
``edge.fakes.FaultyCamera``; its pins are gpiozero's mock pins, every change written to a file. Every
``--every`` seconds (± half) one fault, at random: SIGKILL mid-item; the camera stalls, gives dead frames, or
is unplugged and comes back; a reader holds the database locked; the disk fills (a tmpfs of ``--disk-mb`` holds
the state folder; skipped where tmpfs cannot be mounted); the model file is corrupted, the child killed, and
the model put back a few seconds later. At the end it prints: records lost (committed, per the journal, and
not in the database: must be 0), items sent to a wrong bin because of a fault (a bin that is neither the one
their record names nor the default bin: must be 0), items that reached the default bin instead of the bin
their record named (in flight when the sorter died), gates safe after every exit, time from each restart to
READY and to the first item recorded, and the child's RSS.

The belt here is faster than the conveyor benchmark's (1 m/s, small items 0.2 m apart: ~4 items a second)
so that 10,000 items take about 40 minutes; each process of the sorter sees its own belt from its start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.bench.simulation import PinHistory, reached_bin, servo_angle, servo_duty
from edge.bench.supervise import Event, Supervisor
from edge.config import ServoGate, Settings, load_settings, parse_settings
from edge.errors import SmartbinError
from edge.fakes import Fault, FaultyCamera, logged_mock_pins

KINDS = ("kill", "stall", "dead", "gone", "lock", "full", "model")
CAMERA_KINDS = ("stall", "dead", "gone")  # acted out by the child's camera on its own clock


def plan_faults(start: float, length_s: float, every_s: float, rng: random.Random, kinds: tuple[str, ...]
                ) -> list[Fault]:
    """Faults from ``start`` for ``length_s``, one every ``every_s`` ± half, the kinds in shuffled rounds."""
    durations = {"kill": (0, 0), "stall": (2, 8), "dead": (1, 6), "gone": (3, 20), "lock": (2, 15),
                 "full": (5, 20), "model": (3, 6)}
    faults, t, round_ = [], start + every_s, list(kinds)
    while t < start + length_s:
        if not round_:
            round_ = list(kinds)
        rng.shuffle(round_)
        kind = round_.pop()
        low, high = durations[kind]
        faults.append(Fault(kind, t, t + rng.uniform(low, high)))
        t = faults[-1].end + every_s * rng.uniform(0.5, 1.5)
    return faults


def soak_settings(base: Settings, state: Path, images: Path | None, model: Path) -> Settings:
    """The soak's service settings: the belt simulator at 1 m/s with small items, mock pins, everything in
    ``state``."""
    data = base.model_dump(mode="json")
    data["model"].update(path=str(model), threads=1)  # one thread: the simulator shares the two cores
    data["camera"].update(source="synthetic", width=320, height=240, fps=30.0)
    # scaled to a fast belt: items up to 12 cm at 1 m/s pass a point in 0.12 s (0.2 s with margin), a narrow
    # detection band so that items 15 cm apart are seen apart at 30 frames a second, a flap that moves in 0.1 s
    data["conveyor"].update(belt_speed_m_s=1.0, trigger="vision", item_pass_s=0.2, band=0.15)
    for gate in data["gates"].values():
        gate["settle_s"] = min(gate["settle_s"], 0.1)
    data["sorting"]["votes"] = 1  # one invoke an item: ~3 items a second on one core of this machine
    data["simulator"].update(items=str(images) if images else None, item_m=[0.06, 0.12], spacing_m=0.3,
                             view_m=0.4)
    data["gpio"]["pin_factory"] = "mock"
    data["records"]["path"] = str(state / "items.db")
    data["retrain"].update(folder=str(state / "uncertain"), max_mb=8.0, min_free_mb=4.0)
    data["web"]["enabled"] = False
    data["metrics"]["enabled"] = False
    data["mqtt"]["enabled"] = False
    return parse_settings(data)


# --- the child: the service with a faulty camera and logged pins -------------------------------------------

def child(folder: Path) -> int:
    """The service as the supervisor runs it (``--child``)."""
    from edge.service.logs import configure_logging
    from edge.service.serve import serve
    from edge.sources import BeltSimulator, simulator_for

    configure_logging(False, sys.stdout)
    data = json.loads((folder / "settings.json").read_text())
    data["simulator"]["seed"] = os.getpid()  # each process of the sorter sees a belt of its own
    settings = parse_settings(data)
    faults = [Fault(**f) for f in json.loads((folder / "faults.json").read_text()) if f["kind"] in CAMERA_KINDS]
    log = os.open(folder / "belt.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    simulator: BeltSimulator = simulator_for(settings)
    os.write(log, f"s {os.getpid()} {time.time():.6f} {time.monotonic():.6f}\n".encode())
    logged = [0]

    def on_frame(frame: Any) -> None:
        lines = []
        for item in simulator.items_from(logged[0]):
            lines.append(f"i {os.getpid()} {item.index} {item.t_line:.6f} {item.truth or '-'}\n")
        logged[0] = simulator.added
        shown = simulator.item_in(frame.number)
        if shown is not None:
            lines.append(f"f {os.getpid()} {frame.number} {shown.index}\n")
        if lines:
            os.write(log, "".join(lines).encode())

    camera = FaultyCamera(simulator, faults, on_frame)
    try:
        return serve(settings, pin_factory=logged_mock_pins(folder / "pins.log"), source=camera, camera_wait_s=30)
    except SmartbinError as exc:  # as the CLI does: one line, the exit code
        print(f"smartbin: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code


# --- the parent: faults from outside, and what happened ----------------------------------------------------

@contextlib.contextmanager
def small_disk(folder: Path, megabytes: int) -> Iterator[bool]:
    """A tmpfs of ``megabytes`` on ``folder`` (root only); yields whether it is mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], capture_output=True
    ).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill_disk(folder: Path) -> Path:
    """Write a ballast file in ``folder`` until the disk is full."""
    ballast = folder / "ballast"
    with ballast.open("wb") as out, contextlib.suppress(OSError):
        block = b"\0" * (1 << 20)
        while True:
            out.write(block)
            out.flush()
    return ballast


@dataclass
class Soak:
    """One fault soak: what was injected, the sorter's RSS, when it started."""

    settings: Settings
    model: Path
    disk: bool
    done: list[tuple[Fault, str]] = field(default_factory=list)  # faults injected, with what happened
    rss: list[tuple[float, int, int]] = field(default_factory=list)  # (monotonic, pid, kB)
    started: float = field(default_factory=time.monotonic)

    def inject(self, fault: Fault, supervisor: Supervisor) -> str:
        kind, database = fault.kind, self.settings.records.database
        if kind == "kill":
            return "killed" if supervisor.kill(signal.SIGKILL) else "no process"
        if kind in CAMERA_KINDS:
            time.sleep(max(0.0, fault.end - time.monotonic()))
            return "camera"
        if kind == "lock":
            reader = sqlite3.connect(database, isolation_level=None, timeout=30)
            reader.execute("BEGIN EXCLUSIVE")
            time.sleep(fault.seconds)
            reader.execute("COMMIT")
            reader.close()
            return "locked"
        if kind == "full":
            if not self.disk:
                return "skipped (no tmpfs)"
            ballast = fill_disk(database.parent)
            time.sleep(fault.seconds)
            ballast.unlink()
            return "filled"
        good = self.model.read_bytes()  # model: corrupt, kill, put back later
        damaged = bytearray(good)
        damaged[len(good) // 2: len(good) // 2 + 4096] = os.urandom(4096)
        replace_file(self.model, bytes(damaged))  # a new file: the running process keeps its mapping
        supervisor.kill(signal.SIGKILL)
        time.sleep(fault.seconds)
        replace_file(self.model, good)
        return "corrupted"

    def sample(self, supervisor: Supervisor) -> None:
        pid = supervisor.pid
        if pid is None:
            return
        with contextlib.suppress(OSError, ValueError, StopIteration):
            status = Path(f"/proc/{pid}/status").read_text()
            kb = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
            self.rss.append((time.monotonic(), pid, kb))


def replace_file(path: Path, content: bytes) -> None:
    """Write ``content`` to a new file and rename it over ``path``. Overwriting a model in place (``cp``)
    while a sorter has it mapped crashes that sorter with SIGBUS."""
    temporary = path.with_suffix(".new")
    temporary.write_bytes(content)
    os.replace(temporary, path)


def recorded(database: Path) -> int:
    """Items recorded so far (0 before any, -1 while the database cannot be read: not there yet, or locked)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.2)) as db:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'items'").fetchone()
            return int(row[0]) if row else 0
    except sqlite3.Error:
        return -1


def run(settings: Settings, folder: Path, items: int, every_s: float, seed: int, disk: bool,
        kinds: tuple[str, ...] = KINDS, progress: Callable[[str], None] = print,
        max_faults: int | None = None) -> dict[str, Any]:
    """Run a soak until ``items`` are recorded (or ``max_faults`` are done and 3 s more have passed); returns
    its figures (see ``analyse``)."""
    rng = random.Random(seed)
    length_s = items / 3.0 + 600  # a generous horizon; the soak ends when the items are in
    faults = plan_faults(time.monotonic() + 5, length_s, every_s, rng, kinds if disk else
                         tuple(k for k in kinds if k != "full"))
    (folder / "settings.json").write_text(json.dumps(settings.model_dump(mode="json")))
    (folder / "faults.json").write_text(json.dumps([{"kind": f.kind, "start": f.start, "end": f.end}
                                                    for f in faults]))
    pins = folder / "pins.log"
    from edge.service.safe import drive_safe

    def stop_post() -> None:  # the unit's ExecStopPost: `smartbin safe`
        failed = drive_safe(settings.gates, logged_mock_pins(pins))
        with (folder / "belt.log").open("a") as log:
            log.write(f"safe {time.monotonic():.6f} {int(not failed)}\n")

    supervisor = Supervisor([sys.executable, "-m", "edge.bench.fault_soak", "--child", str(folder)],
                            folder / "journal.log", stop_post=stop_post)
    soak = Soak(settings, settings.model.path, disk)
    supervisor.start()
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(2.0):
            soak.sample(supervisor)

    threading.Thread(target=sampler, daemon=True).start()
    last_report = 0.0

    def wait_until(moment: float) -> bool:
        """Wait until ``moment``; False as soon as the items are in or the supervisor gave up."""
        nonlocal last_report
        while time.monotonic() < moment:
            count = recorded(settings.records.database)
            if count >= items or supervisor.failed:
                return False
            if time.monotonic() - last_report > 60:
                last_report = time.monotonic()
                progress(f"{time.monotonic() - soak.started:6.0f} s: {count} items, {len(soak.done)} faults")
            time.sleep(0.2)
        return True

    if max_faults is not None:
        faults = faults[:max_faults]
    try:
        for fault in faults:
            if not wait_until(fault.start):
                break
            soak.done.append((fault, soak.inject(fault, supervisor)))
        else:
            if max_faults is not None:  # the items in flight after the last fault
                wait_until(time.monotonic() + 3)
    finally:
        stop.set()
        supervisor.stop()
    return analyse(settings, folder, soak, supervisor.events, time.monotonic() - soak.started,
                   supervisor.failed)


# --- analysis -----------------------------------------------------------------------------------------------

@dataclass
class Segment:
    """One process of the sorter: its belt's items and which frame showed which item."""

    pid: int
    wall0: float
    mono0: float
    end: float = float("inf")  # monotonic time of its exit
    items: dict[int, tuple[float, str | None]] = field(default_factory=dict)  # index → (t_line, truth)
    frames: dict[int, int] = field(default_factory=dict)  # frame number → item index

    def mono(self, wall: float) -> float:
        return self.mono0 + (wall - self.wall0)


def read_belt(path: Path) -> tuple[dict[int, Segment], list[tuple[float, bool]]]:
    segments: dict[int, Segment] = {}
    safes: list[tuple[float, bool]] = []
    for line in path.read_text().splitlines():
        kind, *rest = line.split()
        if kind == "s":
            segments[int(rest[0])] = Segment(int(rest[0]), float(rest[1]), float(rest[2]))
        elif kind == "i":
            segments[int(rest[0])].items[int(rest[1])] = (float(rest[2]), None if rest[3] == "-" else rest[3])
        elif kind == "f":
            segments[int(rest[0])].frames[int(rest[1])] = int(rest[2])
        elif kind == "safe":
            safes.append((float(rest[0]), rest[1] == "1"))
    return segments, safes


def histories(settings: Settings, pins_log: Path, safes: list[tuple[float, bool]]) -> dict[str, PinHistory]:
    """Each gate's pin over the whole soak: the logged changes of every process, and the safe position from
    each ExecStopPost that succeeded (a mock pin built in its safe state logs no change)."""
    by_pin = {f"GPIO{gate.pin}": name for name, gate in settings.gates.items()}
    changes: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line in pins_log.read_text().splitlines():
        t, pin, state = line.split()
        name = by_pin.get(pin)
        if name is not None and not (isinstance(settings.gates[name], ServoGate) and float(state) == 0.0):
            changes[name].append((float(t), float(state)))  # a servo without pulses stays where it was
    result = {}
    for name, gate in settings.gates.items():
        safe = safe_state(gate)
        events = sorted(changes[name] + [(t, safe) for t, ok in safes if ok])
        result[name] = PinHistory([float("-inf")] + [t for t, _ in events], [safe] + [s for _, s in events])
    return result


def safe_state(gate: Any) -> float:
    """The pin state of a gate in its safe position (a servo's duty cycle at 50 Hz)."""
    if isinstance(gate, ServoGate):
        return servo_duty(gate, gate.safe_angle)
    return 0.0 if gate.active_high else 1.0


def is_safe(settings: Settings, gate_name: str, state: float) -> bool:
    gate = settings.gates[gate_name]
    if isinstance(gate, ServoGate):
        return abs(servo_angle(gate, state) - gate.safe_angle) <= 2 or state == 0.0
    return bool(state) != gate.active_high


def analyse(settings: Settings, folder: Path, soak: Soak, events: list[Event], seconds: float, gave_up: bool
            ) -> dict[str, Any]:
    """The soak's figures from the journal, the database, the belt and pin logs and the supervisor's events."""
    database = settings.records.database
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.row_factory = sqlite3.Row
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        rows = [dict(r) for r in db.execute("SELECT id, time, frame, bin, outcome FROM items ORDER BY id")]
    ids = [r["id"] for r in rows]
    journal = (folder / "journal.log").read_text(errors="replace").splitlines()
    committed = {int(line.split("item ", 1)[1].split()[0]) for line in journal
                 if " item " in line and line.split("item ", 1)[1].split()[0].isdigit()}
    lost = sorted(committed - set(ids))
    unsaved = sum("unsaved record:" in line for line in journal)
    segments, safes = read_belt(folder / "belt.log")
    starts = [e for e in events if e.kind == "start"]
    exits = [e for e in events if e.kind == "exit"]
    for start, end in zip(starts, exits, strict=False):
        if int(start.detail) in segments:
            segments[int(start.detail)].end = end.time
    ordered = sorted(segments.values(), key=lambda s: s.mono0)
    record_of: dict[tuple[int, int], dict[str, Any]] = {}
    unmatched = 0
    for row in rows:
        segment = next((s for s in reversed(ordered) if s.wall0 <= row["time"]), None)
        index = segment.frames.get(row["frame"]) if segment else None
        if segment is None or index is None or (segment.pid, index) in record_of:
            unmatched += 1
        else:
            record_of[(segment.pid, index)] = row
    pins = histories(settings, folder / "pins.log", safes)
    bin_of, default = settings.bin_of(), settings.default_bin
    tally: Counter[str] = Counter()
    wrong: list[str] = []
    outages = [(f.start, f.end + 2.0) for f, _ in soak.done]
    readies = [e.time for e in events if e.kind == "ready"]
    outages += [(e.time, next((r + 1.0 for r in readies if r > e.time), float("inf"))) for e in exits]
    for segment in ordered:
        for index, (t_line, truth) in segment.items.items():
            if t_line > segment.end or t_line < segment.mono0:
                continue  # on that process's belt only after it died: never there
            record = record_of.get((segment.pid, index))
            reached = reached_bin(settings, pins, t_line, settled=False)
            expected = record["bin"] if record else default
            during = any(a <= t_line <= b for a, b in outages)
            tally["items"] += 1
            if record:
                tally["recorded"] += 1
            else:
                tally["no record: fault or restart" if during else "no record: missed while sorting"] += 1
            tally["right bin (the model's share)"] += reached == bin_of.get(truth or "")
            if reached == expected:
                tally["as recorded"] += 1
            elif reached == default:
                tally["default bin instead"] += 1
            else:
                tally["wrong bin during a fault" if during else "wrong bin, no fault (missed item in a hold)"] += 1
                wrong.append(f"t={t_line - soak.started:.1f} s pid {segment.pid} item {index}: reached {reached}, "
                             f"expected {expected} ({record['outcome'] if record else 'no record'}); "
                             + near(events, soak.done, t_line, soak.started))
    safe_after_exit = 0
    for exit_event in exits:
        post = next((t for t, ok in safes if t >= exit_event.time and ok), None)
        nxt = next((s.time for s in starts if s.time > exit_event.time), float("inf"))
        if post is not None and all(is_safe(settings, g, pins[g].at(min(nxt, post + 0.5) - 1e-3))
                                    for g in settings.gates):
            safe_after_exit += 1
    gone = [(f.start, f.end) for f, _ in soak.done if f.kind == "gone"]

    def since(start: float, at: float) -> float:
        """Seconds from a start (or from the camera's return, where the start waited for it) to ``at``."""
        return at - max([start] + [end for begin, end in gone if begin <= at and end >= start])

    slow: list[str] = []
    to_ready = []
    for s, later in zip(starts, [*starts[1:], None], strict=True):
        until = later.time if later else float("inf")
        ready = next((r for r in readies if s.time <= r < until), None)
        if ready is None:
            continue  # a failed start
        to_ready.append(since(s.time, ready))
        if to_ready[-1] > 10:
            slow.append(f"start at {s.time - soak.started:.1f} s: ready {to_ready[-1]:.1f} s later; "
                        + near(events, soak.done, s.time, soak.started))
    to_item = []
    for s in starts[1:]:
        segment = segments.get(int(s.detail))
        first = min((row["time"] for (pid, _), row in record_of.items() if pid == int(s.detail)), default=None)
        if segment is not None and first is not None:
            to_item.append(since(s.time, segment.mono(first)))
    return {
        "seconds": seconds, "gave_up": gave_up, "integrity": integrity,
        "records": len(rows), "ids_contiguous": ids == list(range(1, len(ids) + 1)),
        "committed_in_journal": len(committed), "records_lost": len(lost), "unsaved_logged": unsaved,
        "unmatched_records": unmatched, "belt": dict(tally), "outcomes": dict(Counter(r["outcome"] for r in rows)),
        "faults": dict(Counter(f"{f.kind}: {what}" for f, what in soak.done)), "wrong_bin": wrong[:20],
        "starts": len(starts), "exits": dict(Counter(e.detail for e in exits)),
        "watchdog_kills": sum(e.kind == "watchdog" for e in events),
        "gates_safe_after_exit": f"{safe_after_exit} of {len(exits)}",
        "start_to_ready_s": spread(to_ready), "slow_starts": slow, "failed_starts": len(starts) - len(to_ready),
        "restart_to_first_item_s": spread(to_item),
        "rss_mib": rss_figures(soak.rss),
    }


def near(events: list[Event], done: list[tuple[Fault, str]], t: float, started: float) -> str:
    """The supervisor events and faults within 3 s of ``t``, for a wrong-bin item's line."""
    close = [f"{e.kind} {e.detail} at {e.time - started:.1f}" for e in events if abs(e.time - t) < 3]
    close += [f"{f.kind} {f.start - started:.1f}-{f.end - started:.1f}" for f, _ in done
              if f.start - 3 < t < f.end + 3]
    return ", ".join(close) or "no fault near"


def spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {"n": len(ordered), "p50": ordered[len(ordered) // 2], "max": ordered[-1]}


def rss_figures(samples: list[tuple[float, int, int]]) -> dict[str, float]:
    """Peak RSS, and the median RSS in the first and the last fifth of the run (processes a minute old or
    more), in MiB."""
    if not samples:
        return {}
    born: dict[int, float] = {}
    for t, pid, _ in samples:
        born.setdefault(pid, t)
    settled = [(t, kb) for t, pid, kb in samples if t - born[pid] >= 60]
    result = {"peak": max(kb for _, _, kb in samples) / 1024}
    if len(settled) >= 10:
        first, last = settled[0][0], settled[-1][0]
        fifth = (last - first) / 5

        def median(values: list[int]) -> float:
            return sorted(values)[len(values) // 2] / 1024 if values else float("nan")

        result["first_fifth_p50"] = median([kb for t, kb in settled if t <= first + fifth])
        result["last_fifth_p50"] = median([kb for t, kb in settled if t >= last - fifth])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, default=10_000, help="items to record (default 10000)")
    parser.add_argument("--images", type=Path, default=Path.home() / ".cache/smartbin/split/test",
                        help="labelled photos for the belt (default: the test split; missing: drawn objects)")
    parser.add_argument("--every", type=float, default=30.0, metavar="S", help="seconds between faults (± half)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"faults to inject (default {','.join(KINDS)})")
    parser.add_argument("--model", type=Path, default=None,
                        help="the .tflite to sort with, its card beside it (default: the config's, the shipped one)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--disk-mb", type=int, default=48, help="size of the tmpfs that holds the state folder")
    parser.add_argument("--keep", type=Path, default=None, help="keep the soak's folder (journal, logs) here")
    args = parser.parse_args()
    if args.child:
        sys.exit(child(args.child))
    logging.basicConfig(level=logging.WARNING)
    base = load_settings(None)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"--kinds: unknown {', '.join(sorted(unknown))}")
    folder = Path(tempfile.mkdtemp(prefix="smartbin-soak-")) if args.keep is None else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    state = folder / "state"
    with small_disk(state, args.disk_mb) as disk:
        (folder / "model").mkdir(exist_ok=True)
        given = args.model or base.model.path
        model = folder / "model" / given.name
        shutil.copy(given, model)
        shutil.copy(given.with_suffix(".json"), model.with_suffix(".json"))
        settings = soak_settings(base, state, args.images if args.images.is_dir() else None, model)
        print(f"fault soak: {args.items} items, a fault every ~{args.every:g} s ({', '.join(kinds)}), "
              f"state on {'a ' + str(args.disk_mb) + ' MB tmpfs' if disk else 'the disk (no disk-full faults)'}, "
              f"logs in {folder}", flush=True)
        figures = run(settings, folder, args.items, args.every, args.seed, disk, kinds,
                      lambda line: print(line, flush=True))
        shutil.copy(settings.records.database, folder / "items.db")
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
