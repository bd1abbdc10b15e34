"""Frames and frame sources, and the stream that turns a source into frames or a clear stall error."""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edge.errors import CameraError, CameraStalled
from edge.preprocess import Box

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """One RGB frame (uint8, H×W×3), when it was captured (Unix time for records, ``time.monotonic()`` for
    timing) and its number from the source's start.

    ``truth`` is the label of what the frame shows, where the source knows it (replay of a labelled folder,
    the belt simulator); ``None`` for real cameras. ``item_box`` is where the item lies in the frame, once the
    vision trigger has found it (the item crop uses it).
    """

    rgb: np.ndarray
    timestamp: float
    number: int
    monotonic: float
    truth: str | None = None
    item_box: Box | None = None
    small: np.ndarray | None = None  # the same view, smaller, from the camera's ISP (lores): for the model


def is_dead(rgb: np.ndarray) -> bool:
    """A frame that carries no picture: empty, of the wrong shape, or one flat value (a dead sensor or cable)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0 or rgb.dtype != np.uint8:
        return True
    return int(rgb.max()) == int(rgb.min())


class FrameSource(ABC):
    """A camera or a replay. ``open`` acquires it, ``read`` returns the next frame (``None`` at the end of a
    finite source), ``close`` releases it and is safe to call twice. Sources are context managers."""

    name = "source"
    live = True  # a live camera cannot wait for the sorter; a replay can
    photo_items = False  # each frame is a photo of its own item: one item a frame, paced as the belt brings items

    def __init__(self) -> None:
        self._count = 0

    def open(self) -> None:
        """Acquire the device; raises CameraError (CameraBusy if another process holds it)."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, ``None`` when a finite source is exhausted; raises CameraError on failure."""

    def close(self) -> None:
        """Release the device."""

    def _frame(self, rgb: np.ndarray, truth: str | None = None, small: np.ndarray | None = None,
               shown_at: float | None = None) -> Frame:
        """The next frame; ``shown_at``: the monotonic time the picture shows, if not now (a simulated scene
        that took a while to render)."""
        now = time.monotonic()
        at = now if shown_at is None else shown_at
        frame = Frame(rgb=rgb, timestamp=time.time() - (now - at), number=self._count, monotonic=at, truth=truth,
                      small=small)
        self._count += 1
        return frame

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_waiting(source: FrameSource, wait_s: float, retry_s: float = 1.0) -> None:
    """Open ``source``; a live camera that is not there yet (unplugged, still held by a process that is
    going away, its driver restarting) is tried again every ``retry_s`` for up to ``wait_s`` seconds, with one
    warning, before its CameraError is raised. Replays (files, folders) are not waited for."""
    deadline = time.monotonic() + wait_s
    warned = False
    while True:
        try:
            source.open()
        except CameraError as exc:
            if not source.live or time.monotonic() + retry_s > deadline:
                raise
            if not warned:
                logger.warning("%s; trying again for up to %g s", exc, wait_s)
                warned = True
            time.sleep(retry_s)
            continue
        if warned:
            logger.warning("%s is back", source.name)
        return


_END = object()


class FrameStream:
    """Reads a source in a background thread so that a stalled camera becomes a CameraStalled error, not a hang.

    ``fps`` > 0 paces the reads (for replay and the simulator; live cameras pace themselves).
    Iterate to get frames; the iteration ends when a finite source is exhausted.
    """

    def __init__(self, source: FrameSource, stall_timeout_s: float, fps: float = 0.0) -> None:
        self.source = source
        self.stall_timeout_s = stall_timeout_s
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, name=f"frames-{source.name}", daemon=True)

    def start(self) -> FrameStream:
        """Start reading; the source must be open."""
        self._thread.start()
        return self

    def _read_loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                item: object = self.source.read()
            except Exception as exc:  # handed to the consumer, which raises it in the main thread
                item = exc
            self._put(_END if item is None else item)
            if item is None or isinstance(item, Exception):
                return
            if self.period:
                next_at = max(next_at + self.period, time.monotonic() - self.period)
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        # a method, not a generator: a thread waiting in here keeps its whole stack visible to a dump
        # (edge.service.stacks; a suspended generator's frame can cut the chain of its caller's frames)
        try:
            item = self._queue.get(timeout=self.stall_timeout_s)
        except queue.Empty:
            raise CameraStalled(
                f"camera stalled: no frame from {self.source.name} for {self.stall_timeout_s:g} s"
            ) from None
        if item is _END:
            self._queue.put(_END)  # and again for any later call: the stream has ended
            raise StopIteration
        if isinstance(item, CameraError):
            raise item
        if isinstance(item, Exception):
            raise CameraError(f"{self.source.name}: {item}") from item
        assert isinstance(item, Frame)
        return item

    def stop(self) -> None:
        """Stop the reader thread (bounded wait; a reader stuck in a driver call is left as a daemon)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
            if self._thread.is_alive():
                logger.warning("frame reader of %s did not stop within 2 s", self.source.name)
