"""The conveyor simulator: a belt that carries items past the camera in real time, and knows the truth.

Items are photos from a labelled folder (one sub-folder per class; the sub-folder's name is the truth), or, with
no folder, built-in drawn objects (no truth). They ride on a belt moving at ``speed_m_s``, spaced ``spacing_m``
apart (± ``spacing_jitter``), under slowly drifting light and with sensor noise. The camera sees ``view_m`` of belt
across the frame; its line is the frame's centre. Positions follow ``time.monotonic()``, so a slow classifier
falls behind the belt exactly as it would on a real line.

``SimItem.t_line`` is when an item's centre crossed the camera line; with the gates' delays and the mock pins'
history, ``reached_bin`` says which bin each item really fell into.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.config import Settings
from edge.errors import CameraError, ImageError
from edge.images import labelled_images, read_rgb
from edge.sources.base import Frame, FrameSource


@dataclass(frozen=True)
class SimItem:
    """One simulated item: its place on the belt (metres behind the belt's start) and what it is."""

    index: int
    belt_m: float
    truth: str | None
    picture: np.ndarray
    t_line: float  # monotonic time its centre crosses the camera line


class BeltSimulator(FrameSource):
    """A simulated belt; ``items`` is a labelled photo folder or ``None`` for drawn objects."""

    name = "belt simulator"

    def __init__(
        self,
        width: int,
        height: int,
        speed_m_s: float,
        view_m: float = 0.5,
        spacing_m: float = 0.45,
        spacing_jitter: float = 0.25,
        item_m: float = 0.18,
        items: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.size = (width, height)
        self.speed = speed_m_s
        self.view_m = view_m
        self.spacing_m = spacing_m
        self.jitter = spacing_jitter
        self.item_m = item_m
        self.items_folder = Path(items) if items is not None else None
        self.px_per_m = width / view_m
        self.side = max(8, round(item_m * self.px_per_m))
        self._rng = np.random.default_rng(seed)
        self._photos: list[tuple[Path, str]] = []
        self.items: list[SimItem] = []
        self.t0 = 0.0
        shape = (height, width, 3)
        self._noise = [np.round(self._rng.normal(0, 3, shape)).astype(np.int16) for _ in range(4)]
        texture = self._rng.normal(0, 4, (height, width * 2)).astype(np.float32)
        grey = np.clip(85 + cv2.GaussianBlur(texture, (0, 0), 3), 0, 255).astype(np.uint8)
        self._belt = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)

    def open(self) -> None:
        if self.items_folder is not None:
            if not self.items_folder.is_dir():
                raise CameraError(f"simulator items folder not found: {self.items_folder}")
            self._photos = labelled_images(self.items_folder)
            if not self._photos:
                raise CameraError(f"no labelled photos (one sub-folder per class) in {self.items_folder}")
        self.t0 = time.monotonic()

    def read(self) -> Frame:
        now = time.monotonic()
        travelled = (now - self.t0) * self.speed
        while not self.items or self.items[-1].belt_m < travelled + self.item_m:
            self._add_item()
        frame = self._render(travelled, now)
        nearest = min(self.items, key=lambda it: abs(travelled - it.belt_m - self.view_m / 2))
        centre = travelled - nearest.belt_m
        truth = nearest.truth if abs(centre - self.view_m / 2) < self.view_m / 2 else None
        return self._frame(frame, truth)

    def _add_item(self) -> None:
        gap = self.spacing_m * (1 + self.jitter * float(self._rng.uniform(-1, 1)))
        belt_m = self.items[-1].belt_m + max(gap, self.item_m * 1.2) if self.items else 0.0
        picture, truth = self._picture()
        t_line = self.t0 + (belt_m + self.view_m / 2) / self.speed
        self.items.append(SimItem(len(self.items), belt_m, truth, picture, t_line))

    def _picture(self) -> tuple[np.ndarray, str | None]:
        if not self._photos:
            return self._drawn(), None
        for _ in range(len(self._photos)):
            path, label = self._photos[int(self._rng.integers(len(self._photos)))]
            try:
                return cv2.resize(read_rgb(path), (self.side, self.side), interpolation=cv2.INTER_AREA), label
            except ImageError:
                continue
        raise CameraError(f"no readable photos in {self.items_folder}")

    def _drawn(self) -> np.ndarray:
        side = self.side
        tile = np.full((side, side, 3), 200, np.uint8)
        colour = tuple(int(c) for c in self._rng.integers(0, 160, 3))
        if self._rng.integers(2):
            cv2.circle(tile, (side // 2, side // 2), side // 3, colour, -1)
        else:
            cv2.rectangle(tile, (side // 5, side // 4), (4 * side // 5, 3 * side // 4), colour, -1)
        return tile

    def _render(self, travelled: float, now: float) -> np.ndarray:
        width, height = self.size
        shift = int(travelled * self.px_per_m) % width
        frame = np.ascontiguousarray(self._belt[:, width - shift : 2 * width - shift])
        y0 = (height - self.side) // 2
        for item in self.items:
            left = round((travelled - item.belt_m - self.item_m / 2) * self.px_per_m)
            a, b = max(0, left), min(width, left + self.side)
            if a < b:
                frame[y0 : y0 + self.side, a:b] = item.picture[:, a - left : b - left]
        gain = 1.0 + 0.1 * math.sin(2 * math.pi * (now - self.t0) / 30.0)  # light drifting over 30 s
        noise = self._noise[self._count % len(self._noise)]
        return cv2.add(cv2.convertScaleAbs(frame, alpha=gain), noise, dtype=cv2.CV_8U)

    def passed(self, settings: Settings, now: float | None = None) -> list[SimItem]:
        """Items that have passed every gate by ``now``."""
        now = time.monotonic() if now is None else now
        last = max((g.delay(settings.conveyor.belt_speed_m_s) for g in settings.gates.values()), default=0.0)
        margin = settings.conveyor.item_pass_s
        return [it for it in self.items if it.t_line + last + margin < now and it.t_line > self.t0]


def simulator_for(settings: Settings) -> BeltSimulator:
    """The belt simulator as the settings describe it."""
    sim = settings.simulator
    return BeltSimulator(
        settings.camera.width, settings.camera.height, settings.conveyor.belt_speed_m_s, sim.view_m,
        sim.spacing_m, sim.spacing_jitter, sim.item_m, sim.items, sim.seed,
    )
