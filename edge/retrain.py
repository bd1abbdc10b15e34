"""Frames kept for retraining: frames of uncertain items and a small sample of confident ones, in a bounded folder.

Each kept item is ``NNNNNNNN.jpg`` (the region of interest of its best-centred frame, grown to the whole item
square where the item crop reaches beyond it, so that a kept frame holds everything the model saw) and ``NNNNNNNN.json``
(record id, time, top-k, bin, outcome, truth if known, why it was kept), NNNNNNNN being the item's record id. When
the folder grows over ``max_mb`` the oldest unlabelled items go first. ``export`` turns the operator's labels (a CSV
of id,label) into a labelled-folder layout (one sub-folder per class) that the training recipe reads;
``export_labelled`` does the same with the labels given on the web page (the records' ``labels``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Literal

import cv2

from edge.errors import SmartbinError
from edge.preprocess import Box, CropMode, Roi, crop_box, model_box
from edge.records import NOT_ITEM, ItemRecord, Records
from edge.sources import Frame

Kept = Literal["uncertain", "sample"]  # why a frame was kept: its item was uncertain, or drawn as a sample

logger = logging.getLogger(__name__)

GIVE_WAY_BYTES = 4 << 20  # kept frames deleted per try of a full disk: room for ~10 000 item records


class FrameKeeper:
    """Saves the frames of items whose decision was uncertain (rejected, or confidence under ``keep_below``), and
    of ``sample_share`` of the others (by a hash of the item id: the same items on every run). ``labelled`` gives
    the ids of the items the operator has labelled: their frames are trimmed last."""

    def __init__(self, folder: Path, keep_below: float, max_mb: float, roi: Roi | None = None,
                 min_free_mb: float = 0.0, crop: CropMode = "item", sample_share: float = 0.0,
                 labelled: Callable[[], Collection[int]] | None = None) -> None:
        self.folder = folder
        self.keep_below = keep_below
        self.sample_share = sample_share
        self.labelled = labelled
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.roi = roi
        self.crop = crop
        self.min_free_bytes = int(min_free_mb * 1024 * 1024)
        self.disk_low = False  # frames are not kept while the disk has less than min_free_mb free
        folder.mkdir(parents=True, exist_ok=True)
        self._sizes = {p.stem: p.stat().st_size for p in folder.glob("*.jpg")}
        self._sizes = {stem: size + _size(folder / f"{stem}.json") for stem, size in self._sizes.items()}

    def wants(self, item_id: int, record: ItemRecord) -> Kept | None:
        """``uncertain`` for rejected items and items decided with a confidence under ``keep_below``, ``sample``
        for the classified others that the item id draws into the sample, else None."""
        if record.outcome == "rejected" or (record.confidence is not None and record.confidence < self.keep_below):
            return "uncertain"
        return "sample" if record.confidence is not None and sampled(item_id, self.sample_share) else None

    def keep(self, item_id: int, frame: Frame, record: ItemRecord) -> None:
        """Save the item's frame and facts if it is wanted; never raises (a full disk only logs)."""
        kept = self.wants(item_id, record)
        if kept is None or not self._room():
            return
        stem = f"{item_id:08d}"
        x0, y0, x1, y1 = kept_box(frame, self.roi, self.crop)
        try:
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame.rgb[y0:y1, x0:x1], cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                raise OSError("JPEG encoding failed")
            facts = {"id": item_id, "time": record.time, "label": record.label, "confidence": record.confidence,
                     "top_k": record.top_k, "bin": record.bin, "outcome": record.outcome, "truth": record.truth,
                     "kept": kept}
            (self.folder / f"{stem}.jpg").write_bytes(jpeg.tobytes())
            (self.folder / f"{stem}.json").write_text(json.dumps(facts))
        except OSError as exc:
            logger.warning("could not keep the frame of item %d for retraining: %s", item_id, exc)
            return
        self._sizes[stem] = _size(self.folder / f"{stem}.jpg") + _size(self.folder / f"{stem}.json")
        self._trim()

    def _room(self) -> bool:
        """Whether the disk has ``min_free_mb`` free; says so once when it stops having it, and when it has again.
        The item records are written on regardless: they take ~0.4 kB an item, a kept frame ~100 kB."""
        try:
            free = shutil.disk_usage(self.folder).free
        except OSError:
            return True  # the write itself will fail and say why
        low = free < self.min_free_bytes
        if low != self.disk_low:
            if low:
                logger.warning("disk nearly full: %d MB free in %s, under retrain.min_free_mb (%d): frames are no "
                               "longer kept for retraining; item records go on", free >> 20, self.folder,
                               self.min_free_bytes >> 20)
            else:
                logger.info("disk space back: %d MB free in %s: frames are kept again", free >> 20, self.folder)
            self.disk_low = low
        return not low

    def give_way(self, wanted: int = GIVE_WAY_BYTES) -> int:
        """Delete the oldest unlabelled frames, about ``wanted`` bytes, to make room for the item records on a full
        disk (labelled frames never go for that); returns the bytes freed."""
        labelled = self._labelled("kept frames not deleted for the item records")
        if labelled is None:
            return 0
        freed = gone = 0
        for stem in sorted(stem for stem in self._sizes if stem not in labelled):
            if freed >= wanted:
                break
            freed += self._drop(stem)
            gone += 1
        if gone:
            logger.warning("disk full: deleted the %d oldest unlabelled kept frames (%.1f MB) to make room for the "
                           "item records", gone, freed / 1024 / 1024)
        return freed

    def _trim(self) -> None:
        """Down to ``max_mb``: the oldest unlabelled frames first, labelled ones only if they alone are over it.
        Where the labels cannot be read, nothing goes this time (the next kept frame tries again)."""
        total = sum(self._sizes.values())
        if total <= self.max_bytes:
            return
        labelled = self._labelled("kept frames over retrain.max_mb, not trimmed")
        if labelled is None:
            return
        for stem in sorted(self._sizes, key=lambda stem: (stem in labelled, stem)):
            if total <= self.max_bytes:
                break
            total -= self._drop(stem)

    def _labelled(self, otherwise: str) -> set[str] | None:
        """The stems of the labelled items' frames; None (``otherwise`` logged) where the labels cannot be read."""
        try:
            return {f"{item_id:08d}" for item_id in self.labelled()} if self.labelled is not None else set()
        except OSError as exc:
            logger.warning("%s: %s", otherwise, exc)
            return None

    def _drop(self, stem: str) -> int:
        """Delete one kept item (JPEG and facts); the bytes it took."""
        for suffix in (".jpg", ".json"):
            (self.folder / f"{stem}{suffix}").unlink(missing_ok=True)
        return self._sizes.pop(stem)


