"""A model's integrity: its card names the ``.tflite`` it belongs to and what that model answers to a probe.

The converter seals each card (``convert.card.write_sealed``; ``python -m convert.seal`` for one made without)
with an ``integrity`` section::

    "integrity": {"tflite_bytes": 25961512, "tflite_sha256": "…", "labels_sha256": "…",
                  "probe": {"pattern": "smartbin.probe/2", "tolerance": 0.1, "alike": [],
                            "images": [{"seed": 37, "output": {"battery": 0.01, …}}, …]}}

At start the edge checks the size and sha256 of the file and the digest of the label order (``check_file``),
before the runtime reads the file: a corrupt or truncated model, a model beside another model's card, or a card
with two labels swapped is one line, before anything is sorted. A card without the section is refused unless
``[model] allow_unsealed`` says otherwise. ``check_probe`` (``smartbin check`` and every start) runs the probe
images (fixed synthetic patterns, ``probe_pixels``) and compares the output, label by label, with the card's:
a runtime that computes something else is caught, and so is a card whose labels were swapped and its
``labels_sha256`` recomputed: sealing picks the images (``probe_entry``, from ``PROBE_CANDIDATES`` seeds) so
that every two labels differ by more than tolerance + ``PROBE_MARGIN`` on one of them (pairs no candidate
separates are listed as ``alike``). A card sealed with the one-image ``smartbin.probe/1`` (seed 0) is still
checked, with a note to reseal it.
"""

from __future__ import annotations

import hashlib
import itertools
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

PROBE_PATTERN = "smartbin.probe/2"
PROBE_V1 = "smartbin.probe/1"  # one image (seed 0), no check that it tells labels apart
PROBE_TOLERANCE = 0.1  # largest difference of any class probability: int8 kernels differ by a few steps
PROBE_MARGIN = 0.02  # a pair counts as told apart when it differs by more than tolerance + margin
PROBE_CANDIDATES = 240  # seeds tried when sealing
PROBE_MAX_IMAGES = 12  # most images kept in the card (each is one invoke at every start)
GRIDS = (1, 2, 3, 4, 6, 8)  # cells per side of the colour grids, in turn
SEAL_HINT = "python -m convert.seal"


def labels_digest(labels: tuple[str, ...] | list[str]) -> str:
    """sha256 of the label order (what a swapped pair of labels changes)."""
    return hashlib.sha256(json.dumps(list(labels)).encode("utf-8")).hexdigest()


