"""The model card: the JSON file beside a ``NAME.tflite`` (``NAME.json``) that says how to use the model.

Written by the converter (``python -m convert``), read here without TensorFlow. The fields the edge relies on:

    {
      "schema": "smartbin.model-card/1",
      "labels": ["battery", "biological", ...],          # in output-index order
      "input": {"height": 224, "width": 224, "channels": 3, "dtype": "uint8", "color": "RGB",
                "crop": "center-square", "resize": "cv2.INTER_AREA",
                "preprocessing": "caffe, inside the model"},
      "calibration": {"temperature": 0.65, ...},         # optional (models.calibrate); 1 = as the model says
      ...                                                # quantization, validation, source, tool, created
    }

Everything else in the card (validation figures, source sha256, versions) is kept as ``extra`` for display.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import ModelCardError
from edge.preprocess import CENTER_SQUARE, ITEM_CROP, RESIZE_METHOD

CROPS = (ITEM_CROP, CENTER_SQUARE)  # item-square: trained for the item crop and photos; center-square: photos

SCHEMA = "smartbin.model-card/1"
MIN_T, MAX_T = 0.05, 20.0  # bounds of a calibration temperature


@dataclass(frozen=True)
class InputContract:
    """What the model expects as input: uint8 RGB pixels of this size, cropped and resized like this."""

    height: int
    width: int
    crop: str
    resize: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the order OpenCV takes."""
        return self.width, self.height


@dataclass(frozen=True)
class ModelCard:
    """The parts of a model card the edge needs, plus the rest of the card as ``extra``."""

    labels: tuple[str, ...]
    input: InputContract
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    temperature: float = 1.0  # calibration.temperature: probabilities ** (1/T), renormalized (edge.decision)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file (the cards and reports name models by it)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_path(model_path: str | Path) -> Path:
    """The card that belongs to a model: ``NAME.json`` beside ``NAME.tflite``."""
    return Path(model_path).with_suffix(".json")


def read_card(model_path: str | Path) -> ModelCard:
    """Read and check the card beside ``model_path``; raise ModelCardError with one clear line if it is bad."""
    path = card_path(model_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelCardError(f"model card missing: {path} (every model needs its card beside it)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelCardError(f"model card unreadable: {path}: {exc}") from None
    return parse_card(data, source=str(path))


def parse_card(data: Any, source: str = "model card") -> ModelCard:
    """Check a decoded card and return its typed form."""
    if not isinstance(data, dict):
        raise ModelCardError(f"{source}: expected a JSON object")
    if data.get("schema") != SCHEMA:
        raise ModelCardError(f"{source}: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
    labels = data.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise ModelCardError(f"{source}: 'labels' must be a non-empty list of names")
    if len(set(labels)) != len(labels):
        raise ModelCardError(f"{source}: 'labels' has duplicates")
    spec = data.get("input")
    if not isinstance(spec, dict):
        raise ModelCardError(f"{source}: 'input' must be an object")
    for key, expected in (("dtype", "uint8"), ("color", "RGB")):
        if spec.get(key) != expected:
            raise ModelCardError(f"{source}: input.{key} is {spec.get(key)!r}, the edge feeds {expected!r}")
    for key, known in (("crop", CROPS), ("resize", (RESIZE_METHOD,))):
        if key in spec and spec[key] not in known:
            raise ModelCardError(f"{source}: input.{key} is {spec[key]!r}, the edge implements {' or '.join(known)}")
    try:
        contract = InputContract(
            height=_positive_int(spec, "height"),
            width=_positive_int(spec, "width"),
            crop=str(spec.get("crop", "center-square")),
            resize=str(spec.get("resize", "cv2.INTER_AREA")),
        )
    except ValueError as exc:
        raise ModelCardError(f"{source}: {exc}") from None
    extra = {k: v for k, v in data.items() if k not in ("labels", "input")}
    return ModelCard(labels=tuple(labels), input=contract, extra=extra, temperature=_temperature(data, source))


def _temperature(data: dict[str, Any], source: str) -> float:
    calibration = data.get("calibration", {})
    value = calibration.get("temperature", 1.0) if isinstance(calibration, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not MIN_T <= value <= MAX_T:
        raise ModelCardError(f"{source}: calibration.temperature must be a number in [{MIN_T}, {MAX_T}], "
                             f"got {value!r}")
    return float(value)


def _positive_int(spec: dict[str, Any], key: str) -> int:
    value = spec.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"input.{key} must be a positive integer, got {value!r}")
    return value