class KeptFacts:
    """The facts (``NNNNNNNN.json``) of the frames kept in ``folder`` that have their JPEG, by item id. A file is
    parsed once while its size and time stay the same: the web page reads them all at every label."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._parsed: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}

    def read(self) -> dict[int, dict[str, Any]]:
        """Item id -> facts; a file being written (or unreadable) is left out until it can be read."""
        try:
            entries = {entry.name: entry for entry in os.scandir(self.folder)}
        except OSError:
            return {}
        parsed = {}
        for name, entry in entries.items():
            stem = name.removesuffix(".json")
            if stem == name or not (stem.isascii() and stem.isdigit()) or f"{stem}.jpg" not in entries:
                continue
            try:
                stat = entry.stat()
                key = (stat.st_mtime_ns, stat.st_size)
                known = self._parsed.get(stem)
                facts = known[1] if known is not None and known[0] == key else json.loads(Path(entry.path).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(facts, dict):
                parsed[stem] = (key, facts)
        self._parsed = parsed
        return {int(stem): facts for stem, (_, facts) in parsed.items()}


def kept_box(frame: Frame, roi: Roi | None, crop: CropMode) -> Box:
    """The part of a frame that is kept: the ROI, grown to hold the item square the model's crop took."""
    x0, y0, x1, y1 = crop_box(frame.rgb, roi)
    if crop == "item":
        ix0, iy0, ix1, iy1 = model_box(frame.rgb, roi, crop, frame.item_box)
        height, width = frame.rgb.shape[:2]
        x0, y0 = max(0, min(x0, ix0)), max(0, min(y0, iy0))
        x1, y1 = min(width, max(x1, ix1)), min(height, max(y1, iy1))
    return x0, y0, x1, y1


