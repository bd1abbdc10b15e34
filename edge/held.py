"""Records the database will not take for now (disk full, locked past its timeout): held in memory, in order,
and written as soon as it takes them again, so that sorting goes on and no item's record is lost.

Whether a failure is held comes from SQLite's result code (``RecordError.transient``: full, busy, locked, I/O);
others (a read-only or damaged database) stop the loop, as does a hold that reaches ``limit`` records. While
records are held, a write is tried at most every ``retry_s`` seconds, so that a locked database does not make
every item wait out the lock timeout; before a try on a full disk, ``make_space`` frees what it can (the kept
frames that are not labelled) and the WAL is checkpointed and cut.

With a ``spill`` file (on another file system: the unit's runtime directory), each record is appended to it as
it is held (a kill loses none), the file is rewritten to what is still held at the end of a run (``spill_held``),
and ``take_back`` at the next start writes them to the database (each record's uid makes that idempotent: the
file may also hold records written since); it goes once every held record is written. While records are held,
``held.json`` beside it says how many and why (``smartbin status`` and the health page read it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.errors import RecordError
from edge.records import ItemRecord, Records, disk_full

logger = logging.getLogger("smartbin.items")

HOLD_LIMIT = 20_000  # records held in memory (~1 kB each) before the loop gives up: hours of a full disk
RETRY_S = 5.0
STATE_NAME = "held.json"  # beside the spill file, while records are held


class HeldRecords:
    """Writes records through ``records``; holds those it cannot write yet. ``add`` returns what was written
    now, as (id, record), oldest first: the held records that went in, then this one if it did."""

    def __init__(self, records: Records, limit: int = HOLD_LIMIT, retry_s: float = RETRY_S,
                 clock: Callable[[], float] = time.monotonic, spill: Path | None = None,
                 make_space: Callable[[], int] | None = None) -> None:
        self.records = records
        self.limit = limit
        self.retry_s = retry_s
        self.clock = clock
        self.spill = spill
        self.make_space = make_space
        self.refusal: RecordError | None = None  # why the database refuses records now (None: it takes them)
        self._held: deque[ItemRecord] = deque()
        self._since: float | None = None  # Unix time of the first refusal of this hold
        self._retry_at: float | None = None  # set while the database refuses records
        self._journal_failed = False  # the spill file refused an appended record (said once)

    @property
    def held(self) -> int:
        """Records waiting for the database."""
        return len(self._held)

    @property
    def disk_full(self) -> bool:
        """Whether the database refuses records because its disk is full."""
        return self.refusal is not None and disk_full(self.refusal)

    def add(self, record: ItemRecord) -> list[tuple[int, ItemRecord]]:
        """Write ``record`` after any held ones, or hold it. Raises RecordError for a failure that is not
        transient, or when more than ``limit`` records are held (every record is then in ``unsaved()``)."""
        self._held.append(record)
        if self._retry_at is None or self.clock() >= self._retry_at:
            written = self._write()
        else:
            written = []
            self._save_state()
        if self._held and self._held[-1] is record:
            self._journal(record)
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

    def spill_held(self) -> bool:
        """Write the held records to the spill file (replacing it whole), to be taken back at the next start;
        whether they are there (False: no spill file, or it cannot be written; the records stay held)."""
        if self.spill is None or not self._held:
            return False
        try:
            replace_text(self.spill, "".join(record.to_json() + "\n" for record in self._held))
        except OSError as exc:
            logger.error("cannot spill %d held item records to %s: %s", len(self._held), self.spill,
                         exc.strerror or exc)
            return False
        logger.warning("%d held item records spilled to %s (the database refuses them: %s); taken back at the next "
                       "start", len(self._held), self.spill, self.refusal)
        self._held.clear()
        self._save_state()
        return True

    def take_back(self) -> list[tuple[int, ItemRecord]]:
        """Hold the records of a spill file (before any held now) and write what the database takes; a line that
        is not a record is logged whole, as an error. Returns what was written."""
        if self.spill is None or not self.spill.exists():
            return []
        try:
            lines = self.spill.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            logger.error("cannot take back the held item records of %s: %s", self.spill, exc)
            return []
        spilled = []
        for number, line in enumerate(lines, 1):
            try:
                spilled.append(ItemRecord.from_row(json.loads(line)))
            except (TypeError, ValueError, AttributeError):
                logger.error("spill file %s line %d is not an item record: %s", self.spill, number, line[:2000])
        self._held.extendleft(reversed(spilled))
        written = self._write()
        logger.warning("took back %d held item records from %s: %d written, %d still held", len(spilled),
                       self.spill, len(written), len(self._held))
        if not self._held:
            self.spill.unlink(missing_ok=True)  # a bad line stays in the log only
        return written

    def state(self) -> dict[str, Any]:
        """What is held, since when and why (what ``held.json`` says)."""
        return {"held": len(self._held), "disk_full": self.disk_full, "since": self._since,
                "error": None if self.refusal is None else str(self.refusal)}

    def _write(self) -> list[tuple[int, ItemRecord]]:
        if self.refusal is not None:
            self._room()
        written: list[tuple[int, ItemRecord]] = []
        try:
            while self._held:
                item_id = self.records.add(self._held[0])
                written.append((item_id, self._held.popleft()))
        except RecordError as exc:
            if not exc.transient:
                raise
            if self.refusal is None:
                self._since = time.time()
                logger.warning("%s; %s: holding item records in memory (%d held, at most %d) until it takes them "
                               "again, sorting goes on", exc, "disk full" if disk_full(exc) else "database busy",
                               len(self._held), self.limit)
            self.refusal = exc
            self._retry_at = self.clock() + self.retry_s
            self._save_state()
            return written
        if self.refusal is not None:
            logger.warning("item database writable again: %d held records written after %.0f s", len(written),
                           time.time() - (self._since or time.time()))
            self.refusal = self._retry_at = self._since = None
            self._journal_failed = False
            self._save_state()
            if self.spill is not None:  # what was taken back from it and held since is written now
                self.spill.unlink(missing_ok=True)
        return written

    def _journal(self, record: ItemRecord) -> None:
        """Append a record just held to the spill file (synced), so that a kill loses none; a failure is one
        warning a hold (the record stays held in memory)."""
        if self.spill is None:
            return
        try:
            self.spill.parent.mkdir(parents=True, exist_ok=True)
            with self.spill.open("a", encoding="utf-8") as out:
                out.write(record.to_json() + "\n")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            if not self._journal_failed:
                logger.warning("cannot append held item records to %s: %s (they are held in memory)", self.spill,
                               exc.strerror or exc)
            self._journal_failed = True

    def _room(self) -> None:
        """Before a try on a full disk: the kept frames give way, the WAL is checkpointed and cut."""
        if not self.disk_full:
            return
        if self.make_space is not None:
            self.make_space()
        self.records.checkpoint()

    def _save_state(self) -> None:
        """``held.json`` beside the spill file while records are held; none once they are written or spilled."""
        if self.spill is None:
            return
        state = self.spill.with_name(STATE_NAME)
        with contextlib.suppress(OSError):
            if not self._held:
                state.unlink(missing_ok=True)
            else:
                replace_text(state, json.dumps({**self.state(), "pid": os.getpid(), "time": time.time()}),
                             sync=False)  # at every held item: a reader's view, not a record


def replace_text(path: Path, text: str, sync: bool = True) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, synced (``sync``), renamed over it. Raises
    OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with part.open("w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            if sync:
                os.fsync(out.fileno())
        os.replace(part, path)
    except OSError:
        part.unlink(missing_ok=True)
        raise


def read_state(spill: Path) -> dict[str, Any] | None:
    """The ``held.json`` beside a spill file, None where there is none (or it cannot be read)."""
    try:
        state = json.loads(spill.with_name(STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def spilled(spill: Path) -> int:
    """Records waiting in a spill file for the next start (0: none)."""
    try:
        with spill.open("rb") as lines:
            return sum(1 for _ in lines)
    except OSError:
        return 0


def disk_state(folder: Path, spill: Path | None) -> dict[str, Any]:
    """The disk fields of the health page, the telemetry and ``smartbin status``: MB free in ``folder`` (the
    records'), whether a running sorter finds the disk full and how many records it holds (its ``held.json``),
    and how many wait in the spill file for the next start."""
    state = read_state(spill) if spill is not None else None
    if state is not None and not running(state.get("pid")):
        state = None  # that sorter has ended: what it held waits in the spill file
    try:
        free_mb: float | None = round(shutil.disk_usage(folder).free / 1024 / 1024, 1)
    except OSError:
        free_mb = None
    return {"free_mb": free_mb, "full": bool(state and state.get("disk_full")),
            "held": int(state.get("held", 0)) if state else 0, "held_since": state.get("since") if state else None,
            "refused": state.get("error") if state else None,
            "spilled": spilled(spill) if spill and not state else 0,  # while a sorter holds them: "held"
            "spill": None if spill is None else str(spill)}


def running(pid: Any) -> bool:
    """Whether process ``pid`` is there (one of another user's counts)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except OSError:
        return False
    return True
