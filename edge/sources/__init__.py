"""Frame sources: Pi camera, OpenCV (USB index, video file, stream URL), image-folder replay, belt simulator."""

from __future__ import annotations

from pathlib import Path

from edge.config import Settings
from edge.sources.base import Frame, FrameSource, FrameStream, is_dead, open_waiting
from edge.sources.conveyor import BeltSimulator, simulator_for
from edge.sources.folder import FolderSource
from edge.sources.opencv import OpenCVSource
from edge.sources.picamera import CameraControls, PicameraSource

__all__ = ["SPEC_HELP", "BeltSimulator", "Frame", "FrameSource", "FrameStream", "is_dead", "open_source",
           "open_waiting"]

SPEC_HELP = "picamera2 | USB index (0) | video file | stream URL | image folder | synthetic"


def camera_controls(settings: Settings) -> CameraControls:
    """The Pi camera's controls from ``[camera]``."""
    camera = settings.camera
    return CameraControls(camera.exposure_us, camera.analogue_gain, camera.awb, camera.lock_after_s)


def open_source(settings: Settings, spec: str | None = None) -> FrameSource:
    """The source named by ``spec`` (default: ``camera.source``), not yet opened."""
    camera = settings.camera
    spec = camera.source if spec is None else spec
    if spec == "synthetic":
        return simulator_for(settings)
    if spec == "picamera2":
        return PicameraSource(camera.width, camera.height, camera.fps, camera_controls(settings), lores=camera.lores)
    if spec.isdigit():
        return OpenCVSource(int(spec), camera.width, camera.height)
    if Path(spec).is_dir():
        return FolderSource(spec, loop=camera.loop)
    return OpenCVSource(spec, camera.width, camera.height, loop=camera.loop)
