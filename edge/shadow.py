"""Shadow runs: a candidate model classifies each item's frames too, after the live decision and only while the
sorting thread is idle, so that an operator sees how it does on this belt before installing it.

The loop offers each decided item (its id, best frames, the live label) to ``Shadow.offer``, which never
blocks: a bounded queue, the oldest offer dropped when it is full (counted as ``skipped``). A thread of its own
takes an offer only when the loop reports no item waiting and none in hand, prepares the frames exactly as the
loop does, classifies them with the candidate (one interpreter thread, so that an invoke in progress when an
item arrives costs that item one shadow invoke at most), averages the votes and writes the candidate's label,
confidence and agreement into the ``shadow`` table, beside the item's record (truths, where known, are on the
item). ``summary`` gives the figures for ``smartbin status`` and the web page.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.classifier import Classifier
from edge.errors import SmartbinError
from edge.preprocess import CropMode, Roi
from edge.records import Records
from edge.sources import Frame
from edge.votes import vote_inputs

logger = logging.getLogger("smartbin")

QUEUE = 32  # offers waiting for an idle moment; older ones are dropped first
IDLE_POLL_S = 0.02
SUMMARY_ITEMS = 10_000


@dataclass(frozen=True)
class Offer:
    item_id: int
    frames: Sequence[Frame]
    live_label: str


class Shadow:
    """The candidate ``model`` beside the live one; ``busy`` says whether the loop has an item waiting or in hand.
    Raises ModelError at construction if the candidate cannot load (the sorter then does not start)."""

    def __init__(self, model: Path, database: Path, busy: Callable[[], bool] = lambda: False,
                 roi: Roi | None = None, crop: CropMode = "item") -> None:
        self.classifier = Classifier(model, threads=1)
        self.records = Records(database)
        self.busy = busy
        self.roi = roi
        self.crop = crop
        self.sha256 = self.classifier.sha256 or ""
        self.skipped = 0
        self.done = 0
        self.failed = 0
        self._queue: queue.Queue[Offer | None] = queue.Queue(maxsize=QUEUE)
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def offer(self, item_id: int, frames: Sequence[Frame], live_label: str) -> None:
        """Queue an item for the candidate; never blocks (the oldest waiting offer goes when the queue is full)."""
        offer = Offer(item_id, tuple(frames), live_label)
        while True:
            try:
                self._queue.put_nowait(offer)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.skipped += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while (offer := self._queue.get()) is not None:
            while self.busy():
                time.sleep(IDLE_POLL_S)
            try:
                self._classify(offer)
            except (SmartbinError, RuntimeError, ValueError) as exc:  # a shadow never stops the sorter
                self.failed += 1  # the same text each time, so that the log's repeat filter collapses a run of them
                logger.warning("shadow model %s: %s", self.classifier.path.name, exc)

    def _classify(self, offer: Offer) -> None:
        inputs = vote_inputs(offer.frames, self.classifier.input_size, self.roi, self.crop)
        probabilities = np.mean([self.classifier.probabilities(pixels) for pixels in inputs], axis=0)
        best = int(np.argmax(probabilities))
        label = self.classifier.labels[best]
        self.records.add_shadow(offer.item_id, self.classifier.path.name, self.sha256, label,
                                float(probabilities[best]), label == offer.live_label)
        self.done += 1

    def close(self) -> None:
        """Finish the offer in hand, drop the rest, release the candidate."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(timeout=10)
        self.classifier.close()
        self.records.close()


def summary(records: Records) -> dict[str, Any] | None:
    """The latest shadow model's figures over its last ``SUMMARY_ITEMS`` items (a bounded read): items,
    agreement with the live model, and where truths are known the top-1 of both on the same items; None if no
    shadow ever ran. Raises RecordError."""
    try:
        latest = records.query("SELECT model, model_sha256 FROM shadow ORDER BY item_id DESC LIMIT 1")
    except sqlite3.OperationalError:  # a database of an older release, not yet opened by this one's sorter
        return None
    if not latest:
        return None
    model, sha256 = latest[0]["model"], latest[0]["model_sha256"]
    row = records.query(
        "SELECT COUNT(*) AS items, TOTAL(s.agree) AS agree, COUNT(i.truth) AS known, "
        "TOTAL(s.label = i.truth) AS shadow_right, TOTAL(i.label = i.truth) AS live_right "
        "FROM (SELECT * FROM shadow ORDER BY item_id DESC LIMIT ?) s JOIN items i ON i.id = s.item_id "
        "WHERE s.model_sha256 = ?", (SUMMARY_ITEMS, sha256))[0]
    items, known = int(row["items"]), int(row["known"])
    return {"model": model, "sha256": sha256, "items": items,
            "agreement": row["agree"] / items if items else None, "known": known,
            "top1": row["shadow_right"] / known if known else None,
            "live_top1": row["live_right"] / known if known else None}


def describe(figures: dict[str, Any]) -> str:
    """One line: 'candidate.tflite: 412 items, agreement 93.2 %; top-1 91.0 % vs live 89.5 % on 412 known'."""
    line = f"{figures['model']} ({figures['sha256'][:12]}): {figures['items']} items"
    if figures["agreement"] is not None:
        line += f", agreement with the live model {figures['agreement']:.1%}"
    if figures["known"]:
        line += (f"; top-1 {figures['top1']:.1%} vs live {figures['live_top1']:.1%} on the {figures['known']} "
                 "with a known truth")
    return line
