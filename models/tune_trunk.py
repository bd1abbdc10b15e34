"""Whole-trunk fine-tuning: the recipe's model with every convolution of ResNet-50 trainable, on fresh views.

    python -m models.tune_trunk --base models/garbage12_resnet50_int8.tflite --out TUNED.keras

``models.train`` trains only ``conv5_block3`` and the head on cached features of the frozen ImageNet trunk. Its
belt-view errors come from the trunk's early layers (items on a belt, blurred, under other lamps are not what
ImageNet's filters were tuned for), which cached features cannot change. This stage trains them:

1. Base: the recipe's ``.keras``, or an int8 model with every weight dequantized (``models.from_tflite``).
2. Every convolution and dense layer trainable; every batch norm frozen (inference mode: the base's
   statistics, or the identity where ``from_tflite`` folded them into the convolutions).
3. Each epoch, every train photo once, drawn anew as its clean view (``--clean-share``), an augmented photo view
   (``--photo-share``) or a belt view (the rest; ``models.augment``: the edge's own crop), none repeated across
   epochs, in a seeded order; views are made while the model trains, by ``--workers`` processes (1: a thread).
   Adam with a warm-up then cosine decay to 1 % of ``--lr``, over ``--epochs`` or over ``--minutes`` of
   training (the epochs then are what the time allows); the recipe's label smoothing and class weights;
   bfloat16 compute where the machine has it (``--precision``), float32 weights.
4. Before → after, from pixels: top-1 on val photos and on val belt views (the val photos on ``--belt-draws``
   draws of the held-out belts, pooled), and the photos gained and lost (right on more, or fewer, of their
   views); the tuned model is saved (float32) only when it is better on val belt views by more than chance (a
   one-sided sign test on those photos, ``p < --significance``) and not more than ``--max-photo-drop`` worse on
   val photos; else the stage exits 1 and the base stays the recipe's model. One draw judged too little: two
   stages kept on the first draw's views (p 0.012 and 0.043) gained nothing on the other draws of the same
   photos, nor on the test split.
5. The tuned model's test figures (photos and belt views, from pixels; probabilities saved beside it, as
   ``models.train`` does) replace the float ones in the training record (``--metrics``), and the stage (before
   → after, recipe, time, machine, the sha256 of its base and of the tuned model) goes into the record's
   ``tune_trunk`` list for the model card: after the last stage when it started from that stage's model (its
   ``.keras``, or an int8 model whose card names it as source), else as the first of a new list.

**On a machine with an accelerator** (Keras on JAX or PyTorch) that holds neither the dataset nor this
workstation's tools, train there and judge here: ``--pack`` takes the train photos from one compact file
(``models.photo_pack``) and ``--delta DIR`` writes the weights' change from the base (``models.weight_delta``,
float16 parts) instead of steps 4-5; back here, ``--apply DIR`` rebuilds the tuned model from the same base and
runs steps 4-5:

    python -m models.photo_pack --split train --out pack/train.npz                      # here
    KERAS_BACKEND=jax python -m models.tune_trunk --base models/garbage12_resnet50_int8.tflite \
        --pack pack/train.npz --delta OUT --minutes 7 --workers 15 --batch 64 --lr 3e-5 \
        --clean-share 0.25 --photo-share 0.25                                          # there
    python -m models.tune_trunk --base models/garbage12_resnet50_int8.tflite --apply OUT --out TUNED.keras  # here

On the 2-core development machine, ~95 ms a view in bfloat16 (AVX-512 BF16): 12 minutes an epoch. On an H200
with 16 cores (2026-12-04), ~520 views a second, bound by the 15 processes making belt views.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import time
from collections.abc import Iterator
from multiprocessing.pool import AsyncResult, Pool, ThreadPool
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.images import read_rgb
from edge.model_card import card_path, sha256_of
from models.architecture import preprocess
from models.augment import ViewKind, view
from models.features import BELT_EVAL_SEED, ViewSpec, evaluation_views
from models.metrics import machine, summary
from models.photo_pack import PhotoPack
from models.split import Entry, dataset_arguments, read_manifest, select
from models.train import DEFAULT_OUT, TEST_KEYS, class_weights, predict_pixels, test_figures

logger = logging.getLogger("models.tune_trunk")

VIEW_INDEX = 300  # belt-view indices of this stage: epoch e draws belt view VIEW_INDEX + e (train uses 100+)
WARMUP = 0.05  # share of the training (steps, or time) over which the learning rate rises from 0
Row = tuple[int, ViewKind]


class Photos(Protocol):
    """Train photos by index: a dataset folder (``FolderPhotos``) or a pack (``models.photo_pack.PhotoPack``)."""

    def photo(self, index: int) -> np.ndarray: ...


class FolderPhotos:
    """The photos of ``entries`` under the dataset root ``data``."""

    def __init__(self, data: Path, entries: list[Entry]) -> None:
        self.data, self.entries = data, entries

    def photo(self, index: int) -> np.ndarray:
        return read_rgb(self.data / self.entries[index].path)


def epoch_rows(n: int, epoch: int, seed: int, clean_share: float, photo_share: float = 0.0) -> list[Row]:
    """(photo index, view kind) for every train photo once, in a seeded order."""
    rng = np.random.default_rng([seed, VIEW_INDEX, epoch])
    draw = rng.random(n)
    kinds: list[ViewKind] = ["clean" if d < clean_share else "photo" if d < clean_share + photo_share else "belt"
                             for d in draw]
    return [(int(i), kinds[i]) for i in rng.permutation(n)]


_PHOTOS: list[Photos] = []  # the view pool's photos (set in each worker by ``view_pool``)


def _hold(photos: Photos) -> None:
    _PHOTOS[:] = [photos]


def view_pool(photos: Photos, workers: int) -> Pool:
    """Where views are made: a thread (``workers`` 1), else that many processes, forked now (before Keras)."""
    if workers <= 1:
        return ThreadPool(1, _hold, (photos,))
    return multiprocessing.get_context("fork").Pool(workers, _hold, (photos,))


def batch_of(rows: list[Row], epoch: int, seed: int) -> np.ndarray:
    """The uint8 views of one batch of rows, from the view pool's photos."""
    return np.stack([view(_PHOTOS[0].photo(i), kind, seed, VIEW_INDEX + epoch, i) for i, kind in rows])


