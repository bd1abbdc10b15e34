"""Classify a photo: an uploaded image through the loop's own preprocessing (``prepare``), a classifier of
the loop's model, and the loop's decision (bin, threshold), without moving a gate or writing a record.

The TFLite interpreter is not thread-safe, so the page has its own, built at the first upload and used under a
lock (one photo at a time); beside a running sorter it takes one thread, to leave the cores to the loop.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import cv2
import numpy as np

from edge.classifier import Classifier
from edge.config import Settings
from edge.decision import Decider
from edge.errors import ImageError
from edge.preprocess import prepare

TOP_K = 5


class PhotoClassifier:
    """Classifies uploaded photos with the model of ``settings``; ``threads`` for its interpreter (None = all)."""

    def __init__(self, settings: Settings, threads: int | None) -> None:
        self.settings = settings
        self.threads = threads
        self.decider = Decider(settings.bin_of(), settings.sorting.threshold, settings.sorting.reject_bin, TOP_K)
        self._classifier: Classifier | None = None
        self._lock = threading.Lock()

    def classify(self, data: bytes, camera_roi: bool = False) -> dict[str, Any]:
        """Label, confidence, top-5 and the bin the loop would choose for an encoded image. ``camera_roi``: crop
        the camera's region of interest, as for a full camera frame; else the centre square, as for a photo of
        the item. Raises ImageError if ``data`` is not an image, ModelError if the model cannot be loaded."""
        rgb = decode(data)
        roi = self.settings.camera.region if camera_roi else None
        started = time.perf_counter()
        with self._lock:
            if self._classifier is None:
                self._classifier = Classifier(self.settings.model.path, threads=self.threads)
            classifier = self._classifier
            prediction = classifier.classify(prepare(rgb, classifier.input_size, roi))
        decision = self.decider.decide([prediction])
        return {
            "label": decision.label,
            "confidence": decision.confidence,
            "top_k": decision.top,
            "bin": decision.bin,
            "rejected": decision.rejected,
            "threshold": self.decider.threshold,
            "model": classifier.path.name,
            "image": {"width": rgb.shape[1], "height": rgb.shape[0]},
            "crop": "camera roi" if camera_roi else "centre square",
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }

    def close(self) -> None:
        """Release the interpreter; safe to call twice."""
        with self._lock:
            classifier, self._classifier = self._classifier, None
        if classifier is not None:
            classifier.close()


def decode(data: bytes) -> np.ndarray:
    """An encoded image (JPEG, PNG, BMP, WebP, ...) as uint8 RGB; ImageError if it is none."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ImageError("not an image: the upload could not be decoded as JPEG, PNG, BMP or WebP")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
