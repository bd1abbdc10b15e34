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

The weights are read from the model's flatbuffer itself (the ``tflite`` schema package), so no TFLite runtime is
needed: the same code runs on a training machine with only Keras. The convolutions are found by the Keras layer
name in their kernel's tensor name, the two fully-connected layers by position (the last two) and checked by
name. Fine-tuning must keep those batch norms frozen (``models.finetune`` and ``models.tune_trunk`` do): in
training mode a batch norm would normalise by the batch's statistics instead of the identity.
"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import tflite

from edge.errors import ModelError
from models.architecture import BASE_NAME, build_model

DENSE = ("head_dense", "predictions")
CONV_TENSOR = re.compile(r"/(conv\d(?:_block\d+_\d)?_conv)(?:_\d+)?/")  # ".../conv5_block3_2_conv_1/convolution"


def dequantized(model, index: int, axis: int = 0) -> tuple[str, np.ndarray]:
    """Name and float values of a constant int8/int32 tensor of the main graph, per-channel scales along ``axis``."""
    tensor = model.Subgraphs(0).Tensors(index)
    name = tensor.Name().decode()
    kinds = {tflite.TensorType.INT8: np.int8, tflite.TensorType.INT32: np.int32}
    quantization = tensor.Quantization()
    if tensor.Type() not in kinds or quantization is None or quantization.ScaleLength() == 0:
        raise ModelError(f"tensor {name} is not quantized")
    raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
    values = np.frombuffer(np.asarray(raw).tobytes(), kinds[tensor.Type()]).reshape(tensor.ShapeAsNumpy())
    scales = quantization.ScaleAsNumpy().astype(np.float64)
    zeros = quantization.ZeroPointAsNumpy().astype(np.float64)
    shape = [1] * values.ndim
    if scales.size > 1:
        shape[axis] = scales.size
    return name, ((values - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def trained_weights(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) in Keras layout for every convolution (by layer name) and ``DENSE``, from an int8 model."""
    try:
        model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
        graph = model.Subgraphs(0)
        codes = [max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                 for code in map(model.OperatorCodes, range(model.OperatorCodesLength()))]
        ops = [(codes[op.OpcodeIndex()], op.InputsAsNumpy())
               for op in map(graph.Operators, range(graph.OperatorsLength()))]
    except Exception as exc:  # a corrupt flatbuffer fails anywhere inside the generated reader
        raise ModelError(f"model unreadable: {path}: {type(exc).__name__}: {exc}") from None
    weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for code, inputs in ops:
        if code != tflite.BuiltinOperator.CONV_2D:
            continue
        name, kernel = dequantized(model, int(inputs[1]))
        match = CONV_TENSOR.search(name)
        if match is None:
            raise ModelError(f"{path.name}: convolution {name} is not a ResNet-50 layer: not this recipe's model")
        weights[match.group(1)] = (kernel.transpose(1, 2, 3, 0), dequantized(model, int(inputs[2]))[1])
    dense = [inputs for code, inputs in ops if code == tflite.BuiltinOperator.FULLY_CONNECTED][-len(DENSE):]
    if len(dense) < len(DENSE):
        raise ModelError(f"{path.name}: {len(dense)} fully-connected layers: not this recipe's model")
    for layer, inputs in zip(DENSE, dense, strict=True):
        name, kernel = dequantized(model, int(inputs[1]))
        if layer not in name:
            raise ModelError(f"{path.name}: expected {layer}, found {name}: not this recipe's model")
        weights[layer] = (kernel.transpose(1, 0), dequantized(model, int(inputs[2]))[1])
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
