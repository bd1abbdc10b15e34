"""``smartbin camera calibrate``: on the empty belt, let the Pi camera's automatic exposure, gain and white
balance settle, then print what they found as ``[camera]`` lines to paste, the motion blur that exposure gives
at the configured belt speed (and a shorter exposure with a higher gain where it is over budget), and save a
frame to look at."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2

from edge.config import Settings
from edge.errors import CameraError, ConfigError
from edge.sources.picamera import CameraControls, PicameraSource


def calibrate(settings: Settings, seconds: float, out: Path, camera: Callable[[], Any] | None = None) -> list[str]:
    """Run the camera automatic for ``seconds``; the lines to print. ``camera``: instead of Picamera2 (tests)."""
    if settings.camera.source != "picamera2":
        raise ConfigError(f"camera calibrate: camera.source is {settings.camera.source!r}; it needs picamera2")
    cam = settings.camera
    source = PicameraSource(cam.width, cam.height, cam.fps, CameraControls(awb="auto", lock_after_s=0), camera)
    with source:
        deadline = time.monotonic() + seconds
        frame = source.read()
        while time.monotonic() < deadline:
            frame = source.read()
        metadata = source.metadata()
    if not cv2.imwrite(str(out), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)):
        raise CameraError(f"cannot write {out}")
    exposure, gain = int(metadata["ExposureTime"]), float(metadata["AnalogueGain"])
    red, blue = (float(g) for g in metadata["ColourGains"])
    speed = settings.conveyor.belt_speed_m_s
    px_per_m = cam.width / cam.view_m
    blur = speed * exposure / 1e6 * px_per_m
    lines = [f"# measured on the empty belt over {seconds:g} s ({cam.width}x{cam.height}); frame saved to {out}",
             "[camera]", f"exposure_us = {exposure}", f"analogue_gain = {gain:.2f}", f"awb = [{red:.3f}, {blue:.3f}]",
             f"# motion blur at {speed:g} m/s: {blur:.1f} px ({px_per_m:.0f} px/m; camera.max_blur_px "
             f"{cam.max_blur_px:g})"]
    if blur > cam.max_blur_px:
        shorter = int(cam.max_blur_px / (speed * px_per_m) * 1e6)
        lines.append(f"# over budget: exposure_us = {shorter} with analogue_gain = {gain * exposure / shorter:.2f} "
                     "keeps the brightness (more light on the belt is the better cure)")
    return lines
