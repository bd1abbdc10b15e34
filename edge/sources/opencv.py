"""OpenCV VideoCapture: a USB camera index, a video file, or a stream URL."""

from __future__ import annotations

import cv2

from edge.errors import CameraError
from edge.sources.base import Frame, FrameSource


class OpenCVSource(FrameSource):
    """A ``cv2.VideoCapture``. For files the end of the video ends the source (or starts over with ``loop``);
    for cameras and streams a failed read is a CameraError."""

    def __init__(self, target: int | str, width: int, height: int, loop: bool = False) -> None:
        super().__init__()
        self.target = target
        self.name = f"camera {target}" if isinstance(target, int) else str(target)
        self.size = (width, height)
        self.loop = loop
        self.live = not self.is_file
        self._capture: cv2.VideoCapture | None = None

    @property
    def is_file(self) -> bool:
        return isinstance(self.target, str) and "://" not in self.target

    def open(self) -> None:
        capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"cannot open {self.name}")
        if not self.is_file:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        self._capture = capture

    def read(self) -> Frame | None:
        if self._capture is None:
            raise CameraError(f"{self.name} is not open")
        ok, bgr = self._capture.read()
        if not ok and self.is_file and self.loop:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._capture.read()
        if not ok:
            if self.is_file:
                return None
            raise CameraError(f"{self.name} delivered no frame")
        return self._frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()