def sampled(item_id: int, share: float) -> bool:
    """Whether item ``item_id`` is in a sample of ``share`` of all items: a stable hash, not a random draw."""
    digest = hashlib.blake2b(item_id.to_bytes(8, "big", signed=True), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2**64


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def export(folder: Path, out: Path, labels_csv: Path | None, labels: tuple[str, ...]) -> str:
    """Without ``labels_csv``: write ``out/labels.csv`` (id, guess, confidence, empty label) for the operator.
    With it: copy each labelled frame to ``out/<label>/<id>.jpg``. Returns a one-line summary."""
    kept = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not kept:
        raise SmartbinError(f"no kept frames in {folder}")
    out.mkdir(parents=True, exist_ok=True)
    if labels_csv is None:
        template = out / "labels.csv"
        with template.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "guess", "confidence", "label"])
            for path in kept:
                facts = json.loads(path.read_text())
                writer.writerow([facts["id"], facts["label"], facts["confidence"], ""])
        return f"{len(kept)} frames listed in {template}: fill in the label column, then export with --labels"
    copied = 0
    with labels_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            label = (row.get("label") or "").strip()
            if not label:
                continue
            if label not in labels:
                raise SmartbinError(f"{labels_csv}: id {row['id']}: {label!r} is not a label of the model")
            source = folder / f"{int(row['id']):08d}.jpg"
            if source.exists():
                (out / label).mkdir(exist_ok=True)
                shutil.copy2(source, out / label / source.name)
                copied += 1
    return f"{copied} labelled frames exported to {out} (one sub-folder per class)"


def export_labelled(folder: Path, out: Path, database: Path, labels: tuple[str, ...]) -> str:
    """Copy each kept frame labelled on the web page with a class of the model to ``out/<label>/NNNNNNNN.jpg`` and
    list them in ``out/labels.csv`` (id, label, who, time, guess); frames labelled not-an-item are left out.
    Returns a one-line summary; raises SmartbinError when there is nothing to export."""
    rows: list[dict[str, Any]] = []
    if database.exists():
        with Records(database, readonly=True) as records:
            rows = records.labels()
    if not rows:
        raise SmartbinError(f"no labels in {database}: label kept frames on the web page's Teach tab")
    left_out = {"not-an-item": 0, "whose frame is gone": 0, "with a label the model does not have": 0}
    exported = []
    for row in rows:
        source = folder / f"{row['item_id']:08d}.jpg"
        if row["label"] == NOT_ITEM:
            left_out["not-an-item"] += 1
        elif row["label"] not in labels:
            left_out["with a label the model does not have"] += 1
        elif not source.is_file():
            left_out["whose frame is gone"] += 1
        else:
            exported.append((source, row))
    skipped = ", ".join(f"{n} {why}" for why, n in left_out.items() if n)
    if not exported:
        raise SmartbinError(f"no labelled frame to export from {database}: {skipped}")
    out.mkdir(parents=True, exist_ok=True)
    with (out / "labels.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "label", "who", "time", "guess"])
        for source, row in exported:
            (out / row["label"]).mkdir(exist_ok=True)
            shutil.copy2(source, out / row["label"] / source.name)
            writer.writerow([row["item_id"], row["label"], row["who"], row["time"], row["guess"]])
    return (f"{len(exported)} labelled frames exported to {out} (one sub-folder per class, listed in labels.csv)"
            + (f"; left out: {skipped}" if skipped else ""))
