"""Telling systemd how the service is doing (sd_notify): READY, STATUS, WATCHDOG and STOPPING.

Messages go through libsystemd's own ``sd_notify`` from python3-systemd (Raspberry Pi OS's apt package; the
venv sees it through ``--system-site-packages`` on a Pi) where it is importable, else through a direct write to
``$NOTIFY_SOCKET``: the protocol is one datagram of ``KEY=value`` lines to a Unix socket (a path, or an abstract
name written ``@name``), documented as stable in sd_notify(3). Outside systemd (no ``$NOTIFY_SOCKET``) nothing
is sent.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from edge.records import ItemRecord
from edge.sources import Frame, is_dead

logger = logging.getLogger(__name__)

Send = Callable[[str], None]


def socket_send(address: str) -> Send:
    """A sender that writes each message as one datagram to the socket ``address`` (``@`` = abstract)."""
    target = "\0" + address[1:] if address.startswith("@") else address

    def send(message: str) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message.encode())

    return send


def library_send() -> Send | None:
    """libsystemd's sd_notify through python3-systemd, or None where it is not installed."""
    try:
        from systemd import daemon  # type: ignore[attr-defined,import-not-found,unused-ignore]
    except ImportError:
        return None

    def send(message: str) -> None:
        if not daemon.notify(message):
            raise OSError("sd_notify failed")

    return send


def watchdog_seconds(environ: Mapping[str, str]) -> float | None:
    """``WatchdogSec=`` from ``WATCHDOG_USEC``; None without a watchdog or when ``WATCHDOG_PID`` is another process."""
    usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6


class Notifier:
    """sd_notify for this process, set up from the environment systemd gives the service. ``backend`` says how
    messages go (``libsystemd``, ``socket``, or ``none`` outside systemd); ``watchdog_s`` is ``WatchdogSec=`` or
    None. A failing send is logged once and otherwise ignored: the bin keeps sorting."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        library = library_send() if address else None
        self.backend = "libsystemd" if library else "socket" if address else "none"
        self._send = library or (socket_send(address) if address else None)
        self.watchdog_s = watchdog_seconds(environ) if address else None
        self._failed = False

    def notify(self, *fields: str) -> None:
        """Send ``KEY=value`` fields as one message."""
        if self._send is None:
            return
        try:
            self._send("\n".join(fields))
        except OSError as exc:
            if not self._failed:
                logger.warning("sd_notify failed (%s); systemd may not see this service's state", exc)
            self._failed = True

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def ping(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        self.notify("STOPPING=1", f"STATUS={status}")


class ServiceWatch:
    """Loop observer: pings the watchdog while frames with a picture arrive, at most every ``WatchdogSec``/3,
    and puts the latest item into the unit's status line. No frames (or only dead ones): no pings, and
    systemd restarts the service after ``WatchdogSec``."""

    def __init__(self, notifier: Notifier, clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.every = notifier.watchdog_s / 3 if notifier.watchdog_s else None
        self.clock = clock
        self.items = 0
        self._next_ping = 0.0

    def on_frame(self, frame: Frame) -> None:
        if self.every is None:
            return
        now = self.clock()
        if now >= self._next_ping and not is_dead(frame.rgb):
            self.notifier.ping()
            self._next_ping = now + self.every

    def on_item(self, item_id: int, record: ItemRecord) -> None:
        self.items += 1
        self.notifier.status(f"sorting: {self.items} items; last: item {item_id} {record.seen} → {record.bin} "
                             f"[{record.outcome}]")
