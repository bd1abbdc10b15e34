"""Log set-up for the command: plain messages on a terminal, ``LEVEL name: message`` lines in pipes and files,
and the same lines with a syslog priority prefix (``<4>``) when stdout is the journal, so that
``journalctl -u smartbin -p warning`` filters by level."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TextIO

LINE = "%(levelname)s %(name)s: %(message)s"
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


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
    if is_journal(stream):
        handler.setFormatter(JournalFormatter(LINE))
    else:
        handler.setFormatter(logging.Formatter("%(message)s" if stream.isatty() else LINE))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
