"""SavedModel export of the wrapped network, TFLite conversion (full int8 or float32), and the int8 checks.

Keras 3 on TF 2.16+: ``TFLiteConverter.from_keras_model`` and concrete functions holding variables fail, so
the network goes through ``keras.export.ExportArchive`` (what ``model.export(format="tf_saved_model")``
uses) into a SavedModel, and the converter reads that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from convert.errors import ConversionError
from edge.progress import Progress
from edge.runtime import interpreter_class

EXACT_INPUT = (1.0, 0)  # uint8 input quantization under which raw pixels go in unchanged


@dataclass(frozen=True)
class Int8Report:
    """What the int8 model turned out to be: its input quantization and tensor types."""

    input_scale: float
    input_zero_point: int
    output_dtype: str
    tensor_dtypes: dict[str, int]


def export_saved_model(model: Any, function: Callable[..., Any], spec: Any, directory: Path) -> None:
    """Write ``function`` (tracking ``model``'s variables) as the SavedModel's serving endpoint."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", function, input_signature=[spec])
    archive.write_out(str(directory), verbose=False)


def to_int8(saved_model: Path, calibration: np.ndarray) -> bytes:
    """Full-integer TFLite: int8 weights and activations, uint8 input, float32 output (dequantized softmax).

    ``calibration``: N×H×W×3 uint8 pixels, prepared exactly as the edge prepares frames.
    """
    progress = Progress("calibration", len(calibration))

    def representative() -> Iterator[list[np.ndarray]]:
        for pixels in calibration:
            yield [pixels[np.newaxis].astype(np.float32)]
            progress.advance()

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.float32
    flatbuffer = _convert(converter)
    progress.finish()
    return flatbuffer


def to_float(saved_model: Path) -> bytes:
    """Float32 TFLite of the same network (uint8 input cast inside), the baseline for speed comparisons."""
    return _convert(tf.lite.TFLiteConverter.from_saved_model(str(saved_model)))


def _convert(converter: Any) -> bytes:
    try:
        return bytes(converter.convert())
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"TFLite conversion failed: {reason[:300]}") from None


def check_int8(flatbuffer: bytes) -> Int8Report:
    """Check the int8 model: uint8 input quantized exactly as pixels (1.0, 0), nothing float inside.

    Raises ConversionError naming what is wrong; the edge would otherwise be fed mis-scaled pixels.
    """
    cls, _ = interpreter_class()
    interpreter = cls(model_content=flatbuffer)
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = (float(source["quantization"][0]), int(source["quantization"][1]))
    dtypes: dict[str, int] = {}
    for tensor in interpreter.get_tensor_details():
        name = np.dtype(tensor["dtype"]).name
        dtypes[name] = dtypes.get(name, 0) + 1
    if np.dtype(source["dtype"]) != np.uint8:
        raise ConversionError(f"int8 model input is {np.dtype(source['dtype']).name}, expected uint8")
    if (scale, zero_point) != EXACT_INPUT:
        raise ConversionError(
            f"int8 model input quantization is (scale {scale:.6g}, zero point {zero_point}), not (1, 0): "
            "uint8 input would not be raw pixels"
        )
    floats = dtypes.get("float32", 0) - (np.dtype(sink["dtype"]) == np.float32)
    if floats or dtypes.get("int8", 0) == 0:
        raise ConversionError(f"model is not full-integer: tensor types {dtypes}")
    return Int8Report(scale, zero_point, np.dtype(sink["dtype"]).name, dtypes)
