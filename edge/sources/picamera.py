"""The Raspberry Pi camera through Picamera2 (installed from apt, seen through --system-site-packages)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import cv2

from edge.errors import CameraBusy, CameraError
from edge.pins import board_model
from edge.sources.base import Frame, FrameSource

logger = logging.getLogger(__name__)


def is_pi5() -> bool:
    """Whether this board is a Raspberry Pi 5 (its ISP gives RGB on the lores stream)."""
    return "Raspberry Pi 5" in (board_model() or "")


Awb = Literal["auto", "locked"] | tuple[float, float]


@dataclass(frozen=True)
class CameraControls:
    """Exposure and white balance for a moving belt (``[camera]``): fixed values, or automatic ones fixed at
    what they found after ``lock_after_s`` on the empty belt (0: never)."""

    exposure_us: int = 0  # 0 = automatic
    analogue_gain: float = 0.0  # 0 = automatic
    awb: Awb = "locked"
    lock_after_s: float = 3.0

    def at_start(self, fps: float) -> dict[str, Any]:
        """The Picamera2 controls to configure with."""
        controls: dict[str, Any] = {"FrameRate": fps} if fps > 0 else {}
        if self.exposure_us:  # a fixed exposure: motion blur = belt speed × exposure
            controls["ExposureTime"] = self.exposure_us
        if self.analogue_gain:
            controls["AnalogueGain"] = self.analogue_gain
        if self.exposure_us and self.analogue_gain:
            controls["AeEnable"] = False
        if isinstance(self.awb, tuple):
            controls.update(AwbEnable=False, ColourGains=tuple(self.awb))
        return controls

    def to_lock(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The controls that fix what is still automatic, at the values of ``metadata``."""
        controls: dict[str, Any] = {}
        if not (self.exposure_us and self.analogue_gain):
            controls.update(AeEnable=False, ExposureTime=int(metadata["ExposureTime"]),
                            AnalogueGain=float(metadata["AnalogueGain"]))
        if self.awb == "locked":
            controls.update(AwbEnable=False, ColourGains=tuple(float(g) for g in metadata["ColourGains"]))
        return controls

    @property
    def locks(self) -> bool:
        return self.lock_after_s > 0 and (not (self.exposure_us and self.analogue_gain) or self.awb == "locked")


class PicameraSource(FrameSource):
    """A Pi camera module. Picamera2's "BGR888" format is R, G, B in memory (its "RGB888" is B, G, R), so
    frames arrive as RGB without a copy. Each frame comes from a request that is released as soon as its array
    is made, so libcamera never runs out of buffers; ``locked`` holds the controls fixed after
    ``controls.lock_after_s``."""

    name = "picamera2"

    def __init__(self, width: int, height: int, fps: float, controls: CameraControls | None = None,
                 camera: Callable[[], Any] | None = None, lores: tuple[int, int] | None = None,
                 lores_rgb: bool | None = None) -> None:
        super().__init__()
        self.size = (width, height)
        self.lores = lores
        # a Pi 5's ISP gives an RGB lores stream; earlier Pis only YUV420
        self.lores_format = "BGR888" if (is_pi5() if lores_rgb is None else lores_rgb) else "YUV420"
        self.fps = fps
        self.controls = controls or CameraControls()
        self._make_camera = camera  # None: picamera2.Picamera2; tests: edge.fakes.FakePicamera2
        self._camera: Any = None
        self._lock_at: float | None = None
        self.locked: dict[str, Any] | None = None

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
            streams: dict[str, Any] = {"main": {"size": self.size, "format": "BGR888"}}
            if self.lores is not None:
                streams["lores"] = {"size": self.lores, "format": self.lores_format}
            config = camera.create_video_configuration(**streams, controls=self.controls.at_start(self.fps))
            if self.lores is not None:
                camera.align_configuration(config)
            camera.configure(config)
            camera.start()
        except Exception as exc:
            camera.close()
            raise CameraError(f"Pi camera failed to start: {exc}") from None
        self._camera = camera
        self._lock_at = time.monotonic() + self.controls.lock_after_s if self.controls.locks else None

    def read(self) -> Frame:
        if self._camera is None:
            raise CameraError("Pi camera is not open")
        request = self._camera.capture_request()
        small = None
        try:
            rgb = request.make_array("main")[:, :, :3]
            if self.lores is not None:
                lores = request.make_array("lores")
                small = cv2.cvtColor(lores, cv2.COLOR_YUV2RGB_I420) if self.lores_format == "YUV420" else \
                    lores[:, :, :3]
            if self._lock_at is not None and time.monotonic() >= self._lock_at:
                self._lock(request.get_metadata())
        finally:
            request.release()
        return self._frame(rgb, small=small)

    def metadata(self) -> dict[str, Any]:
        """What the camera reports now (exposure, gain, colour gains)."""
        if self._camera is None:
            raise CameraError("Pi camera is not open")
        return dict(self._camera.capture_metadata())

    def _lock(self, metadata: dict[str, Any]) -> None:
        self._lock_at = None
        controls = self.controls.to_lock(metadata)
        self._camera.set_controls(controls)
        self.locked = controls
        logger.info("camera locked after %g s: %s", self.controls.lock_after_s,
                    ", ".join(f"{k} {v}" for k, v in controls.items() if not k.endswith("Enable")))

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
