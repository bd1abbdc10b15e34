"""Fakes that ship with the package, for tests and demonstrations where the real part is not the point.

``FakeClassifier`` stands in for ``edge.classifier.Classifier`` (the ``ImageClassifier`` protocol): fixed or
scripted probabilities, a chosen latency, a gate that holds every call until it is set, or an error to raise.
``FakePicamera2`` stands in for ``picamera2.Picamera2`` (``PicameraSource(camera=...)``). The other fakes are
the replay sources (``edge.sources``: a folder, a video file, the belt simulator) and gpiozero's own
``MockFactory`` for the pins.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.classifier import CardInput, Prediction
from edge.model_card import InputContract, ModelCard
from edge.preprocess import ITEM_CROP, RESIZE_METHOD

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


class FakePicamera2:
    """Stands in for ``picamera2.Picamera2`` where there is no Pi camera: the calls ``PicameraSource`` makes,
    with the library's memory orders ("BGR888" is R, G, B per pixel; "RGB888" is B, G, R), frames drawn from
    ``scene`` (an RGB image, resized to the configured size), and the failures a real camera gives
    (``busy``: another process holds it; ``fail_start``: it is found but will not start)."""

    def __init__(self, scene: np.ndarray | None = None, busy: bool = False, fail_start: bool = False) -> None:
        if busy:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        self.scene = scene if scene is not None else np.full((480, 640, 3), (40, 120, 200), np.uint8)
        self.fail_start = fail_start
        self.config: dict[str, Any] | None = None
        self.started = self.closed = False

    def create_video_configuration(self, main: dict[str, Any], controls: dict[str, float] | None = None
                                   ) -> dict[str, Any]:
        return {"main": dict(main), "controls": dict(controls or {})}

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def start(self) -> None:
        if self.fail_start:
            raise RuntimeError("Camera frontend has timed out!")
        self.started = True

    def capture_array(self, stream: str = "main") -> np.ndarray:
        if not self.started or self.config is None:
            raise RuntimeError("Camera must be started before capture")
        width, height = self.config[stream]["size"]
        rgb = cv2.resize(self.scene, (width, height), interpolation=cv2.INTER_AREA)
        order = {"BGR888": rgb, "RGB888": rgb[:, :, ::-1]}[self.config[stream]["format"]]
        return np.ascontiguousarray(order)

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True
