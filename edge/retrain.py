"""Uncertain items kept for retraining: frames of rejected or low-confidence items, in a bounded folder.

Each kept item is ``NNNNNNNN.jpg`` (the region of interest of its best-centred frame, grown to the whole item
square where the item crop reaches beyond it, so that a kept frame holds everything the model saw) and ``NNNNNNNN.json``
(record id, time, top-k, bin, outcome, truth if known), NNNNNNNN being the item's record id. When the folder
grows over ``max_mb`` the oldest items go first. ``export`` turns the operator's labels (a CSV of id,label)
into a labelled-folder layout (one sub-folder per class) that the training recipe reads.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import cv2

from edge.errors import SmartbinError
from edge.preprocess import Box, CropMode, Roi, crop_box, model_box
from edge.records import ItemRecord
from edge.sources import Frame

logger = logging.getLogger(__name__)


class FrameKeeper:
    """Saves the frames of items whose decision was uncertain (rejected, or confidence under ``keep_below``)."""

    def __init__(self, folder: Path, keep_below: float, max_mb: float, roi: Roi | None = None,
                 min_free_mb: float = 0.0, crop: CropMode = "item") -> None:
        self.folder = folder
        self.keep_below = keep_below
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.roi = roi
        self.crop = crop
        self.min_free_bytes = int(min_free_mb * 1024 * 1024)
        self.disk_low = False  # frames are not kept while the disk has less than min_free_mb free
        folder.mkdir(parents=True, exist_ok=True)
        self._sizes = {p.stem: p.stat().st_size for p in folder.glob("*.jpg")}
        self._sizes = {stem: size + _size(folder / f"{stem}.json") for stem, size in self._sizes.items()}

    def wants(self, record: ItemRecord) -> bool:
        """Rejected items, and items decided with a confidence under ``keep_below``."""
        return record.outcome == "rejected" or (record.confidence is not None and record.confidence < self.keep_below)

    def keep(self, item_id: int, frame: Frame, record: ItemRecord) -> None:
        """Save the item's frame and facts if it is uncertain; never raises (a full disk only logs)."""
        if not self.wants(record) or not self._room():
            return
        stem = f"{item_id:08d}"
        x0, y0, x1, y1 = kept_box(frame, self.roi, self.crop)
        try:
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame.rgb[y0:y1, x0:x1], cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                raise OSError("JPEG encoding failed")
            facts = {"id": item_id, "time": record.time, "label": record.label, "confidence": record.confidence,
                     "top_k": record.top_k, "bin": record.bin, "outcome": record.outcome, "truth": record.truth}
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

    def _trim(self) -> None:
        total = sum(self._sizes.values())
        for stem in sorted(self._sizes):
            if total <= self.max_bytes:
                break
            for suffix in (".jpg", ".json"):
                (self.folder / f"{stem}{suffix}").unlink(missing_ok=True)
            total -= self._sizes.pop(stem)


def kept_box(frame: Frame, roi: Roi | None, crop: CropMode) -> Box:
    """The part of a frame that is kept: the ROI, grown to hold the item square the model's crop took."""
    x0, y0, x1, y1 = crop_box(frame.rgb, roi)
    if crop == "item":
        ix0, iy0, ix1, iy1 = model_box(frame.rgb, roi, crop, frame.item_box)
        height, width = frame.rgb.shape[:2]
        x0, y0 = max(0, min(x0, ix0)), max(0, min(y0, iy0))
        x1, y1 = min(width, max(x1, ix1)), min(height, max(y1, iy1))
    return x0, y0, x1, y1


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
