"""The trained network: ResNet-50 (ImageNet, no top) → head, on caffe-preprocessed 224×224 RGB.

Architecture of the original garbage-classification model: ``keras.applications.ResNet50`` with ImageNet
weights, ``include_top=False``, 224×224, its last 10 layers trainable (all of ``conv5_block3``), and the head
GAP → Dense(256, relu) → BatchNorm → Dropout(0.3) → Dense(12, softmax). Like the original, the ``.keras``
takes ``keras.applications.resnet50.preprocess_input`` of the pixels (``preprocess``); the converter
(``convert.wrap``) puts that caffe transform inside the exported TFLite graph, which then takes raw uint8 pixels.

Everything before ``conv5_block3`` is frozen, so its output (``conv5_block2_out``, 7×7×2048) is computed once
per image view (``trunk``) and the trainable part (``top``) trains on those features. ``top`` calls the very
layers of the full model, so training it trains the full model.
"""

from __future__ import annotations

import keras
import numpy as np

INPUT_SIZE = 224
TRAINABLE_LAYERS = 10
FEATURE_LAYER = "conv5_block2_out"
FEATURE_SHAPE = (7, 7, 2048)
BASE_NAME = "resnet50"
BLOCK = "conv5_block3"
BLOCK_LAYERS = tuple(
    f"{BLOCK}_{suffix}"
    for suffix in ("1_conv", "1_bn", "1_relu", "2_conv", "2_bn", "2_relu", "3_conv", "3_bn", "add", "out")
)
HEAD_LAYERS = ("head_pool", "head_dense", "head_bn", "head_dropout", "predictions")


def preprocess(pixels: np.ndarray) -> np.ndarray:
    """The model's input from uint8 RGB pixels: caffe (RGB→BGR, minus the ImageNet mean), float32."""
    return keras.applications.resnet50.preprocess_input(np.array(pixels, np.float32))  # a copy: it works in place


def build_model(weights: str | None = "imagenet", num_classes: int = 12, dropout: float = 0.3) -> keras.Model:
    """The full model; ``weights``: 'imagenet' (Keras' download), a ``.weights.h5`` path, or None."""
    base = keras.applications.ResNet50(
        include_top=False, weights=weights, input_shape=(INPUT_SIZE, INPUT_SIZE, 3), name=BASE_NAME
    )
    names = tuple(layer.name for layer in base.layers[-TRAINABLE_LAYERS:])
    if names != BLOCK_LAYERS:
        raise RuntimeError(f"ResNet50's last {TRAINABLE_LAYERS} layers are {names}, expected {BLOCK_LAYERS}")
    for layer in base.layers:
        layer.trainable = layer.name in BLOCK_LAYERS
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="caffe_pixels")
    x = base(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = keras.layers.Dense(256, activation="relu", name="head_dense")(x)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="garbage12_resnet50")


def trunk(model: keras.Model) -> keras.Model:
    """The frozen part: caffe-preprocessed pixels → ResNet-50 up to ``conv5_block2_out`` (7×7×2048)."""
    base = model.get_layer(BASE_NAME)
    return keras.Model(base.input, base.get_layer(FEATURE_LAYER).output, name="trunk")


def top(model: keras.Model) -> keras.Model:
    """The trainable part: ``conv5_block2_out`` features → ``conv5_block3`` → head, sharing the model's layers."""
    base = model.get_layer(BASE_NAME)
    features = keras.Input(FEATURE_SHAPE, name="features")
    x = features
    for part in ("1", "2", "3"):
        x = base.get_layer(f"{BLOCK}_{part}_conv")(x)
        x = base.get_layer(f"{BLOCK}_{part}_bn")(x)
        if part != "3":
            x = base.get_layer(f"{BLOCK}_{part}_relu")(x)
    x = base.get_layer(f"{BLOCK}_add")([features, x])
    x = base.get_layer(f"{BLOCK}_out")(x)
    for name in HEAD_LAYERS:
        x = model.get_layer(name)(x)
    return keras.Model(features, x, name="top")
