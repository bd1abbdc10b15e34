"""Validation: the float Keras model against the converted TFLite model on the same prepared images.

The TFLite side runs through ``edge.classifier.Classifier``, exactly as the edge will run it (card checks,
input quantization, output dequantization included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convert.dataset import Item, Reader
from convert.errors import ConversionError
from edge.classifier import Classifier
from edge.progress import Progress

BATCH = 32  # images per Keras float prediction


@dataclass(frozen=True)
class Predictions:
    """Probabilities of the same images from the Keras model and from the TFLite model(s)."""

    keras: np.ndarray  # N×C float32
    tflite: np.ndarray  # N×C float32, the int8 model
    truth: np.ndarray | None  # N class indices, None for unlabelled images
    float_tflite: np.ndarray | None = None  # N×C, the float32 TFLite model when one was built


def check_classes(items: Sequence[Item], labels: Sequence[str]) -> None:
    """Check that a labelled folder's class names are all among ``labels``."""
    unknown = sorted({label for _, label in items if label is not None and label not in labels})
    if unknown:
        raise ConversionError(f"validation folder has classes that are not labels of the model: {', '.join(unknown)}")


def predict(
    model: Any,
    classifier: Classifier,
    items: Sequence[Item],
    reader: Reader,
    float_classifier: Classifier | None = None,
) -> Predictions:
    """Run every readable item through Keras (batched) and the TFLite model(s) (one by one)."""
    import keras

    check_classes(items, classifier.labels)
    progress = Progress("validation", len(items))
    keras_out, tflite_out, float_out, truth = [], [], [], []
    skipped = len(reader.skipped)
    for pixels, names in reader.batches(items, BATCH):
        inputs = keras.applications.resnet50.preprocess_input(pixels.astype(np.float32))
        keras_out.append(np.asarray(model.predict_on_batch(inputs), dtype=np.float32))
        for image in pixels:
            tflite_out.append(classifier.probabilities(image))
            if float_classifier is not None:
                float_out.append(float_classifier.probabilities(image))
        truth.extend(names)
        progress.advance(len(names) + len(reader.skipped) - skipped)
        skipped = len(reader.skipped)
    progress.advance(len(reader.skipped) - skipped)
    progress.finish()
    if not tflite_out:
        raise ConversionError("no readable validation images")
    labelled = all(name is not None for name in truth)
    return Predictions(
        keras=np.concatenate(keras_out),
        tflite=np.stack(tflite_out),
        truth=np.array([classifier.labels.index(name) for name in truth]) if labelled else None,
        float_tflite=np.stack(float_out) if float_out else None,
    )


def _pct(fraction: float) -> float:
    return round(100 * float(fraction), 2)


def _recall(predicted: np.ndarray, truth: np.ndarray, labels: Sequence[str]) -> dict[str, float | None]:
    recall: dict[str, float | None] = {}
    for index, label in enumerate(labels):
        mask = truth == index
        recall[label] = _pct(np.mean(predicted[mask] == index)) if mask.any() else None
    return recall


def metrics(predictions: Predictions, labels: Sequence[str]) -> dict[str, Any]:
    """The validation figures (percentages in %, rounded): top-1, agreement, mean |Δp|, per-class recall."""
    float_top, int8_top = predictions.keras.argmax(axis=1), predictions.tflite.argmax(axis=1)
    figures: dict[str, Any] = {
        "images": len(float_top),
        "top1_agreement_pct": _pct(np.mean(float_top == int8_top)),
        "mean_abs_prob_diff": round(float(np.mean(np.abs(predictions.keras - predictions.tflite))), 5),
        "max_abs_prob_diff": round(float(np.max(np.abs(predictions.keras - predictions.tflite))), 5),
    }
    truth = predictions.truth
    if truth is not None:
        float_acc, int8_acc = _pct(np.mean(float_top == truth)), _pct(np.mean(int8_top == truth))
        figures |= {
            "float_top1_pct": float_acc,
            "int8_top1_pct": int8_acc,
            "drop_pp": round(float_acc - int8_acc, 2),
            "images_per_class": {label: int(np.sum(truth == i)) for i, label in enumerate(labels)},
            "recall_pct": {"float": _recall(float_top, truth, labels), "int8": _recall(int8_top, truth, labels)},
        }
    if predictions.float_tflite is not None:
        float_tflite_top = predictions.float_tflite.argmax(axis=1)
        figures["float_tflite"] = {
            "top1_agreement_with_keras_pct": _pct(np.mean(float_tflite_top == float_top)),
            "max_abs_prob_diff": round(float(np.max(np.abs(predictions.float_tflite - predictions.keras))), 6),
        }
    return figures


def report(figures: dict[str, Any], labels: Sequence[str]) -> list[str]:
    """Human-readable lines of the validation figures."""
    lines = [
        f"validation images: {figures['images']}",
        f"top-1 agreement float/int8: {figures['top1_agreement_pct']:.2f}%",
        f"mean |p_float - p_int8|: {figures['mean_abs_prob_diff']:.5f} (max {figures['max_abs_prob_diff']:.5f})",
    ]
    if "float_top1_pct" in figures:
        lines.append(
            f"top-1 float {figures['float_top1_pct']:.2f}%  int8 {figures['int8_top1_pct']:.2f}%  "
            f"drop {figures['drop_pp']:+.2f} pp"
        )
        lines.append(f"{'class':<14}{'images':>7}{'float':>9}{'int8':>9}")
        recall = figures["recall_pct"]
        for label in labels:
            row = [recall["float"][label], recall["int8"][label]]
            cells = "".join(f"{'-' if value is None else f'{value:.1f}%':>9}" for value in row)
            lines.append(f"{label:<14}{figures['images_per_class'][label]:>7}{cells}")
    if "float_tflite" in figures:
        ft = figures["float_tflite"]
        lines.append(
            f"float TFLite vs Keras: top-1 agreement {ft['top1_agreement_with_keras_pct']:.2f}%, "
            f"max |Δp| {ft['max_abs_prob_diff']:.6f}"
        )
    return lines
