"""Classify a photo: an image through the loop's own preprocessing (``prepare``), a classifier of the loop's
model, and the loop's decision (bin, threshold), without moving a gate or writing a record. Used by the web
page's "classify a photo" and by ``smartbin classify``.

A photo is either a photo of the item (its centre square, as the model card's photo figures are measured) or a
camera frame (``as_frame``: the camera's ROI and crop, ``camera.crop = "item"`` by default: the item located
against the belt's colour anywhere in the frame, or in the ROI if one is configured).

The TFLite interpreter is not thread-safe, so the page has its own, built at the first upload and used under a
lock (one photo at a time); beside a running sorter it takes one thread, to leave the cores to the loop.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from edge.classifier import Classifier
from edge.config import Settings
from edge.decision import Decider, decider_for
from edge.images import decode
from edge.preprocess import prepare, still_input

TOP_K = 5
CROP_NAMES = {"photo": "centre square", "roi": "camera roi", "item": "item square"}


class PhotoClassifier:
    """Classifies uploaded photos with the model of ``settings``; ``threads`` for its interpreter (None = all)."""

    def __init__(self, settings: Settings, threads: int | None) -> None:
        self.settings = settings
        self.threads = threads
        self._classifier: Classifier | None = None
        self._decider: Decider | None = None
        self._lock = threading.Lock()

    def classify(self, data: bytes, as_frame: bool = False) -> dict[str, Any]:
        """``classify_rgb`` of an encoded image (the upload); ImageError if ``data`` is not an image,
        ImageTooLarge (before decoding) if its header claims more than ``web.max_upload_pixels``."""
        return self.classify_rgb(decode(data, "the upload", self.settings.web.max_upload_pixels), as_frame)

    def classify_rgb(self, rgb: np.ndarray, as_frame: bool = False) -> dict[str, Any]:
        """Label, confidence, top-5 and the bin the loop would choose for a uint8 RGB image, as a photo of the
        item (centre square) or ``as_frame`` (the camera's ROI and crop). ModelError if the model cannot load."""
        camera = self.settings.camera
        started = time.perf_counter()
        with self._lock:
            if self._classifier is None or self._decider is None:
                model = self.settings.model
                self._classifier = Classifier(model.path, self.threads, model.allow_unsealed)
                self._decider = decider_for(self.settings, self._classifier.labels,
                                            self._classifier.card.temperature, TOP_K)
            classifier, decider = self._classifier, self._decider
            pixels = (still_input(rgb, classifier.input_size, camera.region, camera.crop) if as_frame
                      else prepare(rgb, classifier.input_size))
            prediction = classifier.classify(pixels)
        decision = decider.decide([prediction])
        return {
            "label": decision.label,
            "confidence": decision.confidence,
            "top_k": decision.top,
            "bin": decision.bin,
            "rejected": decision.rejected,
            "reason": decision.reason,
            "expected_cost": decision.expected_cost,
            "rule": decider.mode,
            "model": classifier.path.name,
            "image": {"width": rgb.shape[1], "height": rgb.shape[0]},
            "crop": CROP_NAMES[camera.crop if as_frame else "photo"],
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }

    def close(self) -> None:
        """Release the interpreter; safe to call twice."""
        with self._lock:
            classifier, self._classifier = self._classifier, None
        if classifier is not None:
            classifier.close()
