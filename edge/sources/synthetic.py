"""The synthetic conveyor: a belt with one item after another in front of the camera, made up on the fly.

Items are photos from a labelled folder (one sub-folder per class, the sub-folder's name is the truth), or,
without a folder, built-in drawn objects (no truth). Each item is shown for ``frames_per_item`` frames, drifting
along the belt, under a per-item brightness and with sensor noise. Deterministic for a given ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.errors import CameraError, ImageError
from edge.images import labelled_images, read_rgb
from edge.sources.base import Frame, FrameSource


class SyntheticConveyor(FrameSource):
    """A made-up belt; ``items`` is a labelled photo folder or ``None`` for drawn objects."""

    name = "synthetic conveyor"

    def __init__(
        self,
        width: int,
        height: int,
        items: str | Path | None = None,
        frames_per_item: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.size = (width, height)
        self.items_folder = Path(items) if items is not None else None
        self.frames_per_item = frames_per_item
        self._rng = np.random.default_rng(seed)
        self._photos: list[tuple[Path, str]] = []
        self._item: tuple[np.ndarray, str | None] | None = None
        self._gain = 1.0
        # Sensor noise (σ 3), drawn once: a few frames' worth cycled, so that a frame costs a copy, not a draw.
        shape = (height, width, 3)
        self._noise = [np.round(self._rng.normal(0, 3, shape)).astype(np.int16) for _ in range(4)]

    def open(self) -> None:
        if self.items_folder is not None:
            if not self.items_folder.is_dir():
                raise CameraError(f"synthetic items folder not found: {self.items_folder}")
            self._photos = labelled_images(self.items_folder)
            if not self._photos:
                raise CameraError(f"no labelled photos (one sub-folder per class) in {self.items_folder}")

    def read(self) -> Frame:
        step = self._count % self.frames_per_item
        if step == 0 or self._item is None:
            self._item = self._next_item()
            self._gain = float(self._rng.uniform(0.8, 1.2))
        picture, truth = self._item
        frame = self._belt(self._count)
        side = picture.shape[0]
        drift = (step - (self.frames_per_item - 1) / 2) * side * 0.03
        x0 = int(round((self.size[0] - side) / 2 + drift))
        y0 = (self.size[1] - side) // 2
        frame[y0 : y0 + side, x0 : x0 + side] = picture
        noise = self._noise[self._count % len(self._noise)]
        lit = cv2.add(cv2.convertScaleAbs(frame, alpha=self._gain), noise, dtype=cv2.CV_8U)
        return self._frame(lit, truth)

    def _next_item(self) -> tuple[np.ndarray, str | None]:
        side = int(min(self.size) * 0.7)
        if not self._photos:
            return self._drawn_item(side), None
        for _ in range(len(self._photos)):
            path, label = self._photos[int(self._rng.integers(len(self._photos)))]
            try:
                return cv2.resize(read_rgb(path), (side, side), interpolation=cv2.INTER_AREA), label
            except ImageError:
                continue
        raise CameraError(f"no readable photos in {self.items_folder}")

    def _drawn_item(self, side: int) -> np.ndarray:
        tile = np.full((side, side, 3), 70, np.uint8)
        colour = tuple(int(c) for c in self._rng.integers(30, 240, 3))
        shape = int(self._rng.integers(3))
        if shape == 0:
            cv2.circle(tile, (side // 2, side // 2), side // 3, colour, -1)
        elif shape == 1:
            cv2.rectangle(tile, (side // 5, side // 4), (4 * side // 5, 3 * side // 4), colour, -1)
        else:
            body = np.array([[side // 3, side // 4], [2 * side // 3, side // 4], [2 * side // 3, 5 * side // 6],
                             [side // 3, 5 * side // 6]], np.int32)
            cv2.fillPoly(tile, [body], colour)
            cv2.rectangle(tile, (5 * side // 12, side // 8), (7 * side // 12, side // 4), colour, -1)
        return tile

    def _belt(self, number: int) -> np.ndarray:
        width, height = self.size
        belt = np.full((height, width, 3), 70, np.uint8)
        offset = (number * 7) % 40
        for x in range(-offset, width, 40):
            belt[:, max(0, x) : max(0, x + 4)] = 58
        return belt
