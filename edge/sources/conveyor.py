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

It runs for as long as the service does in flat memory: a picture is dropped as its item leaves the frame, and
the small truth record of an item (and which frames showed it) ``FORGET_GRACE_S`` after the item has passed
every gate, unless a benchmark asks to keep the truth of every item for its tally.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
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
FORGET_GRACE_S = 10.0  # an item's truth is kept this long after it has passed every gate


@dataclass(frozen=True)
class SimItem:
    """One simulated item's truth: its place on the belt (metres behind the belt's start), what it is, when it
    crosses the camera line and how far it reaches. No pixels: its picture rides on the belt only until it has
    left the frame."""

    index: int
    belt_m: float
    truth: str | None
    t_line: float  # monotonic time its centre crosses the camera line
    extent_m: tuple[float, float]  # metres of the item ahead of its centre and behind it (alpha >= 0.5)
    length_m: float  # its canvas along the belt


@dataclass(frozen=True)
class _Placed:
    """An item on the belt with its pixels (item canvas and alpha, as ``edge.belt.transformed`` makes them)
    and its top row in the frame."""

    item: SimItem
    rgb: np.ndarray
    alpha: np.ndarray
    top: int


class BeltSimulator(FrameSource):
    """A simulated belt; ``items`` is a labelled photo folder or ``None`` for drawn objects.

    Memory and work per frame stay flat however long it runs: an item's picture is dropped once the item has
    left the frame, and each frame renders and searches only the items on the visible belt. ``forget_s``: an
    item's truth record (``items``, ``item_in``, ``passed``) and the frames that showed it are forgotten this
    many seconds after its tail crossed the camera line; ``None``: kept for the run (a benchmark that tallies
    where each item went; small records, no pictures).
    """

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
        forget_s: float | None = None,
    ) -> None:
        super().__init__()
        self.size = (width, height)
        self.speed = speed_m_s
        self.view_m = view_m
        self.spacing_m = spacing_m
        self.jitter = spacing_jitter
        self.item_m = item_m
        self.items_folder = Path(items) if items is not None else None
        self.forget_s = forget_s
        self.px_per_m = width / view_m
        self.blur_px = speed_m_s * exposure_s * self.px_per_m
        self._rng = np.random.default_rng(seed)
        self._photos: list[tuple[Path, str]] = []
        self._on_belt: deque[_Placed] = deque()  # in the frame or still to come, in belt order
        self._truths: deque[SimItem] = deque()  # remembered items, consecutive indexes
        self._shown: dict[int, int] = {}  # frame number → index of the item nearest the camera line
        self._added = 0
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
        while not self._on_belt or self._front_m(self._on_belt[-1].item) < travelled + self.view_m:
            self._add_item()
        frame = self._render(travelled, now)
        nearest = min(self._on_belt, key=lambda p: abs(travelled - p.item.belt_m - self.view_m / 2)).item
        centre = travelled - nearest.belt_m
        shown = abs(centre - self.view_m / 2) < self.view_m / 2
        if shown:
            self._shown[self._count] = nearest.index
        self._forget(travelled, now)
        return self._frame(frame, nearest.truth if shown else None, shown_at=now)

    @property
    def items(self) -> list[SimItem]:
        """The items remembered (every item so far where ``forget_s`` is None), in belt order."""
        return list(self._truths)

    @property
    def added(self) -> int:
        """Items put on the belt since the start."""
        return self._added

    @property
    def retained(self) -> tuple[int, int, int]:
        """What the simulator holds: items with pictures on the belt, truth records, frames → item."""
        return len(self._on_belt), len(self._truths), len(self._shown)

    def items_from(self, index: int) -> list[SimItem]:
        """The remembered items from ``index`` on."""
        first = self._truths[0].index if self._truths else self._added
        return list(itertools.islice(self._truths, max(0, index - first), None))

    def item_in(self, frame_number: int) -> SimItem | None:
        """The item nearest the camera line in frame ``frame_number``, if one was in view (and is remembered)."""
        index = self._shown.get(frame_number)
        if index is None or not self._truths or index < self._truths[0].index:
            return None
        return self._truths[index - self._truths[0].index]

    def _front_m(self, item: SimItem) -> float:
        """Metres of belt travel after which the item's leading edge enters the frame."""
        return item.belt_m - item.length_m / 2

    def _forget(self, travelled: float, now: float) -> None:
        """Drop the pictures of items that have left the frame, and the truth of items long past the line."""
        while (travelled - self._on_belt[0].item.belt_m - self._on_belt[0].item.length_m / 2) * self.px_per_m \
                >= self.size[0] + 1:
            self._on_belt.popleft()
        if self.forget_s is None:
            return
        oldest_on_belt = self._on_belt[0].item.index
        while self._truths and self._truths[0].index < oldest_on_belt and \
                self._truths[0].t_line + self._truths[0].extent_m[1] / self.speed + self.forget_s < now:
            self._truths.popleft()
        first = self._truths[0].index if self._truths else self._added
        while self._shown and next(iter(self._shown.values())) < first:
            del self._shown[next(iter(self._shown))]

    def _add_item(self) -> None:
        picture, truth = self._picture()
        side = round(float(self._rng.uniform(*self.item_m)) * self.px_per_m)
        rgb, alpha = belt.transformed(belt.cut_out(picture), max(8, side), float(self._rng.uniform(0, 360)))
        length_m = alpha.shape[1] / self.px_per_m
        if self._on_belt:
            last = self._on_belt[-1].item
            gap = self.spacing_m * (1 + self.jitter * float(self._rng.uniform(-1, 1)))
            belt_m = last.belt_m + max(gap, last.length_m / 2 + length_m / 2 + MIN_GAP_M)
        else:
            belt_m = length_m / 2
        height = self.size[1]
        top = int(self._rng.integers(0, height - alpha.shape[0] + 1)) if alpha.shape[0] < height else \
            (height - alpha.shape[0]) // 2
        t_line = self.t0 + (belt_m + self.view_m / 2) / self.speed
        columns = np.flatnonzero(alpha.max(axis=0) >= 0.5)  # the edge of its mask before the cut-out feathered it
        first, end = (int(columns[0]), int(columns[-1]) + 1) if len(columns) else (0, alpha.shape[1])
        extent_m = ((end - alpha.shape[1] / 2) / self.px_per_m, (alpha.shape[1] / 2 - first) / self.px_per_m)
        item = SimItem(self._added, belt_m, truth, t_line, extent_m, length_m)
        self._added += 1
        self._on_belt.append(_Placed(item, rgb, alpha, top))
        self._truths.append(item)
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
        for placed in self._on_belt:
            length_px = placed.alpha.shape[1]
            left = round((travelled - placed.item.belt_m) * self.px_per_m - length_px / 2)
            if left < width and left + length_px > 0:
                belt.place(frame, placed.rgb, placed.alpha, left, placed.top)
        frame = belt.motion_blur(frame, self.blur_px)
        gain = 1.0 + 0.1 * math.sin(2 * math.pi * (now - self.t0) / 30.0)  # light drifting over 30 s
        noise = self._noise[self._count % len(self._noise)]
        return cv2.add(cv2.convertScaleAbs(frame, alpha=gain), noise, dtype=cv2.CV_8U)

    def passed(self, settings: Settings, now: float | None = None) -> list[SimItem]:
        """Items whose tail has passed every gate by ``now`` (and a gate's settle time more)."""
        now = time.monotonic() if now is None else now
        last = last_gate_s(settings, self.speed)
        return [it for it in self._truths
                if it.t_line + last + it.extent_m[1] / self.speed < now and it.t_line > self.t0]


def last_gate_s(settings: Settings, speed_m_s: float) -> float:
    """Seconds from the camera line until the last gate has settled after an item (0 without gates)."""
    return max((g.delay(speed_m_s) + g.settle_s for g in settings.gates.values()), default=0.0)


def simulator_for(settings: Settings, tally: bool = False) -> BeltSimulator:
    """The belt simulator as the settings describe it. It forgets each item ``FORGET_GRACE_S`` after the item
    has passed every gate; ``tally``: it remembers every item's truth for the run (a benchmark's tally)."""
    sim, speed = settings.simulator, settings.conveyor.belt_speed_m_s
    return BeltSimulator(
        settings.camera.width, settings.camera.height, speed, sim.view_m,
        sim.spacing_m, sim.spacing_jitter, sim.item_m, sim.items, sim.seed, settings.camera.blur_exposure_s,
        forget_s=None if tally else last_gate_s(settings, speed) + FORGET_GRACE_S,
    )
