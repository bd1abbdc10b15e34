"""The recipe's Keras model rebuilt from a shipped int8 model, for fine-tuning where the ``.keras`` is not at hand.

The recipe trains only ``conv5_block3`` and the head; everything before is ImageNet's ResNet-50. So the
ImageNet weights plus the int8 model's trained layers, dequantized, give back a float model that is the
shipped model up to int8 rounding of those weights:

- each ``conv5_block3`` convolution: the converter folded its batch norm into the kernel and bias, so the Keras
  convolution takes the folded kernel (per-channel int8 × scale) and bias (int32 × scale) and its batch norm
  is set to the identity;
- ``head_dense``: kernel and bias as they are;
- ``head_bn``: folded by the converter into ``predictions``, so it is set to the identity and ``predictions``
  takes the folded weights.

The tensors are found by position (the last three convolutions, the last two fully-connected layers, from the
interpreter's op list: ``_get_ops_details``, the same in LiteRT and TensorFlow Lite) and checked by name.
Fine-tuning must keep those batch norms frozen (``models.finetune`` does): in training mode a batch norm would
normalise by the batch's statistics instead of the identity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from edge.errors import ModelError
from edge.runtime import interpreter_class
from models.architecture import BASE_NAME, BLOCK, build_model

CONVOLUTIONS = tuple(f"{BLOCK}_{part}" for part in ("1", "2", "3"))
DENSE = ("head_dense", "predictions")


def dequantized(tensor: dict[str, Any], values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Float values of an int8/int32 constant tensor with per-channel (or per-tensor) scales along ``axis``."""
    quantization = tensor["quantization_parameters"]
    scales = np.asarray(quantization["scales"], np.float64)
    zeros = np.asarray(quantization["zero_points"], np.float64)
    if scales.size == 0:
        raise ModelError(f"tensor {tensor['name']} is not quantized")
    shape = [1] * values.ndim
    if scales.size > 1:
        shape[axis] = scales.size
    return ((values.astype(np.float64) - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def trained_weights(tflite: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) in Keras layout for each of ``CONVOLUTIONS`` and ``DENSE``, from an int8 model."""
    cls, _ = interpreter_class()
    try:
        interpreter = cls(model_path=str(tflite))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"model unreadable: {tflite}: {str(exc).strip().splitlines()[0]}") from None
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    convs = [op for op in ops if op["op_name"] == "CONV_2D"][-len(CONVOLUTIONS):]
    dense = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"][-len(DENSE):]
    if len(convs) < len(CONVOLUTIONS) or len(dense) < len(DENSE):
        raise ModelError(f"{tflite.name}: {len(convs)} convolutions and {len(dense)} fully-connected layers: "
                         "not this recipe's model")
    weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, op, layout in [*((n, o, (1, 2, 3, 0)) for n, o in zip(CONVOLUTIONS, convs, strict=True)),
                             *((n, o, (1, 0)) for n, o in zip(DENSE, dense, strict=True))]:
        kernel_tensor, bias_tensor = tensors[op["inputs"][1]], tensors[op["inputs"][2]]
        if not any(name in t["name"] for t in (kernel_tensor, bias_tensor)):
            raise ModelError(f"{tflite.name}: expected {name} at {op['op_name']} #{op['index']}, "
                             f"found {kernel_tensor['name']}: not this recipe's model")
        kernel = dequantized(kernel_tensor, interpreter.get_tensor(kernel_tensor["index"]))
        bias = dequantized(bias_tensor, interpreter.get_tensor(bias_tensor["index"]))
        weights[name] = (kernel.transpose(layout), bias)
    return weights


def identity(layer: keras.layers.BatchNormalization) -> None:
    """Make a batch norm pass its input through unchanged (in inference mode)."""
    channels = layer.gamma.shape[0]
    layer.set_weights([np.ones(channels, np.float32), np.zeros(channels, np.float32),
                       np.zeros(channels, np.float32), np.full(channels, 1.0 - layer.epsilon, np.float32)])


def keras_from_int8(tflite: Path, weights: str) -> keras.Model:
    """The recipe's model with ImageNet ``weights`` and the trained layers of the int8 model ``tflite``."""
    trained = trained_weights(tflite)
    model = build_model(weights, num_classes=trained["predictions"][0].shape[1])
    base = model.get_layer(BASE_NAME)
    for name in CONVOLUTIONS:
        base.get_layer(f"{name}_conv").set_weights(list(trained[name]))
        identity(base.get_layer(f"{name}_bn"))
    model.get_layer("head_dense").set_weights(list(trained["head_dense"]))
    identity(model.get_layer("head_bn"))
    model.get_layer("predictions").set_weights(list(trained["predictions"]))
    return model
