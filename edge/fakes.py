"""Fakes that ship with the package, for tests and demonstrations where the real part is not the point.

``FakeClassifier`` stands in for ``edge.classifier.Classifier`` (the ``ImageClassifier`` protocol): fixed or
scripted probabilities, a chosen latency, a gate that holds every call until it is set, or an error to raise.
``FakePicamera2`` stands in for ``picamera2.Picamera2`` (``PicameraSource(camera=...)``). ``FaultyCamera``
wraps any source and fails on cue (stalls, dead frames, a camera that vanishes and comes back), and
``logged_mock_pins`` is gpiozero's own ``MockFactory`` with every pin change also written to a file (read after
the process is killed), for the fault soak. The other fakes are the replay sources (``edge.sources``: a folder,
a video file, the belt simulator) and gpiozero's ``MockFactory`` itself.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.classifier import CardInput, Prediction
from edge.errors import CameraError
from edge.model_card import InputContract, ModelCard
from edge.preprocess import ITEM_CROP, RESIZE_METHOD
from edge.sources.base import Frame, FrameSource

Script = Callable[[int], Sequence[float]]  # call number (from 0) → probabilities in label order


class FakeClassifier(CardInput):
    """Answers ``probabilities`` (fixed, or ``script(call)``: a different answer per call) for any image of
    ``input_size``, after ``latency_s``; with ``hold``, every call first waits until the event is set; with
    ``error``, every call raises it. ``calls`` counts the calls."""

    runtime = "fake"

    def __init__(self, labels: Sequence[str], probabilities: Sequence[float] | Script | None = None,
                 latency_s: float = 0.0, input_size: tuple[int, int] = (32, 32),
                 hold: threading.Event | None = None, error: Exception | None = None) -> None:
        width, height = input_size
        self.card = ModelCard(tuple(labels), InputContract(height, width, ITEM_CROP, RESIZE_METHOD))
        self.path = Path("fake.tflite")
        self.latency_s = latency_s
        self.hold = hold
        self.error = error
        self.calls = 0
        fixed = [1.0 / len(labels)] * len(labels) if probabilities is None else probabilities
        self._script: Script = fixed if callable(fixed) else lambda _call: fixed

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        self.check_pixels(pixels)
        call, self.calls = self.calls, self.calls + 1
        if self.hold is not None:
            self.hold.wait()
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.error is not None:
            raise self.error
        answer = np.asarray(self._script(call), np.float32)
        if answer.shape != (len(self.labels),):
            raise ValueError(f"scripted answer has {answer.size} values for {len(self.labels)} labels")
        return answer

    def classify(self, pixels: np.ndarray) -> Prediction:
        return Prediction(self.probabilities(pixels), self.labels)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> FakeClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeRequest:
    """A completed request of ``FakePicamera2``: ``make_array(stream)``, ``get_metadata()``, ``release()``
    (as Picamera2's CompletedRequest: its buffers are the camera's until released)."""

    def __init__(self, camera: FakePicamera2) -> None:
        self.camera = camera
        self.released = False
        self.metadata = camera.capture_metadata()

    def make_array(self, stream: str = "main") -> np.ndarray:
        if self.released:
            raise RuntimeError("request already released")
        return self.camera.capture_array(stream)

    def get_metadata(self) -> dict[str, Any]:
        return dict(self.metadata)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.camera.open_requests -= 1


class FakePicamera2:
    """Stands in for ``picamera2.Picamera2`` where there is no Pi camera: the calls ``PicameraSource`` makes,
    with the library's memory orders ("BGR888" is R, G, B per pixel; "RGB888" is B, G, R), frames drawn from
    ``scene`` (an RGB image, resized to the configured size), requests that hold a buffer until released,
    controls that show in the metadata (automatic exposure and white balance report ``auto_metadata`` until
    ``AeEnable`` / ``AwbEnable`` are turned off), and the failures a real camera gives (``busy``: another process
    holds it; ``fail_start``: it is found but will not start)."""

    auto_metadata: ClassVar[dict[str, Any]] = {"ExposureTime": 8000, "AnalogueGain": 2.0, "ColourGains": (1.8, 1.5)}

    def __init__(self, scene: np.ndarray | None = None, busy: bool = False, fail_start: bool = False) -> None:
        if busy:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        self.scene = scene if scene is not None else np.full((480, 640, 3), (40, 120, 200), np.uint8)
        self.fail_start = fail_start
        self.config: dict[str, Any] | None = None
        self.controls: dict[str, Any] = {}
        self.started = self.closed = False
        self.open_requests = 0

    def create_video_configuration(self, main: dict[str, Any], lores: dict[str, Any] | None = None,
                                   controls: dict[str, Any] | None = None) -> dict[str, Any]:
        config = {"main": dict(main), "controls": dict(controls or {})}
        if lores is not None:
            config["lores"] = dict(lores)
        return config

    def align_configuration(self, config: dict[str, Any]) -> None:
        """Sizes the ISP can give: YUV420 widths a multiple of 64, RGB ones of 16, even heights (in place)."""
        for stream in ("main", "lores"):
            if stream in config:
                width, height = config[stream]["size"]
                step = 64 if config[stream]["format"] == "YUV420" else 16
                config[stream]["size"] = (max(step, width // step * step), max(2, height // 2 * 2))

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config
        self.controls = dict(config.get("controls", {}))

    def set_controls(self, controls: dict[str, Any]) -> None:
        self.controls.update(controls)

    def start(self) -> None:
        if self.fail_start:
            raise RuntimeError("Camera frontend has timed out!")
        self.started = True

    def capture_metadata(self) -> dict[str, Any]:
        """What the camera reports of the last frame: fixed controls as set, automatic ones as it found them."""
        fixed = self.controls
        auto = self.auto_metadata
        exposure_fixed = not fixed.get("AeEnable", True) or "ExposureTime" in fixed
        return {
            "ExposureTime": fixed["ExposureTime"] if exposure_fixed and "ExposureTime" in fixed else
            auto["ExposureTime"],
            "AnalogueGain": fixed.get("AnalogueGain", auto["AnalogueGain"]),
            "ColourGains": tuple(fixed["ColourGains"]) if "ColourGains" in fixed else auto["ColourGains"],
        }

    def capture_request(self) -> FakeRequest:
        if not self.started or self.config is None:
            raise RuntimeError("Camera must be started before capture")
        self.open_requests += 1
        return FakeRequest(self)

    def capture_array(self, stream: str = "main") -> np.ndarray:
        if not self.started or self.config is None:
            raise RuntimeError("Camera must be started before capture")
        if stream not in self.config:
            raise RuntimeError(f"stream {stream!r} is not configured")
        width, height = self.config[stream]["size"]
        rgb = cv2.resize(self.scene, (width, height), interpolation=cv2.INTER_AREA)
        fmt = self.config[stream]["format"]
        if fmt == "YUV420":  # planar I420: height rows of Y, then U and V at half size, (height * 3 / 2, width)
            return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
        return np.ascontiguousarray({"BGR888": rgb, "RGB888": rgb[:, :, ::-1]}[fmt])

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


CameraFault = Literal["stall", "dead", "gone"]


@dataclass(frozen=True)
class Fault:
    """A fault from ``start`` to ``end`` (``time.monotonic()``). The camera ones, which ``FaultyCamera`` acts
    out: ``stall`` (reads block until the end), ``dead`` (flat black frames), ``gone`` (reads fail and the camera
    cannot be opened: unplugged); the fault soak injects others from outside (kill, lock, full, model)."""

    kind: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


class FaultyCamera(FrameSource):
    """``source`` with ``faults`` injected at their times; ``on_frame`` hears of every good frame it passes on
    (the fault soak logs which simulated item each frame showed)."""

    def __init__(self, source: FrameSource, faults: Sequence[Fault],
                 on_frame: Callable[[Frame], None] = lambda _frame: None) -> None:
        super().__init__()
        self.source = source
        self.faults = sorted(faults, key=lambda f: f.start)
        self.on_frame = on_frame
        self.name = source.name
        self.live = source.live
        self.photo_items = source.photo_items

    def _now(self, kind: CameraFault) -> Fault | None:
        now = time.monotonic()
        return next((f for f in self.faults if f.kind == kind and f.start <= now < f.end), None)

    def open(self) -> None:
        if (gone := self._now("gone")) is not None:
            back = gone.end - time.monotonic()
            raise CameraError(f"no camera found: {self.name} is not connected (back in {back:.0f} s)")
        self.source.open()

    def read(self) -> Frame | None:
        if (stall := self._now("stall")) is not None:
            time.sleep(max(0.0, stall.end - time.monotonic()))
        if self._now("gone") is not None:
            raise CameraError(f"{self.name} disconnected")
        frame = self.source.read()
        if frame is None:
            return None
        if self._now("dead") is not None:
            return Frame(np.zeros_like(frame.rgb), frame.timestamp, frame.number, frame.monotonic)
        self.on_frame(frame)
        return frame

    def close(self) -> None:
        self.source.close()


def logged_mock_pins(path: Path) -> MockFactory:
    """gpiozero's ``MockFactory`` (PWM pins) whose pins also append every change to ``path`` as a line
    ``MONOTONIC_TIME PIN_NAME STATE``, with one unbuffered write each, so a SIGKILL loses none."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    class LoggedPin(MockPWMPin):
        def _change_state(self, value: float) -> bool:
            changed = bool(super()._change_state(value))
            if changed:
                os.write(fd, f"{self._last_change:.6f} {self.info.name} {float(value):g}\n".encode())
            return changed

    return MockFactory(pin_class=LoggedPin)
