"""Item detection: which frames show one physical item, and when it crossed the camera line.

Triggers say, per frame, whether an item is in the region of interest (and where, if they can tell):

- ``VisionTrigger``: difference against a learned model of the empty belt (a running average that follows slow
  light changes while the belt is empty), brightness-compensated; an item is present while a blob of at least
  ``min_area`` of the ROI reaches into a band around the camera line (the ROI's centre), so that the next item
  entering the ROI is not confused with the one leaving it, and a small or thin item on a wide belt counts. The
  blobs that reach into the band are a rough box, which is refined against the belt around it
  (``edge.preprocess.refine``: finer pixels, the whole item, beyond the ROI's sides); the refined box gives the
  item's centre and length, and the tracker attaches it to the frame for the item crop;
- ``BeamTrigger``: a break-beam / IR sensor at the camera line on a GPIO input (gpiozero, debounced);
- no trigger (``frames`` mode, for image replay): every ``votes`` frames are one item.

``ItemTracker`` turns the per-frame answers into items: an item starts when something is present and ends after
``absent_frames`` frames without it, or, where the trigger gives boxes, as soon as the box lies wholly upstream
of the item's last one (the belt carried it out of the band as the next came in, with no empty frame between:
close items at speed), so each physical item yields exactly one ``Item``. Empty-belt frames never become
items. It also measures how long the item takes to pass a point of the belt (its length / belt speed), which is
how long a gate must hold for it: the vision trigger's item length over the speed its centre crossed the ROI
at, or the time a beam stayed broken.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol

import cv2
import numpy as np
from gpiozero import DigitalInputDevice, Factory

from edge.preprocess import Box, Roi, crop_box, refine
from edge.sources import Frame

KEEP_FRAMES = 16  # frames of one item the tracker holds at most


class Presence(NamedTuple):
    """Whether an item is in the ROI; if known, its centre's x and its length along the belt as fractions of
    the ROI's width (no length while it reaches past the frame's side), and its bounding box in frame pixels."""

    present: bool
    x: float | None = None
    box: Box | None = None
    length: float | None = None


class Trigger(Protocol):
    def presence(self, frame: Frame) -> Presence:
        """Whether (and where) an item is in the ROI."""

    def close(self) -> None: ...


class VisionTrigger:
    """Foreground against the empty belt inside the ROI, on a small copy of the frame: a pixel differs when
    its colour distance (RGB, 0-441) from the empty belt's, light-compensated, exceeds ``diff_threshold``."""

    WIDTH = 96  # pixels across the ROI that detection works on

    def __init__(self, roi: Roi | None, min_area: float, diff_threshold: int, alpha: float, band: float = 0.3
                 ) -> None:
        self.roi = roi
        self.band = band
        self.min_area = min_area
        self.diff_threshold = diff_threshold
        self.alpha = alpha
        self.background: np.ndarray | None = None

    def presence(self, frame: Frame) -> Presence:
        x0, y0, x1, y1 = crop_box(frame.rgb, self.roi)
        height = max(1, round(self.WIDTH * (y1 - y0) / (x1 - x0)))
        small = cv2.resize(frame.rgb[y0:y1, x0:x1], (self.WIDTH, height), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (5, 5), 0).astype(np.float32)
        if self.background is None or self.background.shape != small.shape:
            self.background = small.copy()
            return Presence(False)
        gain = float(np.median(small)) / max(1.0, float(np.median(self.background)))
        distance = np.linalg.norm(small - self.background * gain, axis=2)  # colour distance from the empty belt
        mask = (distance > self.diff_threshold).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        if mask.mean() < self.min_area / 4:  # next to nothing anywhere in the ROI: learn the empty belt
            cv2.accumulateWeighted(small, self.background, self.alpha)
        b0 = round(self.WIDTH * (1 - self.band) / 2)
        b1 = self.WIDTH - b0
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
        in_band = np.array([np.count_nonzero(labels[:, b0:b1] == i) for i in range(1, count)], np.int64)
        in_band[stats[1:, cv2.CC_STAT_AREA] < self.min_area * mask.size] = 0  # specks: not an item
        if not in_band.any():
            return Presence(False)
        item = stats[1:][in_band >= max(1, in_band.max() // 6)]  # the blobs of this item that reach the band
        scale = (x1 - x0) / self.WIDTH
        rough = (x0 + int(item[:, cv2.CC_STAT_LEFT].min() * scale), y0 + int(item[:, cv2.CC_STAT_TOP].min() * scale),
                 x0 + int(np.ceil((item[:, cv2.CC_STAT_LEFT] + item[:, cv2.CC_STAT_WIDTH]).max() * scale)),
                 y0 + int(np.ceil((item[:, cv2.CC_STAT_TOP] + item[:, cv2.CC_STAT_HEIGHT]).max() * scale)))
        box = refine(frame.rgb, rough) or rough
        cut_off = box[0] <= 0 or box[2] >= frame.rgb.shape[1]  # reaches past the frame's side: no length
        length = None if cut_off else (box[2] - box[0]) / (x1 - x0)
        return Presence(True, ((box[0] + box[2]) / 2 - x0) / (x1 - x0), box, length)

    def close(self) -> None:
        """Nothing to release."""


class BeamTrigger:
    """A break-beam sensor: the receiver's output goes low while the beam is broken (pull-up, active low)."""

    def __init__(self, pin: int, bounce_s: float, pin_factory: Factory) -> None:
        self.device = DigitalInputDevice(pin, pull_up=True, bounce_time=bounce_s or None, pin_factory=pin_factory)

    def presence(self, frame: Frame) -> Presence:
        return Presence(bool(self.device.is_active))

    def close(self) -> None:
        self.device.close()


@dataclass
class Item:
    """The frames of one physical item, when its centre crossed the camera line (monotonic seconds), and the
    seconds it takes to pass a point of the belt, if the trigger could measure them."""

    frames: list[Frame]
    t_line: float
    scores: list[float] = field(default_factory=list)
    shed: bool = False  # dropped for a classifier backlog: recorded late, not classified
    passing_s: float | None = None

    def best(self, n: int) -> list[Frame]:
        """Up to ``n`` frames, best-centred first."""
        order = sorted(range(len(self.frames)), key=lambda i: self.scores[i])
        return [self.frames[i] for i in order[:n]]

    @property
    def first(self) -> Frame:
        return min(self.frames, key=lambda f: f.number)

    def trimmed(self, n: int) -> Item:
        """The item with only the frames sorting reads: its ``n`` best-centred and its first (which its record
        names), so that an item waiting for the classifier holds no more frames than it needs."""
        first = self.first
        order = sorted(range(len(self.frames)), key=lambda i: self.scores[i])[:n]
        keep = sorted(set(order) | {self.frames.index(first)})
        return replace(self, frames=[self.frames[i] for i in keep], scores=[self.scores[i] for i in keep])


class ItemTracker:
    """Groups frames into items with a trigger, or by count (``trigger=None``: every ``votes`` frames).

    At most ``keep`` frames of an item are held (the best-centred ones when the trigger knows positions,
    otherwise evenly thinned), so a slow item cannot fill the memory.
    """

    def __init__(self, trigger: Trigger | None, votes: int, absent_frames: int = 2, keep: int = KEEP_FRAMES) -> None:
        self.trigger = trigger
        self.votes = votes
        self.absent_frames = absent_frames
        self.keep = max(keep, votes)
        self._frames: list[Frame] = []
        self._xs: list[float | None] = []
        self._longest: float | None = None  # the longest the item looked along the belt, in ROI widths
        self._seen: tuple[float, float, int] | None = None  # first and last time present, frames present
        self._boxes: list[Box] = []  # the item's last three boxes
        self._absent = 0

    def update(self, frame: Frame) -> Item | None:
        """Feed one frame; returns an item when one has just been completed."""
        if self.trigger is None:
            self._frames.append(frame)
            self._xs.append(None)
            return self._finish() if len(self._frames) == self.votes else None
        present, x, box, length = self.trigger.presence(frame)
        if present:
            done = self._finish() if box is not None and self._next_item(box) else None
            self._absent = 0
            self._frames.append(replace(frame, item_box=box) if box is not None else frame)
            self._xs.append(x)
            if length is not None:
                self._longest = max(length, self._longest or 0.0)
            if box is not None:
                self._boxes = [*self._boxes[-2:], box]
            first, _, count = self._seen or (frame.monotonic, 0.0, 0)
            self._seen = (first, frame.monotonic, count + 1)
            self._bound()
            return done
        if self._frames:
            self._absent += 1
            if self._absent >= self.absent_frames:
                return self._finish()
        return None

    def flush(self) -> Item | None:
        """The item in hand at the end of the stream, if any (count mode: only a complete one)."""
        if self.trigger is None and len(self._frames) < self.votes:
            return None
        return self._finish() if self._frames else None

    def _next_item(self, box: Box) -> bool:
        """Whether ``box`` shows the next item rather than the one in hand: the item's tail (its upstream edge)
        moved one way over its last three boxes, and ``box`` lies wholly upstream of the last one's tail. A box
        of the same item overlaps its last one (an item moves far less than its own length between frames), and
        one odd box is not enough to set the way."""
        if len(self._boxes) < 3:
            return False
        for edge, sign in ((0, 1), (2, -1)):  # moving right: the left edge is the tail; moving left: the right
            tails = [sign * b[edge] for b in self._boxes]
            if all(later - earlier > 2 for earlier, later in itertools.pairwise(tails)):
                return sign * box[2 - edge] <= tails[-1]
        return False

    def _bound(self) -> None:
        if len(self._frames) <= self.keep:
            return
        if self._xs[-1] is not None:  # drop the worst-centred frame
            worst = max(range(len(self._xs)), key=lambda i: abs((self._xs[i] or 0.5) - 0.5))
            del self._frames[worst], self._xs[worst]
        else:  # positions unknown: thin evenly
            self._frames, self._xs = self._frames[::2], self._xs[::2]

    def _finish(self) -> Item:
        frames, xs, longest, seen = self._frames, self._xs, self._longest, self._seen
        self._frames, self._xs, self._longest, self._seen, self._boxes, self._absent = [], [], None, None, [], 0
        times = np.array([f.monotonic for f in frames])
        known = [(t, x) for t, x in zip(times, xs, strict=True) if x is not None]
        passing_s = None
        if len(known) >= 2 and np.ptp([x for _, x in known]) > 0.05:
            slope, offset = np.polyfit([t for t, _ in known], [x for _, x in known], 1)
            t_line = float((0.5 - offset) / slope) if slope > 0 else float(np.median(times))
            scores = [abs(x - 0.5) if x is not None else 1.0 for x in xs]
            if slope > 0 and longest is not None:  # its length over its speed, both in ROI widths
                passing_s = float(longest / slope)
        else:
            t_line = float((times.min() + times.max()) / 2) if self.trigger is not None else float(times.min())
            scores = list(np.abs(times - t_line))
            if seen is not None and seen[2] >= 2 and not known:  # a beam: broken from its first to its last
                first, last, count = seen  # frame, and at most a frame's interval more on either side
                passing_s = (last - first) * (count + 1) / (count - 1)
        return Item(frames, t_line, scores, passing_s=passing_s)