def learning_rate(peak: float, progress: float) -> float:
    """Linear warm-up over the first ``WARMUP`` of training, then cosine decay to 1 % of ``peak``."""
    if progress < WARMUP:
        return peak * progress / WARMUP
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - WARMUP) / (1 - WARMUP)))))


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


def val_predictions(model, data: Path, entries: list[Entry], belt_draws: int) -> dict[str, np.ndarray]:
    """The model's top-1 class of each val photo (``photos``) and of the val photos on ``belt_draws`` draws of the
    held-out belts, one draw after the other (``belt``), from pixels."""
    def top1(spec: ViewSpec) -> np.ndarray:
        return predict_pixels(model, data, entries, spec, batch=64).argmax(1)

    belts = [top1(ViewSpec("val", "belt", draw, BELT_EVAL_SEED)) for draw in range(belt_draws)]
    return {"photos": top1(ViewSpec("val", "clean")), "belt": np.concatenate(belts)}


def val_figures(predictions: dict[str, np.ndarray], truth: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Top-1 / weighted F1 on val photos and val belt views (``truth``: the val photos' classes; the predictions
    hold one or more views of every photo, one draw after the other, as in ``paired``)."""
    out = {}
    for name, predicted in predictions.items():
        views = predicted.reshape(-1, len(truth))  # a row a draw: a length that is not whole draws fails here
        figures = summary(np.tile(truth, len(views)), views.ravel(), labels)
        out[name] = {k: round(float(figures[k]), 4) for k in ("top1", "weighted_f1")}
    return out


def paired(truth: np.ndarray, before: np.ndarray, after: np.ndarray) -> dict[str, Any]:
    """Photos the tuned model gets right on more of their views than the base (gained), on fewer (lost), and the
    one-sided sign test's p: how likely that many gains or more would be if each such photo were a coin toss.
    ``before`` and ``after`` hold one or more views of every photo of ``truth``, one draw after the other (the
    views of one photo are not independent, so each photo is one toss)."""
    def right(predicted: np.ndarray) -> np.ndarray:
        return (predicted.reshape(-1, len(truth)) == truth).sum(axis=0)

    gained = int(np.count_nonzero(right(after) > right(before)))
    lost = int(np.count_nonzero(right(after) < right(before)))
    n = gained + lost
    p = sum(math.comb(n, k) for k in range(gained, n + 1)) / 2 ** n
    return {"gained": gained, "lost": lost, "p": round(p, 4)}


def accepted(before: dict[str, Any], after: dict[str, Any], max_photo_drop: float, alpha: float) -> bool:
    """Whether the tuned model replaces the base: better on val belt views by more than chance (sign test
    ``p < alpha``), val photos within the allowed drop."""
    return after["belt"]["top1"] > before["belt"]["top1"] and after["belt"]["p"] < alpha and \
        after["photos"]["top1"] >= before["photos"]["top1"] - max_photo_drop


def batch_size(n: int, batch: int) -> int:
    """The batch size for ``n`` photos: every batch is full (a last, smaller one would be compiled anew), so an
    epoch leaves out its last ``n % batch`` photos, others each epoch."""
    return min(n, batch)


def batches(pool: Pool, n: int, args: argparse.Namespace) -> Iterator[tuple[int, list[Row], np.ndarray]]:
    """(epoch, rows, views) of every full batch, epoch after epoch, made ``2 × workers`` batches ahead."""
    size = batch_size(n, args.batch)

    def planned() -> Iterator[tuple[int, list[Row]]]:
        epoch = 0
        while True:
            rows = epoch_rows(n, epoch, args.seed, args.clean_share, args.photo_share)
            for start in range(0, n - size + 1, size):
                yield epoch, rows[start: start + size]
            epoch += 1

    plan = planned()
    pending: list[tuple[int, list[Row], AsyncResult[np.ndarray]]] = []
    while True:
        while len(pending) < 2 * max(1, args.workers):
            epoch, rows = next(plan)
            pending.append((epoch, rows, pool.apply_async(batch_of, (rows, epoch, args.seed))))
        epoch, rows, views = pending.pop(0)
        yield epoch, rows, views.get()


def train(model, pool: Pool, y: np.ndarray, classes: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``model`` in place for ``args.epochs`` or ``args.minutes``; returns what the run did."""
    import keras

    steps_per_epoch = len(y) // batch_size(len(y), args.batch)
    optimizer = keras.optimizers.Adam(0.0)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing))
    weights = class_weights(y, classes, args.class_weight_power)
    onehot = np.eye(classes, dtype=np.float32)
    budget = args.minutes * 60 if args.minutes else None
    started = clock = time.monotonic()  # with --minutes, the clock starts after the first step (compilation)
    step, views, epochs, losses = 0, 0, 0, []
    for epoch, rows, pixels in batches(pool, len(y), args):
        progress = (time.monotonic() - clock) / budget if budget else step / (args.epochs * steps_per_epoch)
        if progress >= 1:
            break
        optimizer.learning_rate.assign(learning_rate(args.lr, progress))
        index = np.array([i for i, _ in rows])
        losses.append(float(model.train_on_batch(preprocess(pixels), onehot[y[index]],
                                                 sample_weight=weights[y[index]])))
        if step == 0 and budget:
            clock = time.monotonic()
        step, views, epochs = step + 1, views + len(rows), epoch + 1
        if step % 50 == 0:
            logger.info("epoch %d step %d: %.2f epochs, loss %.4f, %.0f views/s (%.0f s)", epoch + 1, step,
                        views / len(y), np.mean(losses[-50:]), views / (time.monotonic() - started),
                        time.monotonic() - started)
    seconds = time.monotonic() - started
    logger.info("trained %d steps, %.1f epochs, in %.0f s: last loss %.4f", step, views / len(y), seconds,
                np.mean(losses[-50:]))
    return {"steps": step, "epochs": round(views / len(y), 2), "epochs_started": epochs, "seconds": round(seconds),
            "views_per_second": round(views / seconds, 1), "last_loss": round(float(np.mean(losses[-50:])), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=DEFAULT_OUT, help="the recipe's .keras, or an int8 .tflite")
    parser.add_argument("--out", type=Path, help="the tuned .keras (not with --delta)")
    parser.add_argument("--metrics", type=Path, default=Path("models/float_test_metrics.json"),
                        help="training record (models.train's) to add this stage's figures to")
    dataset_arguments(parser)
    parser.add_argument("--pack", type=Path, help="train photos from this pack (models.photo_pack), not --data")
    parser.add_argument("--delta", type=Path, help="write the weights' change to this folder, no evaluation")
    parser.add_argument("--apply", type=Path, help="no training: the base plus the change in this folder")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (every train photo once each)")
    parser.add_argument("--minutes", type=float, help="train this long instead of --epochs")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--lr", type=float, default=2e-5, help="peak Adam learning rate (warm-up, cosine to 1%%)")
    parser.add_argument("--clean-share", type=float, default=0.5, help="share of clean views")
    parser.add_argument("--photo-share", type=float, default=0.0, help="share of augmented photo views")
    parser.add_argument("--workers", type=int, default=1, help="processes making views (1: a thread)")
    parser.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing of the loss")
    parser.add_argument("--class-weight-power", type=float, default=0.5, help="class weights' power (as train)")
    parser.add_argument("--precision", choices=("mixed_bfloat16", "float32"), default="mixed_bfloat16",
                        help="compute precision while training")
    parser.add_argument("--belt-draws", type=int, default=3,
                        help="draws of held-out belts the val photos are judged on (default 3)")
    parser.add_argument("--max-photo-drop", type=float, default=0.003, help="largest val photo top-1 drop accepted")
    parser.add_argument("--significance", type=float, default=0.05,
                        help="largest sign-test p of the val belt-view gain accepted")
    parser.add_argument("--seed", type=int, default=0, help="seed of order, views and dropout")
    args = parser.parse_args(argv)
    if (args.out is None) == (args.delta is None):
        parser.error("give --out (train or --apply, then judge here) or --delta (train only)")
    if args.belt_draws < 1:
        parser.error("--belt-draws: at least 1")
    if args.apply and (args.delta or args.pack):
        parser.error("--apply judges a change made elsewhere: no --delta or --pack")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    entries = read_manifest(args.manifest) if not args.pack else []
    pack = PhotoPack(args.pack) if args.pack else None
    labels = pack.label_names if pack else sorted({e.label for e in entries})
    train_entries = select(entries, "train")
    photos: Photos = pack or FolderPhotos(args.data, train_entries)
    y_train = pack.labels if pack else np.array([labels.index(e.label) for e in train_entries])
    with view_pool(photos, args.workers if not args.apply else 1) as pool:  # processes forked before Keras
        return tuned_model(pool, y_train, labels, entries, args)


def tuned_model(pool: Pool, y_train: np.ndarray, labels: list[str], entries: list[Entry],
                args: argparse.Namespace) -> int:
    """Train (or ``--apply``), then write the change (``--delta``) or judge and save (``--out``)."""
    import keras

    from models import weight_delta
    from models.architecture import build_model
    from models.finetune import load_base

    keras.utils.set_random_seed(args.seed)
    base = load_base(args.base)
    base_weights = [np.asarray(w, np.float32) for w in base.get_weights()]
    report: dict[str, Any] = {"recipe": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                              "machine": machine()}
    if args.apply:
        tuned = build_model(None, num_classes=len(labels))
        tuned.set_weights(weight_delta.apply(base_weights, args.apply))
        run = args.apply / "run.json"
        report["run"] = json.loads(run.read_text(encoding="utf-8")).get("run") if run.is_file() else None
    else:
        keras.mixed_precision.set_global_policy(args.precision)
        model = build_model(None, num_classes=len(labels))  # the same layers, computing in args.precision
        model.set_weights(base_weights)
        unfreeze(model)
        machine_there = {**report["machine"], "keras_backend": keras.backend.backend()}
        report["run"] = {**train(model, pool, y_train, len(labels), args), "recipe": report["recipe"],
                         "machine": machine_there}  # what --apply on another machine keeps of this run
        keras.mixed_precision.set_global_policy("float32")
        tuned = build_model(None, num_classes=len(labels))
        tuned.set_weights(model.get_weights())
    if args.delta:
        paths = weight_delta.save(tuned.get_weights(), base_weights, args.delta)
        args.delta.joinpath("run.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        logger.info("wrote the change from the base to %s (%d parts)", args.delta, len(paths))
        return 0
    return judged(base, tuned, report, args, entries, labels)


def base_digest(base: Path) -> str:
    """What a stage started from: the sha256 of a ``.keras``, or of the ``.keras`` an int8 model was converted
    from (its card's ``source.sha256``; the model's own where it has no card)."""
    card = card_path(base)
    if base.suffix == ".tflite" and card.is_file():
        source = json.loads(card.read_text(encoding="utf-8")).get("source", {}).get("sha256")
        if source:
            return str(source)
    return sha256_of(base)


def chained(stages: list[dict[str, Any]], stage: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's tuning stages with ``stage``: after the last one when it started from that one's model, else
    alone (it started from the recipe's model, or from one the record does not know)."""
    if stages and stages[-1].get("sha256") == stage["base_sha256"]:
        return [*stages, stage]
    return [stage]


def judged(base, tuned, report: dict[str, Any], args: argparse.Namespace, entries: list[Entry], labels: list[str]
           ) -> int:
    """Steps 4-5: before → after on val, the tuned model saved and its test figures recorded if accepted."""
    val, test = select(entries, "val"), select(entries, "test")
    y_val, y_test = (np.array([labels.index(e.label) for e in es]) for es in (val, test))
    before, after = (val_predictions(model, args.data, val, args.belt_draws) for model in (base, tuned))
    report["before"] = val_figures(before, y_val, labels)
    report["after"] = val_figures(after, y_val, labels)
    report["belt_draws"] = args.belt_draws
    for name in after:
        report["after"][name].update(paired(y_val, before[name], after[name]))
    logger.info("val before: %s, after: %s", report["before"], report["after"])
    if not accepted(report["before"], report["after"], args.max_photo_drop, args.significance):
        logger.error("the tuned trunk is not better on val belt views (beyond chance: sign test p < %g) without "
                     "losing val photos: not saved (before %s, after %s)", args.significance, report["before"],
                     report["after"])
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tuned.save(args.out)
    logger.info("saved %s", args.out)
    record = json.loads(args.metrics.read_text(encoding="utf-8")) if args.metrics.is_file() else {}
    stage = {**report, "base_sha256": base_digest(args.base), "sha256": sha256_of(args.out)}
    record["tune_trunk"] = chained(record.get("tune_trunk", []), stage)
    logger.info("tuning stage %d of the record", len(record["tune_trunk"]))
    for spec in evaluation_views("test"):
        record[TEST_KEYS[spec.kind]] = test_figures(tuned, args, test, y_test, labels, spec)
    args.metrics.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %s", args.metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
