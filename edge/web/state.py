"""The sorter's live state for the web page: a loop observer that keeps the latest item with the frame it was
classified on, and the camera's frame rate. Per frame it only notes the time; the latest item's frame is
scaled, annotated with the region of interest and encoded as JPEG when the page asks, once per item."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge.frame_rate import FrameRate
from edge.preprocess import Box, CropMode, Roi, model_box
from edge.records import ItemRecord
from edge.sources import Frame

if TYPE_CHECKING:
    from edge.actuate import GateFault

JPEG_WIDTH = 640  # the live frame is scaled down to this width (never up)
ROI_COLOUR = (255, 160, 0)  # RGB: amber


@dataclass(frozen=True)
class LiveItem:
    """The latest item of this run: its record id, its record, and its best-centred frame."""

    item_id: int
    record: ItemRecord
    frame: Frame | None


class LiveState:
    """Loop observer (a ``FrameObserver`` and ``GateFaultObserver``) for the web page. ``source`` names the camera
    on the health page; ``gate_fault`` is the gate failure of this run, if any."""

    def __init__(self, roi: Roi | None, source: str, clock: Callable[[], float] = time.monotonic,
                 crop: CropMode = "roi") -> None:
        self.roi = roi
        self.crop = crop
        self.source = source
        self.started = time.time()
        self.frames = 0
        self._rate = FrameRate(clock=clock)
        self._lock = threading.Lock()
        self._latest: LiveItem | None = None
        self._pending: tuple[int, Frame] | None = None
        self._jpeg: tuple[int, bytes] | None = None
        self.gate_fault: dict[str, Any] | None = None

    def on_frame(self, frame: Frame) -> None:
        with self._lock:
            self.frames += 1
        self._rate.tick()

    def on_item_frame(self, item_id: int, frame: Frame) -> None:
        self._pending = (item_id, frame)

    def on_item(self, item_id: int, record: ItemRecord) -> None:
        pending, self._pending = self._pending, None
        frame = pending[1] if pending is not None and pending[0] == item_id else None
        with self._lock:
            self._latest = LiveItem(item_id, record, frame)

    def on_gate_fault(self, fault: GateFault, items: list[int]) -> None:
        self.gate_fault = {"gate": fault.gate, "error": fault.error, "time": fault.time, "items": items}

    @property
    def latest(self) -> LiveItem | None:
        """The latest item of this run, if any."""
        with self._lock:
            return self._latest

    def fps(self) -> float:
        """Frames per second over the last few seconds (0 when the camera is silent)."""
        return self._rate.fps()

    def jpeg(self, item_id: int) -> bytes | None:
        """The annotated JPEG of the latest item if it is ``item_id`` and its frame is held, else None."""
        with self._lock:
            latest, cached = self._latest, self._jpeg
        if latest is None or latest.item_id != item_id or latest.frame is None:
            return None
        if cached is not None and cached[0] == item_id:
            return cached[1]
        frame = latest.frame
        data = annotated_jpeg(frame.rgb, model_box(frame.rgb, self.roi, self.crop, frame.item_box))
        with self._lock:
            self._jpeg = (item_id, data)
        return data


def annotated_jpeg(rgb: np.ndarray, box: Box, width: int = JPEG_WIDTH) -> bytes:
    """The frame scaled down to ``width`` with ``box`` (what the model saw: ``model_box``) drawn, as JPEG.
    The frame itself is not changed."""
    scale = min(1.0, width / rgb.shape[1])
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)  # a new array: drawing never touches the frame
    x0, y0, x1, y1 = (round(v * scale) for v in box)
    thickness = max(1, round(bgr.shape[1] / 200))
    cv2.rectangle(bgr, (x0, y0), (x1 - 1, y1 - 1), ROI_COLOUR[::-1], thickness)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()
