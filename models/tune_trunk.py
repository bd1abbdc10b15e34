"""Whole-trunk fine-tuning: the recipe's model with every convolution of ResNet-50 trainable, on fresh views.

    python -m models.tune_trunk --base ~/.cache/smartbin/garbage12_resnet50.keras --out TUNED.keras

``models.train`` trains only ``conv5_block3`` and the head on cached features of the frozen ImageNet trunk. Its
belt-view errors come from the trunk's early layers (items on a belt, blurred, under other lamps are not what
ImageNet's filters were tuned for), which cached features cannot change. This stage trains them:

1. Base: the recipe's ``.keras``, or an int8 model with every weight dequantized (``models.from_tflite``).
2. Every convolution and dense layer trainable; every batch norm frozen (inference mode: the base's
   statistics, or the identity where ``from_tflite`` folded them into the convolutions).
3. Each epoch, every train photo once, drawn anew as its clean view (``--clean-share``) or a belt view that no
   epoch repeats (``models.augment``: the edge's own crop), in a seeded order; views are made on a worker
   thread while the model trains. Adam at ``--lr`` with cosine decay, the recipe's label smoothing and class
   weights; bfloat16 compute where the CPU has it (``--precision``), float32 weights.
4. Before → after, from pixels: top-1 on val photos and val belt views (the held-out belts); the tuned model is
   saved (float32) only when it is better on val belt views and not more than ``--max-photo-drop`` worse on val
   photos; else the stage exits 1 and the base stays the recipe's model.
5. The tuned model's test figures (photos and belt views, from pixels; probabilities saved beside it, as
   ``models.train`` does) replace the float ones in the training record (``--metrics``), which also gets a
   ``tune_trunk`` section (before → after, recipe, time, machine) for the model card.

On the 2-core development machine, ~95 ms a view in bfloat16 (AVX-512 BF16): 12 minutes an epoch.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edge.images import read_rgb
from models.architecture import preprocess
from models.features import BELT_EVAL_SEED, ViewSpec, evaluation_views
from models.metrics import machine, summary
from models.split import Entry, read_manifest, select
from models.train import DEFAULT_OUT, TEST_KEYS, class_weights, predict_pixels, test_figures

logger = logging.getLogger("models.tune_trunk")

VIEW_INDEX = 300  # belt-view indices of this stage: epoch e draws belt view VIEW_INDEX + e (train uses 100+)


def epoch_rows(n: int, epoch: int, seed: int, clean_share: float) -> list[tuple[int, bool]]:
    """(photo index, clean?) for every train photo once, in a seeded order."""
    rng = np.random.default_rng([seed, VIEW_INDEX, epoch])
    clean = rng.random(n) < clean_share
    return [(int(i), bool(clean[i])) for i in rng.permutation(n)]


def batch_of(data: Path, entries: list[Entry], rows: list[tuple[int, bool]], epoch: int, seed: int) -> np.ndarray:
    """The uint8 views of one batch of rows."""
    specs = {kind: ViewSpec("train", kind, VIEW_INDEX + epoch, seed) for kind in ("clean", "belt")}
    return np.stack([specs["clean" if clean else "belt"].of(read_rgb(data / entries[i].path), i) for i, clean in rows])


def unfreeze(model) -> None:
    """Every layer trainable except batch norms (kept in inference mode).

    Every layer first, then the batch norms: on some backends (JAX) setting ``trainable`` on ``resnet50``, a layer
    of the model, sets it on every layer inside, which would make its batch norms trainable again, and they would
    normalise by each batch's statistics."""
    import keras

    layers = [model, *model.layers, *model.get_layer("resnet50").layers]
    for layer in layers:
        layer.trainable = True
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def val_figures(model, data: Path, entries: list[Entry], truth: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Top-1 / weighted F1 of the model on val photos and val belt views, from pixels."""
    out = {}
    for name, spec in (("photos", ViewSpec("val", "clean")), ("belt", ViewSpec("val", "belt", 0, BELT_EVAL_SEED))):
        figures = summary(truth, predict_pixels(model, data, entries, spec, batch=64).argmax(1), labels)
        out[name] = {k: round(float(figures[k]), 4) for k in ("top1", "weighted_f1")}
    return out


def accepted(before: dict[str, Any], after: dict[str, Any], max_photo_drop: float) -> bool:
    """Whether the tuned model replaces the base: better on val belt views, val photos within the allowed drop."""
    return after["belt"]["top1"] > before["belt"]["top1"] and \
        after["photos"]["top1"] >= before["photos"]["top1"] - max_photo_drop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=DEFAULT_OUT, help="the recipe's .keras, or an int8 .tflite")
    parser.add_argument("--out", type=Path, required=True, help="the tuned .keras")
    parser.add_argument("--metrics", type=Path, default=Path("models/float_test_metrics.json"),
                        help="training record (models.train's) to add this stage's figures to")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/garbage12"), help="dataset root")
    parser.add_argument("--manifest", type=Path, default=Path("models/split.csv"), help="split manifest")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (every train photo once each)")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--lr", type=float, default=2e-5, help="initial Adam learning rate (cosine decay to 1%%)")
    parser.add_argument("--clean-share", type=float, default=0.5, help="share of clean views, the rest belt views")
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing of the loss")
    parser.add_argument("--class-weight-power", type=float, default=0.5, help="class weights' power (as train)")
    parser.add_argument("--precision", choices=("mixed_bfloat16", "float32"), default="mixed_bfloat16",
                        help="compute precision while training")
    parser.add_argument("--max-photo-drop", type=float, default=0.003, help="largest val photo top-1 drop accepted")
    parser.add_argument("--seed", type=int, default=0, help="seed of order, views and dropout")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import keras

    from models.architecture import build_model
    from models.finetune import load_base

    keras.utils.set_random_seed(args.seed)
    entries = read_manifest(args.manifest)
    labels = sorted({e.label for e in entries})
    train, val, test = (select(entries, split) for split in ("train", "val", "test"))
    y_train, y_val, y_test = (np.array([labels.index(e.label) for e in es]) for es in (train, val, test))

    base = load_base(args.base)
    before = val_figures(base, args.data, val, y_val, labels)
    logger.info("before: %s", before)
    keras.mixed_precision.set_global_policy(args.precision)
    model = build_model(None, num_classes=len(labels))  # the same layers, computing in args.precision
    model.set_weights(base.get_weights())
    unfreeze(model)
    steps = math.ceil(len(train) / args.batch)
    schedule = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=args.epochs * steps, alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing))
    weights = class_weights(y_train, len(labels), args.class_weight_power)
    onehot = np.eye(len(labels), dtype=np.float32)
    started = time.monotonic()
    with ThreadPoolExecutor(1) as worker:
        for epoch in range(args.epochs):
            rows = epoch_rows(len(train), epoch, args.seed, args.clean_share)
            batches = [rows[i : i + args.batch] for i in range(0, len(rows), args.batch)]
            pending = worker.submit(batch_of, args.data, train, batches[0], epoch, args.seed)
            losses = []
            for step, chunk in enumerate(batches):
                pixels = pending.result()
                if step + 1 < len(batches):
                    pending = worker.submit(batch_of, args.data, train, batches[step + 1], epoch, args.seed)
                y = y_train[[i for i, _ in chunk]]
                losses.append(float(model.train_on_batch(preprocess(pixels), onehot[y], sample_weight=weights[y])))
                if step % 50 == 0:
                    logger.info("epoch %d step %d/%d loss %.4f (%.0f s)", epoch + 1, step, len(batches),
                                np.mean(losses[-50:]), time.monotonic() - started)
            logger.info("epoch %d: mean loss %.4f (%.0f s)", epoch + 1, np.mean(losses), time.monotonic() - started)
    seconds = time.monotonic() - started

    keras.mixed_precision.set_global_policy("float32")
    tuned = build_model(None, num_classes=len(labels))
    tuned.set_weights(model.get_weights())
    after = val_figures(tuned, args.data, val, y_val, labels)
    logger.info("after %d epochs (%.0f s): %s (before: %s)", args.epochs, seconds, after, before)
    report = {"before": before, "after": after, "seconds": round(seconds), "machine": machine(),
              "recipe": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    if not accepted(before, after, args.max_photo_drop):
        logger.error("the tuned trunk is not better on val belt views without losing val photos: not saved "
                     "(before %s, after %s)", before, after)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tuned.save(args.out)
    logger.info("saved %s", args.out)
    record = json.loads(args.metrics.read_text(encoding="utf-8")) if args.metrics.is_file() else {}
    record["tune_trunk"] = report
    for spec in evaluation_views("test"):
        record[TEST_KEYS[spec.kind]] = test_figures(tuned, args, test, y_test, labels, spec)
    args.metrics.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s", args.metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
