"""Test-split figures of the shipped model: int8 TFLite (as the edge runs it) vs. its float Keras source.

Runs every photo of a split, in two views, through the int8 model via ``edge.classifier.Classifier`` and
through the ``.keras`` model with Keras' caffe ``preprocess_input`` (what the converter wraps into the graph):

- ``test``: the photos (centre square, ``edge.preprocess.prepare``);
- ``test_belt``: the belt view set: each photo's item on a belt that no training view used (fixed seed
  ``models.features.BELT_EVAL_SEED``), through the edge's item crop.

Writes top-1, weighted F1, per-class precision/recall, float-vs-int8 agreement and the confusion matrix into
the model's card (keys ``test`` and ``test_belt``) and a confusion-matrix PNG (photos). The float model's
probabilities are taken from the ``.npy`` files ``models.train`` saved beside the ``.keras`` when present
(the same model on the same pixels), else computed.

    python -m models.evaluate --model models/garbage12_resnet50_int8.tflite \
        --keras ~/.cache/smartbin/garbage12_resnet50.keras
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.classifier import Classifier
from edge.images import read_rgb
from edge.model_card import card_path
from edge.progress import Progress
from models.confusion import plot_confusion
from models.features import ViewSpec, evaluation_views
from models.metrics import machine, summary, top_confusions
from models.split import Entry, dataset_arguments, read_manifest, select

logger = logging.getLogger("models.evaluate")


VIEWS = dict(zip(("test", "test_belt"), evaluation_views("test"), strict=True))


def tflite_probabilities(model: Path, data: Path, entries: list[Entry], spec: ViewSpec,
                         threads: int | None) -> np.ndarray:
    """Probabilities of the TFLite model for one view of each entry, one image at a time, as on the edge."""
    with Classifier(model, threads=threads) as classifier:
        if classifier.input_size != (224, 224):
            raise SystemExit(f"{model}: input {classifier.input_size}, the recipe's views are 224×224")
        progress = Progress(f"int8 {spec.split} {spec.kind}", len(entries), every=10.0)
        probabilities = []
        for i, e in enumerate(entries):
            probabilities.append(classifier.probabilities(spec.of(read_rgb(data / e.path), i)))
            progress.advance()
        progress.finish()
        return np.stack(probabilities)


def keras_probabilities(path: Path, data: Path, entries: list[Entry], spec: ViewSpec) -> np.ndarray:
    """Probabilities of the float ``.keras`` model on the same views (saved by training, or computed)."""
    saved = path.with_suffix(f".test_{spec.kind}_probabilities.npy")
    if spec.split == "test" and saved.is_file():
        probabilities = np.load(saved)
        if len(probabilities) == len(entries):
            logger.info("float model: %s (saved by models.train)", saved)
            return probabilities
    import keras

    from models.train import predict_pixels

    return predict_pixels(keras.models.load_model(path, compile=False), data, entries, spec)


def compare(
    float_probs: np.ndarray, int8_probs: np.ndarray, truth: np.ndarray, labels: tuple[str, ...]
) -> dict[str, Any]:
    """Figures of both models, their top-1 agreement and the int8 drop in percentage points."""
    float_sum, int8_sum = summary(truth, float_probs.argmax(1), labels), summary(truth, int8_probs.argmax(1), labels)
    int8_sum["top_confusions"] = top_confusions(np.array(int8_sum["confusion"]), labels)
    return {
        "float": float_sum,
        "int8": int8_sum,
        "top1_agreement": float((float_probs.argmax(1) == int8_probs.argmax(1)).mean()),
        "drop_pp": round(100 * (float_sum["top1"] - int8_sum["top1"]), 3),
        "mean_abs_prob_diff": float(np.abs(float_probs - int8_probs).mean()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/garbage12_resnet50_int8.tflite"), help="int8 model")
    parser.add_argument("--keras", type=Path, required=True, help="the float .keras it was converted from")
    dataset_arguments(parser)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to evaluate")
    parser.add_argument("--png", type=Path, default=Path("models/confusion_matrix.png"), help="confusion-matrix PNG")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: all cores)")
    parser.add_argument("--no-card", action="store_true", help="do not write the figures into the model's card")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    entries = select(read_manifest(args.manifest), args.split)
    card = json.loads(card_path(args.model).read_text(encoding="utf-8"))
    labels = tuple(card["labels"])
    truth = np.array([labels.index(e.label) for e in entries])
    results: dict[str, Any] = {}
    for key, spec in VIEWS.items():
        spec = ViewSpec(args.split, spec.kind, spec.index, spec.seed)
        started = time.monotonic()
        int8_probs = tflite_probabilities(args.model, args.data, entries, spec, args.threads)
        int8_seconds = time.monotonic() - started
        logger.info("int8 model, %s: %d images in %.0f s", key, len(entries), int8_seconds)
        figures = compare(keras_probabilities(args.keras, args.data, entries, spec), int8_probs, truth, labels)
        results[key] = {
            "split": f"{args.manifest.as_posix()}: {args.split}",
            "view": "photos (centre square)" if spec.kind == "clean" else
            f"belt views (item on a held-out belt, seed {spec.seed}, item crop)",
            "images": len(entries),
            **figures,
            "int8_seconds_per_image": round(int8_seconds / len(entries), 4),
            "machine": machine(),
        }
        logger.info("%s: int8 top-1 %.4f wF1 %.4f; float top-1 %.4f; agreement %.4f; drop %.2f pp", key,
                    figures["int8"]["top1"], figures["int8"]["weighted_f1"], figures["float"]["top1"],
                    figures["top1_agreement"], figures["drop_pp"])
    photos = results["test"]
    title = (f"{args.model.name} on the {args.split} split ({len(entries)} photos): top-1 "
             f"{photos['int8']['top1']:.4f}, weighted F1 {photos['int8']['weighted_f1']:.4f}")
    plot_confusion(np.array(photos["int8"]["confusion"]), labels, args.png, title)
    logger.info("%s", title)
    if not args.no_card:
        from convert.card import write_json

        card.update(results)
        write_json(card, card_path(args.model))
        logger.info("wrote the %s figures into %s", args.split, card_path(args.model))
    return results


if __name__ == "__main__":
    main()
