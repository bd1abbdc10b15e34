"""Read-only queries of the item database for the web page: one item, recent items, today's counts, purity
(where truths are known) and throughput, stage latencies, the last error, where an item's kept frame lies, and
the Teach tab's frames and labels."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, get_args

import numpy as np

from edge.records import NOT_ITEM, NotCreatedYet, Outcome, Records, local_midnight
from edge.retrain import KeptFacts
from edge.shadow import summary as shadow_summary

T = TypeVar("T")

THROUGHPUT_BUCKET_S = 900  # items per quarter of an hour
LATENCY_ITEMS = 100  # stage latencies over this many latest items


class RecordsView:
    """The records of ``database`` and the kept frames in ``frames_folder``, read only.

    Every call opens its own read-only connection (the sorter writes through another one), so calls are safe
    from any thread; a database that does not exist yet reads as empty. Raises RecordError if it is unreadable.
    """

    def __init__(self, database: Path, frames_folder: Path, bins: Sequence[str],
                 bin_of: Mapping[str, str] | None = None) -> None:
        self.database = database
        self.frames_folder = frames_folder
        self.bins = tuple(bins)
        self.bin_of = dict(bin_of or {})  # class -> bin: what an item of a known truth should have reached
        self.kept = KeptFacts(frames_folder)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return self._read(lambda records: records.query(sql, params), [])

    def item(self, item_id: int) -> dict[str, Any] | None:
        """One item's row (JSON columns decoded), None if there is no such item."""
        rows = self._query("SELECT * FROM items WHERE id = ?", (item_id,))
        return rows[0] if rows else None

    def _read(self, read: Callable[[Records], T], empty: T) -> T:
        if not self.database.exists():
            return empty
        try:
            records = Records(self.database, readonly=True)
        except NotCreatedYet:  # the sorter is creating it this very moment
            return empty
        with records:
            return read(records)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The latest ``limit`` items, newest first."""
        return self._read(lambda records: records.recent(limit), [])

    def total(self) -> int:
        """Number of items recorded."""
        return self._read(Records.total, 0)

    def shadow(self) -> dict[str, Any] | None:
        """The shadow model's figures (``edge.shadow.summary``), None if none ran."""
        return self._read(shadow_summary, None)

    def last_error(self) -> dict[str, Any] | None:
        """The latest item with outcome ``error``: id, time, error; None if none failed."""
        error = self._read(Records.last_error, None)
        return {key: error[key] for key in ("id", "time", "error")} if error else None

    def counts(self, now: float | None = None) -> dict[str, Any]:
        """Items since local midnight, from the aggregates: in all, per bin, per outcome, per bin and outcome
        (every configured bin and every outcome, zeros included)."""
        outcomes = get_args(Outcome)
        empty: dict[tuple[str, str], int] = {}
        counts = self._read(lambda records: records.today(now), empty)
        bins = list(self.bins) + sorted({b for b, _ in counts} - set(self.bins))  # a bin renamed since
        by_bin = {b: dict.fromkeys(outcomes, 0) for b in bins}
        for (name, outcome), n in counts.items():
            by_bin[name][outcome] = n
        return {
            "total": sum(counts.values()),
            "bins": {b: sum(counts.values()) for b, counts in by_bin.items()},
            "outcomes": {o: sum(counts[o] for counts in by_bin.values()) for o in outcomes},
            "by_bin": by_bin,
        }

    def today(self, now: float | None = None) -> dict[str, Any]:
        """``counts``, and since local midnight the items per quarter of an hour and each bin's purity among the
        items whose truth is known (replay of labelled photos, the simulator)."""
        now = time.time() if now is None else now
        since = local_midnight(now)
        return {
            "since": since,
            **self.counts(now),
            "throughput": {"bucket_s": THROUGHPUT_BUCKET_S, "buckets": self._throughput(since, now)},
            "purity": self._purity(since),
        }

    def _purity(self, since: float) -> dict[str, dict[str, float | int]]:
        """Per bin with known truths: how many, and the share of them that belong there."""
        rows = self._query("SELECT bin, truth, COUNT(*) AS n FROM items WHERE time >= ? AND truth IS NOT NULL "
                           "GROUP BY bin, truth", (since,))
        known: dict[str, list[int]] = {}
        for row in rows:
            counts = known.setdefault(row["bin"], [0, 0])
            counts[0] += row["n"]
            counts[1] += row["n"] if self.bin_of.get(row["truth"]) == row["bin"] else 0
        return {b: {"known": n, "purity": right / n} for b, (n, right) in known.items()}

    def _throughput(self, since: float, now: float) -> list[tuple[float, int]]:
        rows = self._query("SELECT CAST((time - ?) / ? AS INTEGER) AS slot, COUNT(*) AS n FROM items "
                           "WHERE time >= ? GROUP BY slot", (since, THROUGHPUT_BUCKET_S, since))
        if not rows:
            return []
        counts = {r["slot"]: r["n"] for r in rows}
        last = max(int((now - since) // THROUGHPUT_BUCKET_S), *counts)
        return [(since + slot * THROUGHPUT_BUCKET_S, counts.get(slot, 0)) for slot in range(min(counts), last + 1)]

    def latency(self, items: int = LATENCY_ITEMS) -> dict[str, dict[str, float]]:
        """Median, 95th percentile and maximum milliseconds per stage over the latest ``items`` items."""
        per_stage: dict[str, list[float]] = {}
        for row in self._query("SELECT latency_ms FROM items ORDER BY id DESC LIMIT ?", (items,)):
            latency = row["latency_ms"]
            for stage, ms in (latency.items() if isinstance(latency, dict) else ()):  # dict: not damaged on disk
                per_stage.setdefault(stage, []).append(ms)
        return {stage: {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2),
                        "max": round(max(ms), 2), "items": len(ms)} for stage, ms in per_stage.items()}

    def kept_frame(self, item_id: int) -> Path | None:
        """The item's frame kept for retraining (``NNNNNNNN.jpg``), if there is one."""
        path = self.frames_folder / f"{item_id:08d}.jpg"
        return path if path.is_file() else None

    def labels(self) -> list[dict[str, Any]]:
        """Every label given on the page (``Records.labels``), oldest first."""
        return self._read(Records.labels, [])

    def teach(self, labels: Sequence[str], limit: int) -> dict[str, Any]:
        """The Teach tab: the model's ``labels``, the labelled items per label, and up to ``limit`` of the kept
        frames not labelled yet, most useful first (``most_useful``)."""
        none: tuple[set[int], dict[str, int]] = (set(), {})
        ids, counts = self._read(lambda records: ({row["item_id"] for row in records.labels()},
                                                  records.label_counts()), none)
        left = [(item_id, facts) for item_id, facts in self.kept.read().items() if item_id not in ids]
        others = {label: n for label, n in counts.items() if label not in labels and label != NOT_ITEM}
        return {
            "labels": list(labels),
            "not_item": NOT_ITEM,
            "counts": {"labelled": {label: counts.get(label, 0) for label in labels} | others,
                       "not_item": counts.get(NOT_ITEM, 0), "left": len(left)},
            "frames": [teach_frame(item_id, facts) for item_id, facts in most_useful(left)[:limit]],
        }


def most_useful(frames: Sequence[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """Kept frames (item id, facts) in the order worth labelling: the least certain first, spread over the guessed
    classes (round-robin: each class's least certain frame, then each class's next; the classes in the order of
    their least certain frame), so that no class comes twice in a row while another is left."""
    by_guess: dict[str | None, list[tuple[int, dict[str, Any]]]] = {}
    for frame in sorted(frames, key=lambda frame: (frame[1].get("confidence") or 0.0, frame[0])):
        by_guess.setdefault(frame[1].get("label"), []).append(frame)
    return [frame for turn in itertools.zip_longest(*by_guess.values()) for frame in turn if frame is not None]


def teach_frame(item_id: int, facts: dict[str, Any]) -> dict[str, Any]:
    """A kept frame as the Teach tab shows it: the model's guess, its top-k, and where the frame is."""
    return {"id": item_id, "time": facts.get("time"), "guess": facts.get("label"),
            "confidence": facts.get("confidence"), "top_k": facts.get("top_k", []), "bin": facts.get("bin"),
            "outcome": facts.get("outcome"), "kept": facts.get("kept", "uncertain"),
            "frame_url": f"/api/items/{item_id}/frame.jpg"}
