"""Records the database will not take for now (disk full, locked past its timeout): held in memory, in order,
and written as soon as it takes them again, so that sorting goes on and no item's record is lost.

Other write failures (a read-only or damaged database) are not held: they stop the loop, as does a hold that
reaches ``limit`` records. While records are held, a write is tried at most every ``retry_s`` seconds, so that a
locked database does not make every item wait out the lock timeout.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from edge.errors import RecordError
from edge.records import ItemRecord, Records

logger = logging.getLogger("smartbin.items")

HOLD_LIMIT = 20_000  # records held in memory (~1 kB each) before the loop gives up: hours of a full disk
RETRY_S = 5.0
TRANSIENT = ("database or disk is full", "database is locked", "disk i/o error")


def is_transient(exc: RecordError) -> bool:
    """Whether a write failure may clear by itself: a full disk (SQLite's FULL, or an I/O error writing the
    WAL) or a lock held past the timeout."""
    return any(words in str(exc).lower() for words in TRANSIENT)


class HeldRecords:
    """Writes records through ``records``; holds those it cannot write yet. ``add`` returns what was written
    now, as (id, record), oldest first: the held records that went in, then this one if it did."""

    def __init__(self, records: Records, limit: int = HOLD_LIMIT, retry_s: float = RETRY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.records = records
        self.limit = limit
        self.retry_s = retry_s
        self.clock = clock
        self._held: deque[ItemRecord] = deque()
        self._retry_at: float | None = None  # set while the database refuses records

    @property
    def held(self) -> int:
        """Records waiting for the database."""
        return len(self._held)

    def add(self, record: ItemRecord) -> list[tuple[int, ItemRecord]]:
        """Write ``record`` after any held ones, or hold it. Raises RecordError for a failure that is not
        transient, or when more than ``limit`` records are held (every record is then in ``unsaved()``)."""
        self._held.append(record)
        written = self._write() if self._retry_at is None or self.clock() >= self._retry_at else []
        if len(self._held) > self.limit:
            raise RecordError(f"{len(self._held)} item records held and the database still refuses them")
        return written

    def flush(self) -> list[tuple[int, ItemRecord]]:
        """Try the held records now, whenever the last try was (at the end of a run)."""
        return self._write() if self._held else []

    def unsaved(self) -> list[ItemRecord]:
        """The records still held, oldest first, handed over (to be logged when the loop stops)."""
        held, self._held = list(self._held), deque()
        return held

    def _write(self) -> list[tuple[int, ItemRecord]]:
        written: list[tuple[int, ItemRecord]] = []
        try:
            while self._held:
                item_id = self.records.add(self._held[0])
                written.append((item_id, self._held.popleft()))
        except RecordError as exc:
            if not is_transient(exc):
                raise
            if self._retry_at is None:
                logger.warning("%s; holding item records in memory until it takes them again", exc)
            self._retry_at = self.clock() + self.retry_s
            return written
        if self._retry_at is not None:
            logger.warning("item database writable again: %d held records written", len(written))
            self._retry_at = None
        return written
