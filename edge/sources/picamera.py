"""The Raspberry Pi camera through Picamera2 (installed from apt, seen through --system-site-packages)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge.errors import CameraBusy, CameraError
from edge.sources.base import Frame, FrameSource


class PicameraSource(FrameSource):
    """A Pi camera module. Picamera2's "BGR888" format is R, G, B in memory (its "RGB888" is B, G, R), so
    frames arrive as RGB without a copy."""

    name = "picamera2"

    def __init__(self, width: int, height: int, fps: float, exposure_us: int = 0,
                 camera: Callable[[], Any] | None = None) -> None:
        super().__init__()
        self.size = (width, height)
        self.fps = fps
        self.exposure_us = exposure_us
        self._make_camera = camera  # None: picamera2.Picamera2; tests: edge.fakes.FakePicamera2
        self._camera: Any = None

    def open(self) -> None:
        make = self._make_camera or _picamera2()
        try:
            camera = make()
        except (RuntimeError, IndexError) as exc:
            text = str(exc)
            if "busy" in text.lower() or "acquire" in text.lower():
                raise CameraBusy(
                    "camera busy: another process holds it (the smartbin service? `sudo systemctl stop smartbin`)"
                ) from None
            raise CameraError(f"no Pi camera found: {text or type(exc).__name__}") from None
        try:
            controls: dict[str, float] = {"FrameRate": self.fps} if self.fps > 0 else {}
            if self.exposure_us:  # a fixed exposure: motion blur = belt speed × exposure
                controls["ExposureTime"] = self.exposure_us
            camera.configure(
                camera.create_video_configuration(main={"size": self.size, "format": "BGR888"}, controls=controls)
            )
            camera.start()
        except Exception as exc:
            camera.close()
            raise CameraError(f"Pi camera failed to start: {exc}") from None
        self._camera = camera

    def read(self) -> Frame:
        if self._camera is None:
            raise CameraError("Pi camera is not open")
        return self._frame(self._camera.capture_array("main")[:, :, :3])

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.stop()
            finally:
                camera.close()


def _picamera2() -> Callable[[], Any]:
    try:
        from picamera2 import Picamera2
    except ImportError:
        raise CameraError(
            "picamera2 is not importable: on Raspberry Pi OS run `sudo apt install python3-picamera2` "
            "and make the venv with --system-site-packages (setup.sh does)"
        ) from None
    return Picamera2
