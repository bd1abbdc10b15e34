"""Item records: one durable row per item in SQLite (WAL, synchronous=FULL, committed before the next item).

A crash or ``kill -9`` loses no committed record: each item is its own transaction, and WAL keeps the file
readable after an interrupted write. Each record carries a random ``uid``: writing the same record twice (taken
back from a spill file, ``edge.held``) leaves one row. A failure is a RecordError with SQLite's error name and a
``transient`` flag (full, busy, locked, I/O: worth trying again; corrupt, read-only, schema: not). Counts (all
time, per day, bin and outcome) come from the ``daily`` aggregates, which a trigger keeps and which outlive the
items: ``prune`` deletes old items (retention) in small batches without touching them, nor the operator's
``labels`` of kept frames. A new database vacuums incrementally, so pruned pages are handed back.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from edge.errors import RecordError

Outcome = Literal["sorted", "rejected", "error", "late", "too_close"]
NOT_ITEM = "not-an-item"  # the label of a frame that shows no single item (empty belt, two items, a hand)

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        REAL    NOT NULL,   -- Unix time of the item's first frame
    frame       INTEGER NOT NULL,   -- number of that frame from the source's start
    source      TEXT    NOT NULL,
    label       TEXT,               -- most probable class (NULL when the item failed before classifying)
    confidence  REAL,
    top_k       TEXT    NOT NULL,   -- JSON [[label, probability], ...], most probable first
    bin         TEXT    NOT NULL,   -- where the item was sent
    gate_action TEXT    NOT NULL,   -- e.g. 'flap→45°', 'pusher→on', 'none'
    outcome     TEXT    NOT NULL CHECK (outcome IN ('sorted', 'rejected', 'error', 'late', 'too_close')),
    error       TEXT,
    latency_ms  TEXT    NOT NULL,   -- JSON {stage: milliseconds}
    frames      INTEGER NOT NULL,   -- frames classified for this item
    truth       TEXT,               -- known label (replay / simulation only)
    model       TEXT    NOT NULL,
    reason      TEXT,               -- why this bin: top, cost, quarantine, below threshold (NULL: not decided)
    expected_cost REAL,             -- the chosen bin's expected cost under [costs] (NULL: threshold rule)
    model_sha256 TEXT,              -- the model file's sha256 (NULL: a fake classifier or an older release)
    passing_s   REAL,               -- seconds the item took to pass a point of the belt, as the trigger measured
                                    -- it (NULL: not measured; a gate held for conveyor.item_pass_s)
    uid         TEXT                -- the record's own random id (unique; NULL: an older release's record)
);
CREATE INDEX IF NOT EXISTS items_time ON items (time);
-- The latest error in O(log n), however long ago it was.
CREATE INDEX IF NOT EXISTS items_errors ON items (id) WHERE outcome = 'error';
-- Items per local day, bin and outcome, kept by a trigger: counts that do not grow with the table (and that
-- outlive the items, once old items are deleted).
CREATE TABLE IF NOT EXISTS daily (
    day     TEXT    NOT NULL,  -- local date, YYYY-MM-DD
    bin     TEXT    NOT NULL,
    outcome TEXT    NOT NULL,
    items   INTEGER NOT NULL,
    PRIMARY KEY (day, bin, outcome)
) WITHOUT ROWID;
-- Durable counters: how far a consumer of the items has got (the MQTT publisher's last delivered id), starts.
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
-- What a shadow model (``model.shadow``) said of an item, beside the live model's record.
CREATE TABLE IF NOT EXISTS shadow (
    item_id      INTEGER PRIMARY KEY,  -- items.id
    model        TEXT    NOT NULL,
    model_sha256 TEXT    NOT NULL,
    label        TEXT    NOT NULL,
    confidence   REAL    NOT NULL,
    agree        INTEGER NOT NULL      -- 1: the same label as the live model
);
-- The operator's labels of kept frames (the web page's Teach tab). No trigger deletes them with their item: a
-- label outlives the retention of its item's record.
CREATE TABLE IF NOT EXISTS labels (
    item_id    INTEGER PRIMARY KEY,  -- items.id (the item's row may since have been pruned)
    label      TEXT    NOT NULL,     -- a class of the model, or 'not-an-item'
    who        TEXT    NOT NULL,
    time       REAL    NOT NULL,     -- Unix time of the label
    guess      TEXT,                 -- what the model said the item was
    confidence REAL
);
CREATE TRIGGER IF NOT EXISTS items_shadow AFTER DELETE ON items BEGIN
    DELETE FROM shadow WHERE item_id = OLD.id;
END;
CREATE TRIGGER IF NOT EXISTS items_daily AFTER INSERT ON items BEGIN
    INSERT INTO daily VALUES (date(NEW.time, 'unixepoch', 'localtime'), NEW.bin, NEW.outcome, 1)
    ON CONFLICT (day, bin, outcome) DO UPDATE SET items = items + 1;
END;
"""
SCHEMA_VERSION = 6  # 1: the daily aggregates (a database of version 0 gets them counted from its items once)
# 2: the decision's reason and expected cost; 3: the model's sha256; 4: the item's measured passing time
# (columns added to an older table); 5: the operator's labels (a table an older database gains); 6: the uid
ADDED_COLUMNS = {"reason": "TEXT", "expected_cost": "REAL", "model_sha256": "TEXT", "passing_s": "REAL",
                 "uid": "TEXT"}