def stripes(height: int, width: int) -> np.ndarray:
    """Stripes and gradients in integer arithmetic (int64): probe seed 0."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    channels = [(x * 7 + y * 3) % 256, (x * y // 16 + 2 * y) % 256, ((x // 8 + y // 8) % 2) * 160 + x % 96]
    return np.stack(channels, axis=-1)


def probe_pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Probe image ``seed``: 0 is the stripes; n > 0 a grid of colours from an integer LCG (``GRIDS`` cells a
    side in turn), every other grid size with the stripes added. No RNG library, no file: the same everywhere."""
    if seed == 0:
        return stripes(height, width).astype(np.uint8)
    n = seed - 1
    cells = GRIDS[n % len(GRIDS)]
    state, values = (n * 2654435761 + 12345) & 0x7FFFFFFF, []
    for _ in range(cells * cells * 3):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        values.append((state >> 16) & 0xFF)
    grid = np.array(values, dtype=np.int64).reshape(cells, cells, 3)
    image = grid[np.arange(height) * cells // height][:, np.arange(width) * cells // width]
    if (n // len(GRIDS)) % 2:
        image = (image + stripes(height, width) // 2) % 256
    return image.astype(np.uint8)


def probe_output(classifier: ImageClassifier, seed: int = 0) -> dict[str, float]:
    """The classifier's probability of each label on probe image ``seed``."""
    height, width = classifier.card.input.height, classifier.card.input.width
    probabilities = classifier.probabilities(probe_pixels(height, width, seed))
    return {label: round(float(p), 5) for label, p in zip(classifier.labels, probabilities, strict=True)}


def file_integrity(model: Path, labels: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The file half of a card's ``integrity`` section: size, sha256, digest of the label order."""
    return {"tflite_bytes": model.stat().st_size, "tflite_sha256": sha256_of(model),
            "labels_sha256": labels_digest(labels)}


def probe_entry(classifier: ImageClassifier, candidates: int = PROBE_CANDIDATES) -> dict[str, Any]:
    """The probe half: the fewest of ``candidates`` probe images (greedily) on which every two labels differ by
    more than tolerance + margin, their outputs, and the pairs none of them separates (``alike``)."""
    outputs = {seed: probe_output(classifier, seed) for seed in range(candidates)}
    apart = PROBE_TOLERANCE + PROBE_MARGIN
    pairs = set(itertools.combinations(classifier.labels, 2))
    told = {seed: {(a, b) for a, b in pairs if abs(out[a] - out[b]) > apart} for seed, out in outputs.items()}
    open_pairs, chosen = set().union(*told.values()), [0]
    open_pairs -= told[0]
    while open_pairs and len(chosen) < PROBE_MAX_IMAGES:
        best = max(told, key=lambda seed: (len(told[seed] & open_pairs), -seed))
        chosen.append(best)
        open_pairs -= told[best]
    covered = set().union(*(told[seed] for seed in chosen))
    return {"pattern": PROBE_PATTERN, "tolerance": PROBE_TOLERANCE,
            "alike": sorted([a, b] for a, b in pairs - covered),
            "images": [{"seed": seed, "output": outputs[seed]} for seed in chosen]}


def sealed(card: ModelCard) -> bool:
    """Whether the card has an ``integrity`` section (a model without one cannot be checked)."""
    return isinstance(card.extra.get("integrity"), dict)


def check_file(model: Path, card: ModelCard, allow_unsealed: bool = False) -> str:
    """Raise ModelCardError unless the file is the one the card was sealed for, with the card's label order, or
    (``allow_unsealed``: with a warning) the card has no ``integrity`` section. Returns the file's sha256."""
    integrity = card.extra.get("integrity")
    if not sealed(card):
        if not allow_unsealed:
            raise ModelCardError(f"{model}: its card has no integrity section, so the file cannot be checked: seal "
                                 f"it with `{SEAL_HINT} {model}` (a model and card you know to be right), or set "
                                 "[model] allow_unsealed = true")
        logger.warning("%s: its card has no integrity section: the file is not checked ([model] allow_unsealed; "
                       "`%s %s` seals it)", model.name, SEAL_HINT, model)
        return sha256_of(model)
    assert isinstance(integrity, dict)
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
    """Run the probe images; raise ModelError if an output differs from the card's. Returns a one-line summary."""
    integrity = classifier.card.extra.get("integrity")
    probe = integrity.get("probe") if isinstance(integrity, dict) else None
    if not isinstance(probe, dict):
        return "no reference output in the card: probe skipped"
    images, tolerance, alike = read_probe(probe, classifier.path.name)
    largest = max(_compare(classifier, seed, reference, tolerance) for seed, reference in images)
    summary = f"probe output matches the card on {len(images)} image(s) (largest difference {largest:.3f})"
    if probe.get("pattern") == PROBE_V1:
        return summary + f"; a one-image probe ({PROBE_V1}) may not tell two labels apart: `{SEAL_HINT}` reseals"
    pairs = len(classifier.labels) * (len(classifier.labels) - 1) // 2
    if not alike:
        return summary + f"; it tells all {pairs} label pairs apart"
    more = f" and {len(alike) - 1} more" if len(alike) > 1 else ""
    return summary + f"; it tells {pairs - len(alike)} of {pairs} label pairs apart ({alike[0]}{more} alike)"


def read_probe(probe: dict[str, Any], name: str) -> tuple[list[tuple[int, dict[str, Any]]], float, list[str]]:
    """The card's probe as (seed, reference output) pairs, its tolerance and its alike pairs ('a/b'); a
    ``smartbin.probe/1`` probe is seed 0's output. Raises ModelCardError if it is malformed."""
    entries = [{"seed": 0, "output": probe.get("output")}] if probe.get("pattern") == PROBE_V1 else probe.get("images")
    tolerance, alike = probe.get("tolerance", PROBE_TOLERANCE), probe.get("alike", [])
    images: list[tuple[int, dict[str, Any]]] = []
    for entry in entries if isinstance(entries, list) else []:
        seed, output = (entry.get("seed"), entry.get("output")) if isinstance(entry, dict) else (None, None)
        if type(seed) is int and seed >= 0 and isinstance(output, dict):
            images.append((seed, output))
    pairs = [pair for pair in alike if isinstance(pair, list) and all(isinstance(a, str) for a in pair)] \
        if isinstance(alike, list) else None
    if (not images or len(images) != len(entries or []) or pairs is None or len(pairs) != len(alike)
            or type(tolerance) not in (int, float) or not 0 <= tolerance <= 1):
        raise ModelCardError(f"{name}: the card's probe is malformed (pattern {probe.get('pattern')!r}): "
                             f"`{SEAL_HINT}` reseals it")
    return images, float(tolerance), ["/".join(pair) for pair in pairs]


def _compare(classifier: ImageClassifier, seed: int, reference: dict[str, Any], tolerance: float) -> float:
    """Probe image ``seed`` against the card's output for it; the largest difference. Raises ModelError."""
    name = classifier.path.name
    try:
        output = probe_output(classifier, seed)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"{name}: the probe invoke failed: {exc}") from None
    if set(reference) != set(output) or not all(type(v) in (int, float) for v in reference.values()):
        raise ModelCardError(f"{name}: the card's probe output names other labels or is not numbers")
    worst = max(output, key=lambda label: abs(output[label] - reference[label]))
    difference = abs(output[worst] - reference[worst])
    if not difference <= tolerance:  # NaN too
        raise ModelError(f"{name}: probe output differs from the card's (image {seed}, {worst}: "
                         f"{output[worst]:.3f} vs {reference[worst]:.3f}): the model or runtime computes "
                         "something else, or the card's labels were swapped")
    return difference
