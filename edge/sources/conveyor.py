"""The conveyor simulator: a belt that carries items past the camera in real time, and knows the truth.

Items are photos from a labelled folder (one sub-folder per class; the sub-folder's name is the truth), or, with
no folder, built-in drawn objects (no truth). Each item is cut out of its photo as training does it
(``edge.belt.cut_out``: what stands out from the photo's border colour, or the whole photo in a soft ellipse),
given a size drawn from ``item_m`` (its larger side, metres), a random rotation and a random place across the
whole belt width, and blended onto a textured belt (``edge.belt.belt_texture``: a dark rubber belt with
grain, streaks, seams and dirt). Items ride at ``speed_m_s``, spaced ``spacing_m`` apart (± ``spacing_jitter``;
their edges always at least ``MIN_GAP_M`` apart), under slowly drifting light, with motion blur along the
belt of speed × ``exposure_s`` and sensor noise. The camera sees ``view_m`` of belt across the frame; its
line is the frame's centre. Positions follow ``time.monotonic()``, so a slow classifier falls behind the belt
exactly as it would on a real line.

``SimItem.t_line`` is when an item's centre crossed the camera line; ``item_in`` says which item a frame
showed (the sorter's records name their first frame), and with the gates' delays, the item's extent and the
mock pins' history over its passage, ``edge.bench.simulation`` says which bin each item really fell into.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge import belt
from edge.config import Settings
from edge.errors import CameraError, ImageError
from edge.images import labelled_images, read_rgb
from edge.sources.base import Frame, FrameSource

MIN_GAP_M = 0.15  # smallest distance between two items' edges along the belt


@dataclass(frozen=True)
class SimItem:
    """One simulated item: its place on the belt (metres behind the belt's start, across it from the frame's
    top), what it is, and its pixels (item canvas and alpha, as ``edge.belt.transformed`` makes them)."""

    index: int
    belt_m: float
    top: int
    truth: str | None
    rgb: np.ndarray
    alpha: np.ndarray
    t_line: float  # monotonic time its centre crosses the camera line
    extent_m: tuple[float, float]  # metres of the item ahead of its centre and behind it (alpha >= 0.5)

    @property
    def length_px(self) -> int:
        return self.alpha.shape[1]


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
        item_m: tuple[float, float] = (0.08, 0.25),
        items: str | Path | None = None,
        seed: int = 0,
        exposure_s: float = 0.010,
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
        self.blur_px = speed_m_s * exposure_s * self.px_per_m
        self._rng = np.random.default_rng(seed)
        self._photos: list[tuple[Path, str]] = []
        self.items: list[SimItem] = []
        self._shown: dict[int, int] = {}  # frame number → index of the item nearest the camera line
        self.t0 = 0.0
        shape = (height, width, 3)
        self._noise = [np.round(self._rng.normal(0, 3, shape)).astype(np.int16) for _ in range(4)]
        self._belt = belt.belt_texture(self._rng, width * 2, height, light=False)

    def open(self) -> None:
        if self.items_folder is not None:
            if not self.items_folder.is_dir():
                raise CameraError(f"simulator items folder not found: {self.items_folder}")
            self._photos = labelled_images(self.items_folder)
            if not self._photos:
                raise CameraError(f"no labelled photos (one sub-folder per class) in {self.items_folder}")
        self.t0 = time.monotonic()

    def read(self) -> Frame:
        return self.frame_at(time.monotonic())

    def frame_at(self, now: float) -> Frame:
        """The next frame, showing the belt at monotonic time ``now`` (``read``: now; a benchmark that renders the
        scene frame by frame, faster or slower than real time: any later time)."""
        travelled = (now - self.t0) * self.speed
        while not self.items or self._front_m(self.items[-1]) < travelled + self.view_m:
            self._add_item()
        frame = self._render(travelled, now)
        nearest = min(self.items, key=lambda it: abs(travelled - it.belt_m - self.view_m / 2))
        centre = travelled - nearest.belt_m
        shown = abs(centre - self.view_m / 2) < self.view_m / 2
        if shown:
            self._shown[self._count] = nearest.index
        return self._frame(frame, nearest.truth if shown else None, shown_at=now)

    def item_in(self, frame_number: int) -> SimItem | None:
        """The item nearest the camera line in frame ``frame_number``, if one was in view."""
        index = self._shown.get(frame_number)
        return self.items[index] if index is not None else None

    def _front_m(self, item: SimItem) -> float:
        """Metres of belt travel after which the item's leading edge enters the frame."""
        return item.belt_m - item.length_px / self.px_per_m / 2

    def _add_item(self) -> None:
        picture, truth = self._picture()
        side = round(float(self._rng.uniform(*self.item_m)) * self.px_per_m)
        rgb, alpha = belt.transformed(belt.cut_out(picture), max(8, side), float(self._rng.uniform(0, 360)))
        half_m = alpha.shape[1] / self.px_per_m / 2
        if self.items:
            last = self.items[-1]
            gap = self.spacing_m * (1 + self.jitter * float(self._rng.uniform(-1, 1)))
            belt_m = last.belt_m + max(gap, last.length_px / self.px_per_m / 2 + half_m + MIN_GAP_M)
        else:
            belt_m = half_m
        height = self.size[1]
        top = int(self._rng.integers(0, height - alpha.shape[0] + 1)) if alpha.shape[0] < height else \
            (height - alpha.shape[0]) // 2
        t_line = self.t0 + (belt_m + self.view_m / 2) / self.speed
        columns = np.flatnonzero(alpha.max(axis=0) >= 0.5)  # the edge of its mask before the cut-out feathered it
        first, end = (int(columns[0]), int(columns[-1]) + 1) if len(columns) else (0, alpha.shape[1])
        extent_m = ((end - alpha.shape[1] / 2) / self.px_per_m, (alpha.shape[1] / 2 - first) / self.px_per_m)
        self.items.append(SimItem(len(self.items), belt_m, top, truth, rgb, alpha, t_line, extent_m))

    def _picture(self) -> tuple[np.ndarray, str | None]:
        if not self._photos:
            return self._drawn(), None
        for _ in range(len(self._photos)):
            path, label = self._photos[int(self._rng.integers(len(self._photos)))]
            try:
                return read_rgb(path), label
            except ImageError:
                continue
        raise CameraError(f"no readable photos in {self.items_folder}")

    def _drawn(self) -> np.ndarray:
        side = 128
        tile = np.full((side, side, 3), 230, np.uint8)
        colour = tuple(int(c) for c in self._rng.integers(120, 256, 3))
        if self._rng.integers(2):
            cv2.circle(tile, (side // 2, side // 2), side // 3, colour, -1)
        else:
            cv2.rectangle(tile, (side // 5, side // 4), (4 * side // 5, 3 * side // 4), colour, -1)
        return tile

    def _render(self, travelled: float, now: float) -> np.ndarray:
        width = self.size[0]
        shift = int(travelled * self.px_per_m) % width
        frame = np.ascontiguousarray(self._belt[:, width - shift : 2 * width - shift])
        for item in self.items:
            centre_px = (travelled - item.belt_m) * self.px_per_m
            left = round(centre_px - item.length_px / 2)
            if left < width and left + item.length_px > 0:
                belt.place(frame, item.rgb, item.alpha, left, item.top)
        frame = belt.motion_blur(frame, self.blur_px)
        gain = 1.0 + 0.1 * math.sin(2 * math.pi * (now - self.t0) / 30.0)  # light drifting over 30 s
        noise = self._noise[self._count % len(self._noise)]
        return cv2.add(cv2.convertScaleAbs(frame, alpha=gain), noise, dtype=cv2.CV_8U)

    def passed(self, settings: Settings, now: float | None = None) -> list[SimItem]:
        """Items whose tail has passed every gate by ``now`` (and a gate's settle time more)."""
        now = time.monotonic() if now is None else now
        last = max((g.delay(self.speed) + g.settle_s for g in settings.gates.values()), default=0.0)
        return [it for it in self.items if it.t_line + last + it.extent_m[1] / self.speed < now and it.t_line > self.t0]


def simulator_for(settings: Settings) -> BeltSimulator:
    """The belt simulator as the settings describe it."""
    sim = settings.simulator
    return BeltSimulator(
        settings.camera.width, settings.camera.height, settings.conveyor.belt_speed_m_s, sim.view_m,
        sim.spacing_m, sim.spacing_jitter, sim.item_m, sim.items, sim.seed, settings.camera.blur_exposure_s,
    )
