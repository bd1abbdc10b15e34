"""Log set-up for the command: plain messages on a terminal, ``LEVEL name: message`` lines in pipes and files,
and the same lines with a syslog priority prefix (``<4>``) when stdout is the journal, so that
``journalctl -u smartbin -p warning`` filters by level. A warning or error repeated word for word (say, asyncio's
``socket.accept() out of system resource`` under a connection flood) is written once per ``REPEAT_INTERVAL_S``,
then with how often it was held back, so that it cannot crowd the item lines out of the journal."""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TextIO

LINE = "%(levelname)s %(name)s: %(message)s"
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
REPEAT_INTERVAL_S = 60.0


class RepeatFilter(logging.Filter):
    """Lets a warning or error through once per ``interval`` s for the same logger and text; the next one let
    through says how many were held back. Info and debug lines (the items) always pass."""

    def __init__(self, interval: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic,
                 keys: int = 256) -> None:
        super().__init__()
        self.interval, self.clock, self.keys = interval, clock, keys
        self._seen: OrderedDict[tuple[str, int, str], tuple[float, int]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = self.clock()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self.interval:
            self._seen[key] = (last, held + 1)
            return False
        self._seen[key] = (now, 0)
        self._seen.move_to_end(key)
        while len(self._seen) > self.keys:
            self._seen.popitem(last=False)
        if held:
            record.msg, record.args = f"{record.getMessage()} ({held} repeats of this line held back)", None
        return True


class JournalFormatter(logging.Formatter):
    """``LINE`` with the record's syslog priority in front; journald strips it into the entry's PRIORITY."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def is_journal(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``stream`` is the journal stream systemd connected (``$JOURNAL_STREAM`` is its device:inode)."""
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return environ.get("JOURNAL_STREAM") == f"{stat.st_dev}:{stat.st_ino}"


def error_prefix(stream: TextIO) -> str:
    """``<3>`` (error) where ``stream`` is the journal, for lines printed outside logging; else nothing."""
    return f"<{PRIORITY[logging.ERROR]}>" if is_journal(stream) else ""


def configure_logging(verbose: bool, stream: TextIO) -> None:
    """Log to ``stream`` at INFO (DEBUG when ``verbose``)."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RepeatFilter())
    if is_journal(stream):
        handler.setFormatter(JournalFormatter(LINE))
    else:
        handler.setFormatter(logging.Formatter("%(message)s" if stream.isatty() else LINE))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
