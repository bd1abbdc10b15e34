"""Retention: old item records deleted in the background, so a year of sorting fits on an SD card.

A thread with its own connection to the item database prunes it every ``INTERVAL_S`` (and once at start): items
older than ``records.keep_days``, then the oldest while the items take more than ``records.max_mb``. Each batch
(``edge.records.PRUNE_BATCH`` items) is one short transaction with a pause after it, so the sorting thread's
write of an item never waits behind a long delete. The daily aggregates are not touched: counts outlive items.
A failure is logged and retried at the next interval; it never stops the sorter.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from edge.errors import RecordError
from edge.records import Records

logger = logging.getLogger(__name__)

INTERVAL_S = 60.0  # between two prunes
PAUSE_S = 0.02  # after each batch: the sorter's writes go in between
DAY_S = 86_400


class Retention:
    """Prunes ``database`` by age (``keep_days``, 0 = no limit) and size (``max_mb``, 0 = no cap)."""

    def __init__(self, database: Path, keep_days: float, max_mb: float, interval_s: float = INTERVAL_S) -> None:
        self.database = database
        self.keep_days = keep_days
        self.max_bytes = int(max_mb * 1024 * 1024) if max_mb else None
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        """Whether anything can be due: an age limit or a size cap."""
        return bool(self.keep_days) or self.max_bytes is not None

    @property
    def policy(self) -> str:
        """What is deleted, in words; ``keep_days`` 0 reads as no age limit, never as "older than 0 days"."""
        age = f"items older than {self.keep_days:g} days" if self.keep_days else ""
        size = f"the oldest items while they take more than {self.max_bytes / 1024 / 1024:g} MB" \
            if self.max_bytes is not None else ""
        if age and size:
            return f"{age}, then {size}"
        if age:
            return f"{age}; no size cap (max_mb = 0)"
        if size:
            return f"no age limit (keep_days = 0); {size}"
        return "off (keep_days = 0, max_mb = 0): every item is kept"

    def run_once(self, now: float | None = None) -> int:
        """Prune until nothing is due (or ``stop``); returns the items deleted. Raises RecordError."""
        before = (time.time() if now is None else now) - self.keep_days * DAY_S if self.keep_days else None
        deleted = 0
        with Records(self.database) as records:
            while not self._stop.is_set():
                batch = records.prune(before, self.max_bytes)
                if not batch:
                    break
                deleted += batch
                self._stop.wait(PAUSE_S)
        if deleted:
            logger.info("retention: deleted %d items (%s); counts are kept", deleted, self.policy)
        return deleted

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except RecordError as exc:
                logger.warning("retention: %s (retried in %g s)", exc, self.interval_s)
            self._stop.wait(self.interval_s)

    def start(self) -> Retention:
        """Log the policy, then prune now and every ``interval_s`` in a daemon thread (nothing when disabled)."""
        logger.info("retention: %s", self.policy)
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the batch in hand; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
