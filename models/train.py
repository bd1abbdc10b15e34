"""Training recipe of the shipped model: ResNet-50 (ImageNet, last 10 layers trainable) + head on garbage12.

    python -m models.train --data ../shared/data/garbage12 \
        --weights ~/.cache/smartbin/imagenet/resnet50_imagenet_notop.weights.h5

1. Split: ``models/split.csv`` (see ``models.split``), stratified 70/15/15 by a hash of the file name.
2. Features: the frozen trunk's output (``conv5_block2_out``) for each train photo in 1 clean view,
   ``--photo-views`` augmented photo views and ``--belt-views`` belt views (item cut out, put on a random belt,
   item crop: see ``models.augment``), and for val clean and on held-out belts, cached on disk
   (``models.features``). The test split is not cached: the full model runs on its photos once (step 4).
3. Training of ``conv5_block3`` + head on those features: Adam with cosine learning-rate decay, categorical
   cross-entropy (optional label smoothing), class weights against the imbalance, one random view per photo
   per epoch (clean with ``--clean-share``, else one of the others), early stopping on the loss of val clean +
   val belt (best weights kept). Seeds fixed; TF ops deterministic.
4. The trained layers are the full model's own (``models.architecture.top`` shares them); the full model is
   checked against the feature path on validation photos, evaluated from pixels on the test split (photos
   and belt views), saved as ``.keras`` (outside the repo by default: ~100 MB), and its metrics written as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge.images import read_rgb
from models.architecture import preprocess
from models.augment import ViewKind
from models.features import (
    DEFAULT_CACHE,
    ViewSpec,
    evaluation_views,
    extraction_seconds,
    feature_set,
    view_plan,
)
from models.metrics import machine, summary, top_confusions
from models.split import Entry, dataset_arguments, read_manifest, select

logger = logging.getLogger("models.train")

DEFAULT_OUT = Path.home() / ".cache" / "smartbin" / "garbage12_resnet50.keras"


def class_weights(labels: np.ndarray, classes: int, power: float) -> np.ndarray:
    """Per-class weights (n / (k · n_c)) ** power, scaled so that the mean weight per photo is 1."""
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    weights = (counts.sum() / (classes * np.maximum(counts, 1))) ** power
    return (weights / (weights[labels].mean())).astype(np.float32)


def planned_epochs(plan: Callable[[int], list[Any]], batch: int, collate: Callable[[list[Any]], tuple]):
    """A Keras PyDataset whose rows are drawn anew for each epoch: ``plan(epoch)`` lists the epoch's rows in
    order, ``collate(rows)`` turns up to ``batch`` of them into one batch."""
    import keras

    class Planned(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.rows = plan(0)

        def __len__(self) -> int:
            return math.ceil(len(self.rows) / batch)

        def __getitem__(self, index: int) -> tuple:
            return collate(self.rows[index * batch : (index + 1) * batch])

        def on_epoch_end(self) -> None:
            self.epoch += 1
            self.rows = plan(self.epoch)

    return Planned()


def make_views_dataset(views: list[np.ndarray], labels: np.ndarray, weights: np.ndarray, batch: int, seed: int,
                       clean_share: float | None = None):
    """Each epoch, every train photo once, in one of its views, in a seeded random order. ``views[0]`` (the
    clean photo) is drawn with probability ``clean_share``, the others evenly (default: every view evenly)."""
    classes = len(weights)
    n = len(views)
    clean = 1 / n if clean_share is None or n == 1 else clean_share
    shares = [clean] + [(1 - clean) / (n - 1)] * (n - 1) if n > 1 else [1.0]

    def plan(epoch: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(labels))
        view_of = rng.choice(len(views), size=len(labels), p=shares)
        return [(int(row), int(view_of[row])) for row in order]

    def collate(rows: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.stack([np.asarray(views[view][row], np.float32) for row, view in rows])
        y = labels[[row for row, _ in rows]]
        return x, np.eye(classes, dtype=np.float32)[y], weights[y]

    return planned_epochs(plan, batch, collate)


def pixels_of(data: Path, entries: list[Entry], spec: ViewSpec, first: int = 0) -> np.ndarray:
    """224×224 uint8 views of the entries (what the edge feeds the model); ``first``: index of entries[0]."""
    return np.stack([spec.of(read_rgb(data / e.path), first + i) for i, e in enumerate(entries)])


def predict_pixels(model, data: Path, entries: list[Entry], spec: ViewSpec, batch: int = 32) -> np.ndarray:
    """Class probabilities of the full model on one view of ``entries``, from the photos (as the converter's
    validation feeds it: ``prepare`` → caffe ``preprocess_input``)."""
    out = []
    started = time.monotonic()
    for first in range(0, len(entries), batch):
        pixels = pixels_of(data, entries[first : first + batch], spec, first)
        out.append(np.asarray(model.predict_on_batch(preprocess(pixels))))
        if (first // batch) % 10 == 0:
            logger.info("full model on photos: %d/%d (%.0f s)", first + len(pixels), len(entries),
                        time.monotonic() - started)
    return np.concatenate(out)


def check_assembly(model, top, data: Path, entries: list[Entry], features: np.ndarray, n: int) -> dict[str, float]:
    """Full model on clean photos vs. trained top on cached (float16) features, for the first ``n`` entries."""
    pixels = pixels_of(data, entries[:n], ViewSpec("val", "clean"))
    full = np.asarray(model.predict(preprocess(pixels), batch_size=32, verbose=0))
    part = np.asarray(top.predict(np.asarray(features[:n], np.float32), batch_size=32, verbose=0))
    result = {
        "images": n,
        "max_abs_diff": float(np.abs(full - part).max()),
        "argmax_agreement": float((full.argmax(1) == part.argmax(1)).mean()),
    }
    if result["max_abs_diff"] > 0.05 or result["argmax_agreement"] < 0.98:
        raise RuntimeError(f"assembled model disagrees with the trained feature model: {result}")
    return result


TEST_KEYS: dict[ViewKind, str] = {"clean": "float_test", "belt": "float_test_belt"}


def test_figures(model, args: argparse.Namespace, entries: list[Entry], truth: np.ndarray, labels: list[str],
                 spec: ViewSpec) -> dict[str, Any]:
    """The full model's figures on one view of the test split, from the photos; probabilities saved beside it."""
    probabilities = predict_pixels(model, args.data, entries, spec)
    np.save(args.out.with_suffix(f".test_{spec.kind}_probabilities.npy"), probabilities)
    test = summary(truth, probabilities.argmax(1), labels)
    test["top_confusions"] = top_confusions(np.array(test["confusion"]), labels)
    logger.info("TEST %s (float, from photos): top-1 %.4f, weighted F1 %.4f", spec.kind, test["top1"],
                test["weighted_f1"])
    return test


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dataset_arguments(parser)
    parser.add_argument("--weights", default="imagenet", help="ImageNet weights: 'imagenet' or a .weights.h5 path")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"feature cache (default {DEFAULT_CACHE})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"trained .keras (default {DEFAULT_OUT})")
    parser.add_argument("--metrics", type=Path, default=Path("models/float_test_metrics.json"), help="metrics JSON")
    parser.add_argument("--photo-views", type=int, default=0, help="augmented photo views per train photo")
    parser.add_argument("--belt-views", type=int, default=2, help="belt views per train photo")
    parser.add_argument("--epochs", type=int, default=30, help="maximum epochs (one view per photo each)")
    parser.add_argument("--clean-share", type=float, default=0.5,
                        help="share of each epoch's photos shown clean; the rest in the other views evenly")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--lr", type=float, default=3e-4, help="initial Adam learning rate (cosine decay to 1%%)")
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing of the loss")
    parser.add_argument("--class-weight-power", type=float, default=0.5,
                        help="class weights (n/(k·n_c))**power: 1 = balanced, 0 = none")
    parser.add_argument("--patience", type=int, default=6, help="early-stopping patience in epochs (val loss)")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights init, dropout, order, augmentation")
    parser.add_argument("--no-test", action="store_true", help="skip the test-split evaluation (for tuning)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import keras
    import tensorflow as tf

    from models.architecture import build_model
    from models.architecture import top as make_top

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    entries = read_manifest(args.manifest)
    labels = sorted({e.label for e in entries})
    index = {label: i for i, label in enumerate(labels)}
    splits = {s: select(entries, s) for s in ("train", "val", "test")}
    y = {s: np.array([index[e.label] for e in es]) for s, es in splits.items()}

    model = build_model(args.weights, num_classes=len(labels))
    plan = view_plan(args.photo_views, args.belt_views, args.seed)
    features = feature_set(model, args.data, entries, args.cache, plan)
    extraction = extraction_seconds(features.values())
    logger.info("features ready (extraction took %.0f s in all); loading train views", extraction)
    train_views = [np.asarray(features[s]) for s in plan if s.split == "train"]
    val_specs = [s for s in plan if s.split == "val"]
    val_x = np.concatenate([np.asarray(features[s], np.float32) for s in val_specs])
    val_y = np.concatenate([y["val"]] * len(val_specs))

    weights = class_weights(y["train"], len(labels), args.class_weight_power)
    dataset = make_views_dataset(train_views, y["train"], weights, args.batch, args.seed, args.clean_share)
    top = make_top(model)
    schedule = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=args.epochs * len(dataset), alpha=0.01)
    top.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing),
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience, restore_best_weights=True)
    started = time.monotonic()
    history = top.fit(
        dataset,
        epochs=args.epochs,
        validation_data=(val_x, np.eye(len(labels), dtype=np.float32)[val_y]),
        callbacks=[stop],
        verbose=2,
    )
    training_seconds = time.monotonic() - started
    best_epoch = int(np.argmin(history.history["val_loss"])) + 1
    logger.info("trained in %.0f s, best epoch %d", training_seconds, best_epoch)

    val_pred = np.asarray(top.predict(val_x, batch_size=64, verbose=0)).argmax(1)
    n_val = len(y["val"])
    val = {s.kind: summary(y["val"], val_pred[i * n_val : (i + 1) * n_val], labels) for i, s in enumerate(val_specs)}
    for kind, figures in val.items():
        logger.info("val %s (features): top-1 %.4f, weighted F1 %.4f", kind, figures["top1"], figures["weighted_f1"])
    assembly = check_assembly(model, top, args.data, splits["val"], features[val_specs[0]], 64)
    logger.info("assembled model vs feature model on 64 val photos: %s", assembly)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    size = args.out.stat().st_size
    logger.info("saved %s (%.1f MB)", args.out, size / 1e6)

    result: dict[str, Any] = {
        "model": str(args.out),
        "model_bytes": size,
        "labels": labels,
        "split": {"manifest": str(args.manifest), **{s: len(es) for s, es in splits.items()}},
        "recipe": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "class_weights": dict(zip(labels, map(float, weights), strict=True)),
        "training": {
            "seconds": round(training_seconds, 1),
            "epochs_run": len(history.history["loss"]),
            "best_epoch": best_epoch,
            "history": {k: [round(float(x), 5) for x in v] for k, v in history.history.items()},
        },
        "extraction": {"seconds": round(extraction, 1), "images": sum(len(v) for v in features.values())},
        "assembly_check": assembly,
        "val_from_features": {kind: {k: f[k] for k in ("top1", "weighted_f1", "macro_f1")} for kind, f in val.items()},
        "machine": machine(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
    }
    if not args.no_test:
        for spec in evaluation_views("test"):
            result[TEST_KEYS[spec.kind]] = test_figures(model, args, splits["test"], y["test"], labels, spec)
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s", args.metrics)
    return result


if __name__ == "__main__":
    main()
