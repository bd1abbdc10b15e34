"""The recipe's Keras model rebuilt from a shipped int8 model, for fine-tuning where the ``.keras`` is not at hand.

Every weight of the network is in the int8 model, so its dequantized tensors give back a float model that is
the shipped model up to int8 rounding, whichever layers its recipe trained (``models.train``: ``conv5_block3``
and the head; ``models.tune_trunk``: every convolution):

- each convolution: the converter folded its batch norm into the kernel and bias, so the Keras convolution takes
  the folded kernel (per-channel int8 × scale) and bias (int32 × scale) and its batch norm is set to the
  identity;
- ``head_dense``: kernel and bias as they are;
- ``head_bn``: folded by the converter into ``predictions``, so it is set to the identity and ``predictions``
  takes the folded weights.

The convolutions are found by the Keras layer name in their kernel's tensor name, the two fully-connected
layers by position (the last two, from the interpreter's op list: ``_get_ops_details``, the same in LiteRT and
TensorFlow Lite) and checked by name. Fine-tuning must keep those batch norms frozen (``models.finetune`` and
``models.tune_trunk`` do): in training mode a batch norm would normalise by the batch's statistics instead of
the identity.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import keras
import numpy as np

from edge.errors import ModelError
from edge.runtime import interpreter_class
from models.architecture import BASE_NAME, build_model

DENSE = ("head_dense", "predictions")
CONV_TENSOR = re.compile(r"/(conv\d(?:_block\d+_\d)?_conv)(?:_\d+)?/")  # ".../conv5_block3_2_conv_1/convolution"


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
    """(kernel, bias) in Keras layout for every convolution (by layer name) and ``DENSE``, from an int8 model."""
    cls, _ = interpreter_class()
    try:
        interpreter = cls(model_path=str(tflite))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"model unreadable: {tflite}: {str(exc).strip().splitlines()[0]}") from None
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    named: list[tuple[str, dict[str, Any], tuple[int, ...]]] = []
    for op in (op for op in ops if op["op_name"] == "CONV_2D"):
        match = CONV_TENSOR.search(tensors[op["inputs"][1]]["name"])
        if match is None:
            raise ModelError(f"{tflite.name}: convolution #{op['index']} ({tensors[op['inputs'][1]]['name']}) "
                             "is not a ResNet-50 layer: not this recipe's model")
        named.append((match.group(1), op, (1, 2, 3, 0)))
    dense = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"][-len(DENSE):]
    if len(dense) < len(DENSE):
        raise ModelError(f"{tflite.name}: {len(dense)} fully-connected layers: not this recipe's model")
    named += [(name, op, (1, 0)) for name, op in zip(DENSE, dense, strict=True)]
    weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, op, layout in named:
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


def keras_from_int8(tflite: Path) -> keras.Model:
    """The recipe's model in float with every weight from the int8 model ``tflite``."""
    trained = trained_weights(tflite)
    model = build_model(None, num_classes=trained["predictions"][0].shape[1])
    base = model.get_layer(BASE_NAME)
    convolutions = {layer.name for layer in base.layers if isinstance(layer, keras.layers.Conv2D)}
    if missing := sorted(convolutions - trained.keys()):
        raise ModelError(f"{tflite.name}: no {', '.join(missing[:3])} …: not this recipe's model")
    for name in convolutions:
        base.get_layer(name).set_weights(list(trained[name]))
        identity(base.get_layer(name.removesuffix("_conv") + "_bn"))
    model.get_layer("head_dense").set_weights(list(trained["head_dense"]))
    identity(model.get_layer("head_bn"))
    model.get_layer("predictions").set_weights(list(trained["predictions"]))
    return model
