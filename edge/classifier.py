"""The classifier: a TFLite model and its card, built once; per image only set, invoke, get."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.errors import ModelCardError, ModelError
from edge.integrity import check_file, probe_pixels, sealed
from edge.model_card import ModelCard, read_card
from edge.runtime import first_line, load_interpreter


@dataclass(frozen=True)
class Prediction:
    """Class probabilities of one image, with the labels they belong to."""

    probabilities: np.ndarray
    labels: tuple[str, ...]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The k most probable (label, probability) pairs, most probable first."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(self.labels[i], float(self.probabilities[i])) for i in order]

    @property
    def label(self) -> str:
        """The most probable label."""
        return self.labels[int(np.argmax(self.probabilities))]

    @property
    def confidence(self) -> float:
        """The probability of the most probable label."""
        return float(np.max(self.probabilities))


class ImageClassifier(Protocol):
    """What the sorter needs of a classifier: ``Classifier`` (the real one) or ``edge.fakes.FakeClassifier``."""

    path: Path
    card: ModelCard
    runtime: str
    sha256: str | None  # of the model file (None: a fake)

    @property
    def labels(self) -> tuple[str, ...]: ...

    @property
    def input_size(self) -> tuple[int, int]: ...

    def probabilities(self, pixels: np.ndarray) -> np.ndarray: ...

    def classify(self, pixels: np.ndarray) -> Prediction: ...

    def close(self) -> None: ...


class CardInput:
    """What a classifier takes from its card: labels, input size, and the pixels it accepts."""

    card: ModelCard
    sha256: str | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels in output-index order."""
        return self.card.labels

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the model takes."""
        return self.card.input.size

    def check_pixels(self, pixels: np.ndarray) -> None:
        """Raise ValueError unless ``pixels`` is one uint8 RGB image of the model's input size."""
        expected = (self.card.input.height, self.card.input.width, 3)
        if pixels.shape != expected or pixels.dtype != np.uint8:
            raise ValueError(f"expected uint8 {expected} pixels, got {pixels.dtype} {pixels.shape}")


class Classifier(CardInput):
    """A ``.tflite`` model with its card (``NAME.json`` beside it), ready to classify uint8 RGB images.

    ``threads``: CPU threads for the interpreter (default: all cores). ``allow_unsealed``: accept a card without
    an ``integrity`` section, with a warning (default: refuse it). Fails at construction with a one-line
    ModelError if the model is missing, the card is missing, unsealed or sealed for another file or label order
    (``edge.integrity``, checked before the runtime reads the file), the runtime cannot load it, or the card
    does not fit the model.
    """

    def __init__(self, model_path: str | Path, threads: int | None = None, allow_unsealed: bool = False) -> None:
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(f"model not found: {self.path}")
        self.card: ModelCard = read_card(self.path)
        self.sha256: str | None = check_file(self.path, self.card, allow_unsealed)
        self._interpreter, self.runtime, self.runtime_log = load_interpreter(self.path, threads)
        self.threads = threads
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{self.path}: {len(inputs)} inputs and {len(outputs)} outputs, expected one of each "
                             "(a damaged or foreign model)")
        self._input, self._output = inputs[0], outputs[0]
        self._check_against_card()
        if not sealed(self.card):  # nothing to compare with: at least it runs (ModelError naming it if not)
            self.probabilities(probe_pixels(self.card.input.height, self.card.input.width))

    @property
    def input_quantization(self) -> tuple[float, int]:
        """(scale, zero point) of the uint8 input; (1.0, 0) means raw pixels go in unchanged."""
        scale, zero_point = self._input["quantization"]
        return float(scale), int(zero_point)

    def _check_against_card(self) -> None:
        shape = tuple(int(n) for n in self._input["shape"])
        expected = (1, self.card.input.height, self.card.input.width, 3)
        if shape != expected:
            raise ModelCardError(f"{self.path}: input shape {shape} but its card says {expected}")
        if self._input["dtype"] != np.uint8:
            raise ModelCardError(f"{self.path}: input type {np.dtype(self._input['dtype']).name}, expected uint8")
        classes = int(np.prod(self._output["shape"]))
        if classes != len(self.labels):
            raise ModelCardError(
                f"{self.path}: model has {classes} outputs but its card lists {len(self.labels)} labels"
            )

    @property
    def interpreter(self) -> Any:
        """The runtime's interpreter, for diagnostics (tensor and op details); classify through this class.
        Raises ModelError once the classifier is closed."""
        if self._interpreter is None:
            raise ModelError(f"{self.path.name}: the classifier is closed")
        return self._interpreter

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities (float32, summing to ~1) for one uint8 RGB image of the model's input size."""
        self.set_input(pixels)
        self.invoke()
        return self.output()

    def set_input(self, pixels: np.ndarray) -> None:
        """Set one uint8 RGB image of the model's input size as the input (quantized if the model asks)."""
        self.check_pixels(pixels)
        self.interpreter.set_tensor(self._input["index"], self._quantize_input(pixels)[np.newaxis])

    def output(self) -> np.ndarray:
        """Class probabilities of the last invoke (float32, dequantized)."""
        return self._dequantize_output(self.interpreter.get_tensor(self._output["index"])[0])

    def classify(self, pixels: np.ndarray) -> Prediction:
        """The prediction for one uint8 RGB image of the model's input size."""
        return Prediction(self.probabilities(pixels), self.labels)

    def invoke(self) -> None:
        """Run the interpreter on whatever input is set. Raises ModelError, naming the model, if the runtime
        fails on it (a damaged model it loaded: e.g. ``Input tensor 1 lacks data``)."""
        try:
            self.interpreter.invoke()
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"{self.path.name}: the runtime failed to run the model: {first_line(exc)}") from None

    def _quantize_input(self, pixels: np.ndarray) -> np.ndarray:
        scale, zero_point = self.input_quantization
        if (scale, zero_point) in ((1.0, 0), (0.0, 0)):
            return pixels
        quantized = np.round(pixels.astype(np.float32) / scale + zero_point)
        return np.clip(quantized, 0, 255).astype(np.uint8)

    def _dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        if raw.dtype in (np.uint8, np.int8):
            scale, zero_point = self._output["quantization"]
            if scale == 0:
                raise ModelError(f"{self.path}: quantized output without quantization parameters")
            return ((raw.astype(np.float32) - zero_point) * scale).astype(np.float32)
        return raw.astype(np.float32)

    def close(self) -> None:
        """Release the interpreter; safe to call twice."""
        self._interpreter = None

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
