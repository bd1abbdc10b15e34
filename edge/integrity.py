"""A model's integrity: its card names the ``.tflite`` it belongs to and what that model answers to a probe.

The converter seals each card (``convert.card.write_sealed``) with an ``integrity`` section::

    "integrity": {"tflite_bytes": 25961512, "tflite_sha256": "…", "labels_sha256": "…",
                  "probe": {"pattern": "smartbin.probe/1", "tolerance": 0.1, "output": {"battery": 0.01, …}}}

At start the edge checks the size and sha256 of the file and the digest of the label order (``check_file``):
a corrupt or truncated model, a model beside another model's card, or a card with two labels swapped is one
line, before anything is sorted. ``check_probe`` (``smartbin check`` and every start) runs one invoke on a
fixed synthetic image and compares the output, label by label, with the card's: a runtime that computes
something else is caught too. A card without the section (made before it existed) is accepted with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import ModelCardError, ModelError
from edge.model_card import ModelCard, sha256_of

if TYPE_CHECKING:
    from edge.classifier import ImageClassifier

logger = logging.getLogger(__name__)

PROBE_PATTERN = "smartbin.probe/1"
PROBE_TOLERANCE = 0.1  # largest difference of any class probability: int8 kernels differ by a few steps


def labels_digest(labels: tuple[str, ...] | list[str]) -> str:
    """sha256 of the label order (what a swapped pair of labels changes)."""
    return hashlib.sha256(json.dumps(list(labels)).encode("utf-8")).hexdigest()


def probe_pixels(height: int, width: int) -> np.ndarray:
    """The probe image: a fixed pattern of stripes and gradients in integer arithmetic (no RNG, no file)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    channels = [(x * 7 + y * 3) % 256, (x * y // 16 + 2 * y) % 256, ((x // 8 + y // 8) % 2) * 160 + x % 96]
    return np.stack(channels, axis=-1).astype(np.uint8)


def probe_output(classifier: ImageClassifier) -> dict[str, float]:
    """The classifier's probability of each label on the probe image."""
    height, width = classifier.card.input.height, classifier.card.input.width
    probabilities = classifier.probabilities(probe_pixels(height, width))
    return {label: round(float(p), 5) for label, p in zip(classifier.labels, probabilities, strict=True)}


def file_integrity(model: Path, labels: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The file half of a card's ``integrity`` section: size, sha256, digest of the label order."""
    return {"tflite_bytes": model.stat().st_size, "tflite_sha256": sha256_of(model),
            "labels_sha256": labels_digest(labels)}


def probe_entry(classifier: ImageClassifier) -> dict[str, Any]:
    """The probe half: the classifier's output on the probe image, with the tolerance ``check_probe`` allows."""
    return {"pattern": PROBE_PATTERN, "tolerance": PROBE_TOLERANCE, "output": probe_output(classifier)}


def check_file(model: Path, card: ModelCard) -> str:
    """Raise ModelCardError unless the file is the one the card was sealed for, with the card's label order.
    Returns the file's sha256."""
    integrity = card.extra.get("integrity")
    if not isinstance(integrity, dict):
        logger.warning("%s: its card has no integrity section: the file is not checked (reconvert to seal it)",
                       model.name)
        return sha256_of(model)
    size = model.stat().st_size
    if size != integrity.get("tflite_bytes"):
        raise ModelCardError(f"{model}: {size} bytes, its card says {integrity.get('tflite_bytes')}: "
                             "truncated, corrupt or not the card's model")
    digest = sha256_of(model)
    if digest != integrity.get("tflite_sha256"):
        raise ModelCardError(f"{model}: sha256 differs from its card's: corrupt or not the card's model")
    if labels_digest(card.labels) != integrity.get("labels_sha256"):
        raise ModelCardError(f"{model}: the card's labels are not in the order the model was sealed with "
                             "(edited or swapped labels)")
    return digest


def check_probe(classifier: ImageClassifier) -> str:
    """Run the probe; raise ModelError if the output differs from the card's. Returns a one-line summary."""
    integrity = classifier.card.extra.get("integrity")
    if not isinstance(integrity, dict) or not isinstance(integrity.get("probe"), dict):
        return "no reference output in the card: probe skipped"
    reference = integrity["probe"].get("output", {})
    tolerance = float(integrity["probe"].get("tolerance", PROBE_TOLERANCE))
    try:
        output = probe_output(classifier)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"{classifier.path.name}: the probe invoke failed: {exc}") from None
    if set(reference) != set(output):
        raise ModelCardError(f"{classifier.path.name}: the card's probe output names other labels")
    worst = max(output, key=lambda label: abs(output[label] - reference[label]))
    difference = abs(output[worst] - reference[worst])
    if difference > tolerance:
        raise ModelError(f"{classifier.path.name}: probe output differs from the card's ({worst}: "
                         f"{output[worst]:.3f} vs {reference[worst]:.3f}): the model or runtime computes "
                         "something else")
    return f"probe output matches the card (largest difference {difference:.3f})"
