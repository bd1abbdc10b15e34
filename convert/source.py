"""The source model: a Keras 3 ``.keras`` file, loaded and checked, with its sha256."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convert.errors import ConversionError
from edge.model_card import sha256_of


@dataclass(frozen=True)
class SourceModel:
    """A loaded Keras classifier with fixed H×W×3 input and ``classes`` outputs."""

    path: Path
    model: Any  # keras.Model; typed loosely so that importing this module does not import Keras
    sha256: str
    height: int
    width: int
    classes: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the order ``edge.preprocess.prepare`` takes."""
        return self.width, self.height


def load_source(path: str | Path) -> SourceModel:
    """Load ``path`` with Keras and check it is an image classifier of fixed input size; one-line errors."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"model not found: {path}")
    if path.suffix != ".keras":
        raise ConversionError(f"expected a Keras 3 .keras file, got {path.name}")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a corrupt archive; all mean the same here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"cannot load Keras model {path}: {reason[:200]}") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConversionError(
            f"{path}: expected one input and one output, got {len(model.inputs)} and {len(model.outputs)}"
        )
    input_shape, output_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(input_shape) != 4 or input_shape[3] != 3 or not all(isinstance(n, int) for n in input_shape[1:3]):
        raise ConversionError(f"{path}: input shape {input_shape} is not (batch, height, width, 3) with a fixed size")
    if len(output_shape) != 2 or not isinstance(output_shape[1], int):
        raise ConversionError(f"{path}: output shape {output_shape} is not (batch, classes)")
    return SourceModel(
        path=path,
        model=model,
        sha256=sha256_of(path),
        height=int(input_shape[1]),
        width=int(input_shape[2]),
        classes=int(output_shape[1]),
    )
