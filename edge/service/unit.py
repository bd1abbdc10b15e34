"""The smartbin systemd unit seen from a shell: where it keeps things, its state (``systemctl show``), and the
guard that keeps a hand-started ``smartbin run`` / ``gate`` from fighting the running service for the camera
and the gates."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge.errors import ServiceRunning
from edge.pins import uses_mock_pins

UNIT = "smartbin.service"
CONFIG = Path("/etc/smartbin/smartbin.toml")  # ExecStart's --config (ConfigurationDirectory=smartbin)
STATE = Path("/var/lib/smartbin")  # StateDirectory=smartbin: items.db, uncertain/
RUNTIME = Path("/run/smartbin")  # RuntimeDirectory=smartbin: held-records.jsonl, held.json (edge.held)
PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result", "MainPID", "NRestarts", "StateChangeTimestamp",
              "StatusText")
RUNNING = ("active", "activating", "deactivating", "reloading")


@dataclass(frozen=True)
class UnitState:
    """What ``systemctl show smartbin.service`` says."""

    active: str
    sub: str
    result: str
    main_pid: int
    restarts: int
    since: str
    status: str

    @property
    def holds_devices(self) -> bool:
        """The service's process exists (starting, running or stopping): it may hold the camera and gates."""
        return self.main_pid > 0 and self.active in RUNNING

    def describe(self) -> str:
        """One line, e.g. 'active (running) since Tue 2026-11-24 12:00:01 UTC, pid 812, 0 restarts: sorting: …'."""
        parts = [f"{self.active} ({self.sub})" + (f" since {self.since}" if self.since else "")]
        if self.main_pid:
            parts.append(f"pid {self.main_pid}")
        parts.append(f"{self.restarts} restarts")
        if self.result not in ("", "success"):
            parts.append(f"last result: {self.result}")
        return ", ".join(parts) + (f": {self.status}" if self.status and self.holds_devices else "")


def unit_state() -> UnitState | None:
    """The unit's state; None where systemd is not running (or ``systemctl`` missing) or the unit is not installed."""
    try:
        done = subprocess.run(["systemctl", "show", UNIT, f"--property={','.join(PROPERTIES)}"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    values = dict(line.partition("=")[::2] for line in done.stdout.splitlines())
    if done.returncode != 0 or values.get("LoadState") != "loaded":
        return None
    return UnitState(values.get("ActiveState", ""), values.get("SubState", ""), values.get("Result", ""),
                     int(values.get("MainPID") or 0), int(values.get("NRestarts") or 0),
                     values.get("StateChangeTimestamp", ""), values.get("StatusText", ""))


def live_camera(source: str) -> bool:
    """A camera only one process can open: the Pi camera or a V4L2 device (USB index or /dev/video*)."""
    return source == "picamera2" or source.isdigit() or source.startswith("/dev/video")


def refuse_beside_service(pin_factory: str, camera_source: str | None = None) -> None:
    """Raise ServiceRunning if the smartbin service runs (and this process is not it) while this command would
    use the camera (``camera_source``, when given) or real GPIO pins (``pin_factory``): one clear line instead
    of a libcamera or GPIO-busy error."""
    held = [what for what, used in (("the camera", camera_source is not None and live_camera(camera_source)),
                                    ("the gates", not uses_mock_pins(pin_factory))) if used]
    if not held:
        return
    unit = unit_state()
    if unit is None or not unit.holds_devices or unit.main_pid == os.getpid():
        return
    raise ServiceRunning(
        f"the smartbin service is running (pid {unit.main_pid}) and holds {' and '.join(held)}: stop it first with "
        "`sudo systemctl stop smartbin` (and `sudo systemctl start smartbin` when done)"
    )