UID_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS items_uid ON items (uid)"  # after the upgrade: needs the column
# SQLite's primary result codes of a failure that may clear by itself: a full disk, a lock, an I/O error
TRANSIENT_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR})


def database_error(what: str, exc: sqlite3.Error) -> RecordError:
    """A RecordError for ``what`` failing with ``exc``: its message with SQLite's error name, its ``code``, and
    ``transient`` from the primary result code (not from the message's text)."""
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    name: str | None = getattr(exc, "sqlite_errorname", None)
    return RecordError(f"{what}: {exc}" + (f" ({name})" if name else ""), name,
                       code is not None and code & 0xFF in TRANSIENT_CODES)


def disk_full(exc: RecordError) -> bool:
    """Whether a failure is what a full disk gives: SQLite's FULL, or an I/O error (writing the WAL)."""
    return exc.code is not None and exc.code.startswith(("SQLITE_FULL", "SQLITE_IOERR"))


@dataclass(frozen=True)
class ItemRecord:
    """What happened to one item."""

    time: float
    frame: int
    source: str
    bin: str
    gate_action: str
    outcome: Outcome
    model: str
    label: str | None = None
    confidence: float | None = None
    top_k: tuple[tuple[str, float], ...] = ()
    error: str | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    frames: int = 1
    truth: str | None = None
    reason: str | None = None
    expected_cost: float | None = None
    model_sha256: str | None = None
    passing_s: float | None = None
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)  # the same record written twice: one row

    @property
    def seen(self) -> str:
        """What the model saw, as log lines say it: 'green-glass 0.93', or '?' when it did not classify."""
        return f"{self.label} {self.confidence:.2f}" if self.label is not None else "?"

    def to_json(self) -> str:
        """The record as one JSON line (what is logged, or spilled, if the database cannot take it)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ItemRecord:
        """An ``items`` row (JSON decoded) or a ``to_json`` line's object as a record; keys it does not know (the
        row's id) are left out, those it lacks (an older table's) take their defaults. Raises TypeError, ValueError
        for an object that is not a record."""
        values = {f.name: row[f.name] for f in fields(cls) if f.name in row}
        values["top_k"] = tuple((str(label), float(p)) for label, p in values.get("top_k", ()))
        if values.get("uid") is None:
            values.pop("uid", None)
        return cls(**values)


PRUNE_BATCH = 500  # items deleted per transaction: a few milliseconds, so an item's write never waits long
CHECKPOINT_EVERY = 50  # items between PASSIVE checkpoints of the WAL
WAL_LIMIT_BYTES = 1 << 20  # the WAL file is cut back to this after a checkpoint


def local_midnight(now: float | None = None) -> float:
    """Unix time of the last local midnight before ``now`` (default: now): where "today" starts."""
    moment = datetime.fromtimestamp(time.time() if now is None else now)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class NotCreatedYet(RecordError):
    """A database file whose tables are not there yet: the sorter that creates it is still setting it up."""


class Records:
    """The item database. ``add`` commits each record before returning."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        """Open the database, creating it; ``readonly`` opens an existing one and never writes (``status``)."""
        self.path = Path(path)
        self.readonly = readonly
        try:
            if readonly:
                self._db = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True, timeout=10,
                                           check_same_thread=False)
                if not self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'items'").fetchone():
                    self._db.close()
                    raise NotCreatedYet(f"item database {self.path} has no items table yet (being created?)")
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
                if not self._db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
                    self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes before the file is written
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
                self._db.executescript(SCHEMA)
                self._upgrade()
                self._db.execute(UID_INDEX)
        except sqlite3.Error as exc:
            raise database_error(f"cannot open item database {self.path}", exc) from None
        except RecordError:
            raise  # NotCreatedYet, as it is
        except OSError as exc:
            raise RecordError(f"cannot open item database {self.path}: {exc}") from None

    def _upgrade(self) -> None:
        """Bring a database of an earlier release up to date: its items counted into the daily aggregates
        (version 0), the columns it lacks added (version 1); the tables it lacks (labels) came with ``SCHEMA``."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        with self._db:
            if version < 1:
                self._db.execute("DELETE FROM daily")
                self._db.execute("INSERT INTO daily SELECT date(time, 'unixepoch', 'localtime'), bin, outcome, "
                                 "COUNT(*) FROM items GROUP BY 1, 2, 3")
            present = {row[1] for row in self._db.execute("PRAGMA table_info(items)")}
            for name, kind in ADDED_COLUMNS.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE items ADD COLUMN {name} {kind}")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def has_aggregates(self) -> bool:
        """Whether the daily aggregates are there and complete (a reader of a version-0 database: not yet)."""
        return bool(self._db.execute("PRAGMA user_version").fetchone()[0] >= 1)

    def add(self, record: ItemRecord) -> int:
        """Write and commit one record; returns its id (the id it has already where a record of its ``uid`` is
        there: nothing is written twice). Raises RecordError (e.g. disk full)."""
        row = asdict(record)
        row["top_k"] = json.dumps(record.top_k)
        row["latency_ms"] = json.dumps(record.latency_ms)
        columns = ", ".join(row)
        try:
            with self._db:
                cursor = self._db.execute(f"INSERT INTO items ({columns}) VALUES ({', '.join('?' * len(row))}) "
                                          "ON CONFLICT (uid) DO NOTHING", tuple(row.values()))
                if cursor.rowcount == 0:
                    return int(self._db.execute("SELECT id FROM items WHERE uid = ?", (record.uid,)).fetchone()[0])
        except sqlite3.Error as exc:
            raise database_error(f"cannot write item record to {self.path}", exc) from None
        assert cursor.lastrowid is not None
        if cursor.lastrowid % CHECKPOINT_EVERY == 0:
            self._checkpoint()
        return cursor.lastrowid

    def amend(self, item_id: int, outcome: Outcome, error: str) -> None:
        """Change the outcome and error of item ``item_id`` after the fact (a gate that failed under it), its day's
        counts with it. Raises RecordError."""
        try:
            with self._db:
                row = self._db.execute("SELECT date(time, 'unixepoch', 'localtime'), bin, outcome FROM items "
                                       "WHERE id = ?", (item_id,)).fetchone()
                if row is None:
                    return
                self._db.execute("UPDATE items SET outcome = ?, error = ? WHERE id = ?", (outcome, error, item_id))
                self._db.execute("UPDATE daily SET items = items - 1 WHERE day = ? AND bin = ? AND outcome = ?", row)
                self._db.execute("INSERT INTO daily VALUES (?, ?, ?, 1) ON CONFLICT (day, bin, outcome) "
                                 "DO UPDATE SET items = items + 1", (row[0], row[1], outcome))
        except sqlite3.Error as exc:
            raise RecordError(f"cannot amend item record {item_id} in {self.path}: {exc}") from None

    def add_shadow(self, item_id: int, model: str, sha256: str, label: str, confidence: float, agree: bool) -> None:
        """Write what a shadow model said of item ``item_id``. Raises RecordError."""
        try:
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO shadow VALUES (?, ?, ?, ?, ?, ?)",
                                 (item_id, model, sha256, label, confidence, int(agree)))
        except sqlite3.Error as exc:
            raise database_error(f"cannot write a shadow result to {self.path}", exc) from None

    def set_label(self, item_id: int, label: str, who: str, when: float, guess: str | None,
                  confidence: float | None) -> None:
        """Label item ``item_id`` (a class, or ``NOT_ITEM``), replacing an earlier label. Raises RecordError."""
        try:
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?, ?)",
                                 (item_id, label, who, when, guess, confidence))
        except sqlite3.Error as exc:
            raise database_error(f"cannot write the label of item {item_id} to {self.path}", exc) from None

    def remove_label(self, item_id: int) -> bool:
        """Remove item ``item_id``'s label (undo); whether it had one. Raises RecordError."""
        try:
            with self._db:
                return self._db.execute("DELETE FROM labels WHERE item_id = ?", (item_id,)).rowcount > 0
        except sqlite3.Error as exc:
            raise database_error(f"cannot remove the label of item {item_id} from {self.path}", exc) from None

    def labels(self) -> list[dict[str, Any]]:
        """Every label (item_id, label, who, time, guess, confidence), oldest first. Raises RecordError."""
        return self._labels("SELECT * FROM labels ORDER BY time, item_id")

    def label_counts(self) -> dict[str, int]:
        """Labelled items per label (``NOT_ITEM`` included). Raises RecordError."""
        rows = self._labels("SELECT label, COUNT(*) AS n FROM labels GROUP BY label ORDER BY label")
        return {row["label"]: row["n"] for row in rows}

    def _labels(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a query of the labels; none where the table is not there yet (an older database, read only)."""
        try:
            if not self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'labels'").fetchone():
                return []
            return self.query(sql)
        except RecordError as exc:
            raise RecordError(f"cannot read the labels of {self.path}: {exc}", exc.code, exc.transient) from None
        except sqlite3.Error as exc:
            raise database_error(f"cannot read the labels of {self.path}", exc) from None

    def _checkpoint(self, mode: Literal["PASSIVE", "TRUNCATE"] = "PASSIVE") -> None:
        """Copy the WAL into the database without waiting for readers (PASSIVE), so that the WAL is reused
        (and cut to ``WAL_LIMIT_BYTES``) rather than growing to SQLite's 1000-page auto-checkpoint and beyond
        while a reader (the web page, ``status``) holds it. TRUNCATE also cuts the WAL file to nothing (the
        room a full disk needs before a held record is tried again)."""
        try:
            self._db.execute(f"PRAGMA wal_checkpoint({mode})")
        except sqlite3.Error:
            pass  # a busy checkpoint is retried at the next interval; the record itself is committed

    def checkpoint(self) -> None:
        """Copy the WAL into the database and cut it to nothing, as far as readers allow; never raises."""
        self._checkpoint("TRUNCATE")

    def recent(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest ``limit`` records, newest first, as dicts (JSON columns decoded)."""
        return self.query("SELECT * FROM items ORDER BY id DESC LIMIT ?", (limit,))

    def in_order(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        return self.query("SELECT * FROM items ORDER BY id")

    def last_error(self) -> dict[str, Any] | None:
        """The latest record with outcome ``error``, None if none failed."""
        rows = self.query("SELECT * FROM items WHERE outcome = 'error' ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else None

    def total(self) -> int:
        """Number of items recorded: from the daily aggregates (a count over the items where there are none)."""
        sql = "SELECT TOTAL(items) FROM daily" if self.has_aggregates else "SELECT COUNT(*) FROM items"
        return int(self._db.execute(sql).fetchone()[0])

    def today(self, now: float | None = None) -> dict[tuple[str, str], int]:
        """Items per (bin, outcome) since local midnight: from the aggregates (a count of today's items where
        there are none)."""
        if not self.has_aggregates:
            return self.counts(since=local_midnight(now))
        day = datetime.fromtimestamp(time.time() if now is None else now).strftime("%Y-%m-%d")
        rows = self._db.execute("SELECT bin, outcome, items FROM daily WHERE day = ?", (day,)).fetchall()
        return {(b, o): n for b, o, n in rows}

    def counter(self, name: str) -> int | None:
        """A durable counter (e.g. a consumer's last delivered item id), None if it was never set. Raises
        RecordError."""
        rows = self.query("SELECT value FROM counters WHERE name = ?", (name,))
        return None if not rows else int(rows[0]["value"])

    def set_counter(self, name: str, value: int) -> None:
        """Store a durable counter (committed). Raises RecordError."""
        try:
            with self._db:
                self._db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = "
                                 "excluded.value", (name, value))
        except sqlite3.Error as exc:
            raise database_error(f"cannot store counter {name} in {self.path}", exc) from None

    def after(self, last_id: int, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` records with an id above ``last_id``, oldest first."""
        return self.query("SELECT * FROM items WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit))

    def last_id(self) -> int:
        """The newest item's id (0 if none). Raises RecordError."""
        return int(self.query("SELECT COALESCE(MAX(id), 0) AS id FROM items")[0]["id"])

    def used_bytes(self) -> int:
        """Bytes of the database file in use (free pages left out: SQLite reuses them)."""
        pages, free, size = (self._db.execute(f"PRAGMA {name}").fetchone()[0]
                             for name in ("page_count", "freelist_count", "page_size"))
        return int((pages - free) * size)

    def prune(self, before: float | None = None, max_bytes: int | None = None, batch: int = PRUNE_BATCH) -> int:
        """Delete up to ``batch`` items, in one short transaction: items older than the Unix time ``before``,
        else, while the items take more than ``max_bytes``, the oldest ones. The aggregates are kept. Hands the
        freed pages back to the file system where the database vacuums incrementally. Returns the number
        deleted (0: nothing is due). Raises RecordError."""
        try:
            params: tuple[float | int, ...]
            if before is not None and self._db.execute("SELECT 1 FROM items WHERE time < ? LIMIT 1",
                                                       (before,)).fetchone():
                sql, params = "DELETE FROM items WHERE id IN (SELECT id FROM items WHERE time < ? LIMIT ?)", \
                    (before, batch)
            elif max_bytes is not None and self.used_bytes() > max_bytes:
                sql, params = "DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY id LIMIT ?)", (batch,)
            else:
                return 0
            with self._db:
                deleted = max(0, self._db.execute(sql, params).rowcount)
            if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
                self._db.executescript("PRAGMA incremental_vacuum")  # run to the end: one page per step
        except sqlite3.Error as exc:
            raise database_error(f"cannot prune old items of {self.path}", exc) from None
        return deleted

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query as dicts, with the JSON columns decoded (a column that is not JSON: None).
        Raises RecordError."""
        try:
            cursor = self._db.execute(sql, params)
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        except sqlite3.Error as exc:
            raise database_error(f"cannot read {self.path}", exc) from None
        for row in rows:
            for key in ("top_k", "latency_ms"):
                if key in row:
                    row[key] = decoded(row[key])
        return rows

    def counts(self, since: float = 0.0) -> dict[tuple[str, str], int]:
        """Number of items per (bin, outcome) since the Unix time ``since``."""
        cursor = self._db.execute(
            "SELECT bin, outcome, COUNT(*) FROM items WHERE time >= ? GROUP BY bin, outcome", (since,)
        )
        return {(b, o): n for b, o, n in cursor.fetchall()}

    def close(self) -> None:
        """Checkpoint (unless read-only) and close; safe to call twice."""
        db = self.__dict__.pop("_db", None)  # closed: a later use fails loudly, a second close is a no-op
        if db is None:
            return
        if not self.readonly:  # a reader's checkpoint would wait for the writer, then fail
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()

    def __enter__(self) -> Records:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decoded(text: Any) -> Any:
    """A JSON column's value, None where it is not JSON (a record damaged on disk reads, and is sent, as such)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None
