"""The exported network: uint8-range RGB pixels in, the caffe transform inside, the trained model after it.

The edge hands over raw pixels, so the graph's input must *be* raw pixels. Two variants:

- int8: the input is float32 pixels (0..255), pinned to that range by a FakeQuant(min=0, max=255, 8 bits)
  that is the identity on integer pixels. The TFLite converter takes the input's quantization from it:
  scale 1, zero point 0, so the uint8 input tensor holds the pixels unchanged. Without the pin the converter
  gives the input the range of the caffe-transformed tensor (seen: scale 1.485, zero point 83), and raw
  pixels fed to it are wrong.
- float: the input is uint8 pixels cast to float32 inside the graph; the same uint8 input contract.

The caffe transform is Keras' own ``resnet50.preprocess_input``, the function the model was trained with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

PIXEL_MIN, PIXEL_MAX = 0.0, 255.0


def serving_function(model: keras.Model, height: int, width: int, int8: bool) -> tuple[Callable[..., Any], Any]:
    """The function to export, and its input signature (batch 1, ``height``×``width``×3 pixels)."""
    preprocess = keras.applications.resnet50.preprocess_input

    def int8_pixels(pixels: tf.Tensor) -> tf.Tensor:
        pinned = tf.quantization.fake_quant_with_min_max_args(pixels, min=PIXEL_MIN, max=PIXEL_MAX, num_bits=8)
        return model(preprocess(pinned), training=False)

    def float_pixels(pixels: tf.Tensor) -> tf.Tensor:
        return model(preprocess(tf.cast(pixels, tf.float32)), training=False)

    dtype = tf.float32 if int8 else tf.uint8
    spec = tf.TensorSpec([1, height, width, 3], dtype, name="pixels")
    return (int8_pixels if int8 else float_pixels), spec
