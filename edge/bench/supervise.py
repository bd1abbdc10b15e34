"""A supervisor that runs a service command as systemd runs the smartbin unit, for the fault soak.

It reads the unit's own settings (``Restart=on-failure``, ``RestartSec=``, ``RestartPreventExitStatus=``,
``WatchdogSec=``, ``StartLimitIntervalSec=`` / ``StartLimitBurst=``) from ``systemd/smartbin.service``, gives the
child ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` as systemd does, receives its ``READY=1`` / ``WATCHDOG=1``,
sends SIGABRT when the watchdog runs out (SIGKILL 5 s later), runs ``stop_post`` after every exit (the unit's
``ExecStopPost``: gates to safe) and restarts the child after a failure, until the start limit is hit.
Every event is kept, with its ``time.monotonic()``, in ``events``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "smartbin.service"
ABORT_GRACE_S = 5.0


@dataclass(frozen=True)
class UnitPolicy:
    """The restart, watchdog and start-limit settings of a unit file."""

    restart_s: float
    watchdog_s: float
    prevent_exit: frozenset[int]
    start_interval_s: float
    start_burst: int

    @classmethod
    def read(cls, unit: Path = UNIT) -> UnitPolicy:
        text = unit.read_text(encoding="utf-8")

        def value(key: str, default: str) -> str:
            found = re.findall(rf"^{key}=(.*)$", text, re.MULTILINE)
            return found[-1].strip() if found else default

        if value("Restart", "no") != "on-failure":
            raise ValueError(f"{unit}: the soak supervises Restart=on-failure only")
        return cls(seconds(value("RestartSec", "100ms")), seconds(value("WatchdogSec", "0")),
                   frozenset(int(v) for v in value("RestartPreventExitStatus", "").split()),
                   seconds(value("StartLimitIntervalSec", "10s")), int(value("StartLimitBurst", "5")))


def seconds(span: str) -> float:
    """A systemd time span ('2s', '10min', '100ms', '30') in seconds."""
    units = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "": 1.0}
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)\s*([a-z]*)", span):
        total += float(number) * units[unit]
    return total


@dataclass
class Event:
    time: float
    kind: str  # start, ready, watchdog, exit, stop-post, gave-up
    detail: str = ""


@dataclass
class Supervisor:
    """Runs ``argv`` under ``policy`` with stdout/stderr appended to ``journal``. ``start()``, then
    ``kill(sig)`` to inject a fault, ``stop()`` at the end (SIGTERM, no restart)."""

    argv: Sequence[str]
    journal: Path
    policy: UnitPolicy = field(default_factory=UnitPolicy.read)
    stop_post: Callable[[], None] = lambda: None
    env: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    failed: bool = False  # the start limit was hit: given up, as systemd would

    def __post_init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="smartbin-notify-")
        self._address = os.path.join(self._folder.name, "notify")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self._address)
        self._socket.settimeout(0.2)
        self._last_ping = 0.0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._listen, daemon=True),
                         threading.Thread(target=self._watch, daemon=True)]

    def _event(self, kind: str, detail: str = "") -> None:
        with self._lock:
            self.events.append(Event(time.monotonic(), kind, detail))

    def start(self) -> Supervisor:
        self._spawn()
        for thread in self._threads:
            thread.start()
        return self

    def _spawn(self) -> None:
        env = {**os.environ, **self.env, "NOTIFY_SOCKET": self._address}
        if self.policy.watchdog_s:
            env["WATCHDOG_USEC"] = str(int(self.policy.watchdog_s * 1e6))
        with self.journal.open("ab") as out:
            self.process = subprocess.Popen(list(self.argv), stdout=out, stderr=subprocess.STDOUT, env=env)
        self._last_ping = time.monotonic()
        self._event("start", str(self.process.pid))

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                message = self._socket.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            except OSError:
                return
            for line in message.splitlines():
                if line == "READY=1":
                    self._event("ready")
                    self._last_ping = time.monotonic()
                elif line == "WATCHDOG=1":
                    self._last_ping = time.monotonic()

    def _watch(self) -> None:
        while (process := self.process) is not None:  # until an exit that is not restarted
            code = process.poll()
            if code is None:
                if (self.policy.watchdog_s and not self._stopping.is_set()
                        and time.monotonic() - self._last_ping > self.policy.watchdog_s):
                    self._event("watchdog", str(process.pid))
                    process.send_signal(signal.SIGABRT)
                    try:
                        process.wait(ABORT_GRACE_S)
                    except subprocess.TimeoutExpired:
                        process.kill()
                time.sleep(0.05)
                continue
            self._exited(code)

    def _exited(self, code: int) -> None:
        self._event("exit", f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}")
        self.stop_post()
        self._event("stop-post")
        if self._stopping.is_set() or code == 0 or code in self.policy.prevent_exit:
            self.process = None
            return
        if self._stopping.wait(self.policy.restart_s):
            self.process = None
            return
        recent = [e for e in self.events if e.kind == "start"
                  and e.time > time.monotonic() - self.policy.start_interval_s]
        if len(recent) >= self.policy.start_burst:
            self._event("gave-up", f"{len(recent)} starts in {self.policy.start_interval_s:g} s")
            self.failed = True
            self.process = None
            return
        self._spawn()

    def kill(self, sig: int = signal.SIGKILL) -> bool:
        """Send ``sig`` to the running child; False if none is running."""
        process = self.process
        if process is None or process.poll() is not None:
            return False
        process.send_signal(sig)
        return True

    @property
    def pid(self) -> int | None:
        process = self.process
        return process.pid if process is not None and process.poll() is None else None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the child (no restart), wait for it and for the stop-post step."""
        self._stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self._socket.close()
        self._folder.cleanup()
