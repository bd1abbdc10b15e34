"""The model card written beside the ``.tflite``: what ``edge.model_card`` reads, plus how the model was made."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from edge.classifier import Classifier
from edge.integrity import file_integrity, probe_entry
from edge.model_card import SCHEMA, card_path, parse_card
from edge.preprocess import ITEM_CROP, RESIZE_METHOD

CAFFE = "caffe inside the model: RGB→BGR, minus ImageNet means (B 103.939, G 116.779, R 123.68), no scaling"


def tool_versions() -> dict[str, str]:
    """Versions of smartbin, TensorFlow and Keras doing the conversion."""

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {"smartbin": version("smartbin"), "tensorflow": version("tensorflow"), "keras": version("keras")}


def model_card(
    *,
    labels: tuple[str, ...],
    height: int,
    width: int,
    quantization: dict[str, Any],
    validation: dict[str, Any] | None,
    sizes: dict[str, int],
    source: dict[str, str],
) -> dict[str, Any]:
    """The card as a JSON-ready dict: input contract first, then how the model was made and checked."""
    return {
        "schema": SCHEMA,
        "labels": list(labels),
        "input": {
            "height": height,
            "width": width,
            "channels": 3,
            "dtype": "uint8",
            "color": "RGB",
            "crop": ITEM_CROP,
            "resize": RESIZE_METHOD,
            "preprocessing": CAFFE,
        },
        "output": {"dtype": "float32", "values": "softmax probabilities, in label order"},
        "quantization": quantization,
        "validation": validation,
        "size_bytes": sizes,
        "source": source,
        "tool": tool_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_json(data: dict[str, Any], path: Path) -> None:
    """Check ``data`` parses as a card the edge accepts, then write it to ``path`` via a temp file + rename."""
    parse_card(data, source=str(path))
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, text.encode("utf-8"))


def write_sealed(model: Path, update: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rewrite ``model``'s card with ``update`` and a fresh ``integrity`` section (file digests, then the probe
    images that tell its labels apart and their outputs, from the model loaded with that card); return the card."""
    card = json.loads(card_path(model).read_text(encoding="utf-8")) | (update or {})
    integrity = file_integrity(model, card["labels"])
    write_json(card | {"integrity": integrity}, card_path(model))  # the classifier checks the file against it
    with Classifier(model, threads=None) as classifier:  # all cores: the outputs do not depend on the threads
        sealed = card | {"integrity": integrity | {"probe": probe_entry(classifier)}}
    write_json(sealed, card_path(model))
    return sealed


def write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temp file beside ``path``, flush it to disk, then rename it over ``path``."""
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
