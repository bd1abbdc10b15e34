"""Fine-tune the shipped model on a site's labelled frames, convert it, and report before → after.

    python -m models.finetune --frames DIR [--base M.keras | M.tflite] [--out M.tflite]

``DIR`` is what ``smartbin frames OUT --labels CSV`` exports: one sub-folder per class of kept frames. The
recipe's trainable layers (``conv5_block3`` + head, ``models.architecture.top``) are trained again, on the
features of the frozen trunk, with the site's frames mixed with the original train split so that the twelve
classes are not forgotten:

1. Base: the recipe's ``.keras`` (``models.train``'s output) where it is the one the bin's model (``--current``)
   was converted from, else that int8 model itself, every weight dequantized (``models.from_tflite``).
   Batch norms stay frozen (inference mode).
2. Site frames: a fixed share (``--held-out``, by a hash of each file's name) is kept aside for the report; the
   rest are model inputs through the edge's own crop for a frame (``edge.preprocess.still_input``), each as is
   and mirrored.
3. Original photos: the train split's cached trunk features (``models.features``: extracted once, ~10 min on
   2 cores, then reused), ``--mix`` photos per site view each epoch, drawn anew every epoch.
4. Training: ``--epochs`` of Adam at ``--lr`` (cosine decay), the recipe's label smoothing.
5. Report, float from features, before → after: top-1 on the held-out site frames and top-1 / weighted F1 on
   the original test split (its cached features).
6. Conversion with the converter's own parity gate (``convert.pipeline``: calibration on the train split,
   validation on the test split), then int8 top-1 on the held-out frames through the edge's classifier for the
   current model and the new one; the card gets a ``fine_tune`` section (site data, figures, recipe) and is
   sealed again. The report is also written as ``OUT.finetune.json``, and the held-out frames are copied to
   ``OUT.held_out/`` (one sub-folder per class).

Install the result on a bin with ``smartbin model install OUT --frames OUT.held_out`` (frames it has not seen:
the install's comparison on the frames it was trained on would flatter it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ImageError, ModelCardError, SmartbinError
from edge.images import labelled_images, read_rgb
from edge.model_card import read_card, sha256_of
from edge.preprocess import still_input
from edge.progress import Progress
from models.features import BELT_VIEW_INDEX, DEFAULT_CACHE, ViewSpec, feature_set
from models.metrics import machine, summary
from models.split import Entry, dataset_arguments, read_manifest, select
from models.train import planned_epochs

logger = logging.getLogger("models.finetune")

WORK = Path.home() / ".cache" / "smartbin"
SHIPPED = Path("models/garbage12_resnet50_int8.tflite")
RECIPE_KERAS = WORK / "garbage12_resnet50.keras"
SIZE = (224, 224)


class FinetuneError(SmartbinError):
    """Bad input to the fine-tune: no frames, unknown labels, a missing base model."""


@dataclass(frozen=True)
class SiteFrames:
    """The site's labelled frames, split into those trained on and those held out for the report."""

    train: list[tuple[Path, int]]
    held_out: list[tuple[Path, int]]

    def counts(self, labels: list[str]) -> dict[str, dict[str, int]]:
        def per_class(items: list[tuple[Path, int]]) -> dict[str, int]:
            found = np.bincount([y for _, y in items], minlength=len(labels))
            return {label: int(n) for label, n in zip(labels, found, strict=True) if n}

        return {"train": per_class(self.train), "held_out": per_class(self.held_out)}


def held_out(path: Path, share: float) -> bool:
    """Whether a frame is kept aside: a stable hash of its class and file name, so reruns agree (salted: the
    split manifest hashes the same names, and the site's frames may all come from one split)."""
    digest = hashlib.sha256(f"site-held-out:{path.parent.name}/{path.name}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def site_frames(folder: Path, labels: list[str], share: float) -> SiteFrames:
    """The labelled frames under ``folder`` (one sub-folder per class); FinetuneError on unknown classes."""
    if not folder.is_dir():
        raise FinetuneError(f"frames folder not found: {folder}")
    pairs = labelled_images(folder)
    unknown = sorted({label for _, label in pairs} - set(labels))
    if unknown:
        raise FinetuneError(f"{folder}: {', '.join(unknown)} not among the model's labels ({', '.join(labels)})")
    items = [(path, labels.index(label)) for path, label in pairs]
    split = SiteFrames([i for i in items if not held_out(i[0], share)], [i for i in items if held_out(i[0], share)])
    if not split.train or not split.held_out:
        raise FinetuneError(f"{folder}: {len(items)} labelled frames: too few to train on and hold out "
                            f"{share:.0%} (--held-out)")
    return split


def frame_inputs(items: list[tuple[Path, int]], mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs (N×224×224×3 uint8) of readable frames through the edge's crop for a frame, and labels."""
    pixels, truth = [], []
    for path, label in items:
        try:
            rgb = read_rgb(path)
        except ImageError as exc:
            logger.warning("skipped: %s", exc)
            continue
        pixels.append(still_input(np.ascontiguousarray(rgb[:, ::-1]) if mirrored else rgb, SIZE))
        truth.append(label)
    return np.stack(pixels), np.array(truth)


def trunk_features(trunk, pixels: np.ndarray, batch: int = 32, task: str = "site frames' features") -> np.ndarray:
    """``conv5_block2_out`` features (float16, as the cache keeps them) of model inputs."""
    from models.architecture import preprocess

    progress = Progress(task, len(pixels), every=10.0)
    features = []
    for i in range(0, len(pixels), batch):
        features.append(np.asarray(trunk.predict_on_batch(preprocess(pixels[i : i + batch])), np.float16))
        progress.advance(len(features[-1]))
    progress.finish()
    return np.concatenate(features)


def site_features(trunk, items: list[tuple[Path, int]]) -> tuple[list[np.ndarray], np.ndarray]:
    """Trunk features of the site frames trained on, as is and mirrored, and their labels."""
    views = [frame_inputs(items, mirrored) for mirrored in (False, True)]
    return [trunk_features(trunk, pixels) for pixels, _ in views], views[0][1]


def original_features(model, args: argparse.Namespace, pools: dict[str, list[Entry]], labels: list[str]
                      ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cached trunk features (extracted where missing) and labels of each split's pool of original photos."""
    features, truth = {}, {}
    for split, pool in pools.items():
        spec = ViewSpec(split, "clean")
        features[split] = feature_set(model, args.data, pool, args.cache, [spec])[spec]
        truth[split] = np.array([labels.index(e.label) for e in pool])
    return features, truth


def belt_views(model, args: argparse.Namespace, pool: list[Entry]) -> list[np.ndarray]:
    """Cached trunk features of ``args.belt_views`` belt views of the train photos (``models.augment``'s random
    belts, the recipe's own): mixed in with the clean views, they keep what the base learnt of belts (with clean
    views alone, a fine-tune on a few site items lost up to 2.3 pp on the site's other items)."""
    specs = [ViewSpec("train", "belt", BELT_VIEW_INDEX + i, 0) for i in range(args.belt_views)]
    found = feature_set(model, args.data, pool, args.cache, specs)
    return [found[spec] for spec in specs]


def load_base(base: Path):
    """The Keras model to start from: a ``.keras`` as saved, or an int8 ``.tflite``'s trained layers."""
    import keras

    if not base.is_file():
        raise FinetuneError(f"base model not found: {base}")
    if base.suffix == ".tflite":
        from models.from_tflite import keras_from_int8

        return keras_from_int8(base)
    if base.suffix != ".keras":
        raise FinetuneError(f"--base must be a .keras or an int8 .tflite, got {base.name}")
    return keras.saving.load_model(base, compile=False)


def freeze_batch_norms(model) -> None:
    """Batch norms in inference mode during the fine-tune (their statistics stay the base's)."""
    import keras

    for layer in model.get_layer("resnet50").layers + model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def mixed_epochs(site: list[np.ndarray], site_y: np.ndarray, original: list[np.ndarray], original_y: np.ndarray,
                 mix: float, batch: int, seed: int):
    """Each epoch every site frame once (as is or mirrored) and ``mix`` original photos per site frame (a random
    cached view each), drawn anew and shuffled with the seed and the epoch."""
    classes = int(max(site_y.max(), original_y.max())) + 1
    drawn = min(len(original_y), round(mix * len(site_y)))
    sources = ((site, site_y), (original, original_y))

    def plan(epoch: int) -> list[tuple[int, int, int]]:
        rng = np.random.default_rng([seed, epoch])
        rows = [(0, i, int(rng.integers(len(site)))) for i in range(len(site_y))]
        rows += [(1, int(i), int(rng.integers(len(original))))
                 for i in rng.choice(len(original_y), size=drawn, replace=False)]
        return [rows[i] for i in rng.permutation(len(rows))]

    def collate(rows: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        x = np.stack([np.asarray(sources[kind][0][view][i], np.float32) for kind, i, view in rows])
        y = np.array([sources[kind][1][i] for kind, i, _ in rows])
        return x, np.eye(classes, dtype=np.float32)[y]

    return planned_epochs(plan, batch, collate)


def figures(top, features: np.ndarray, truth: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Top-1 and weighted F1 of the trainable part on cached features."""
    pred = np.asarray(top.predict(np.asarray(features, np.float32), batch_size=64, verbose=0)).argmax(1)
    result = summary(truth, pred, labels)
    return {"images": result["images"], "top1": round(result["top1"], 4),
            "weighted_f1": round(result["weighted_f1"], 4)}


def int8_top1(model: Path, pixels: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Top-1 of an int8 model through the edge's classifier on prepared model inputs."""
    from edge.classifier import Classifier

    progress = Progress(f"int8 {model.name}", len(truth), every=10.0)
    right = 0
    with Classifier(model, threads=None) as classifier:
        for p, y in zip(pixels, truth, strict=True):
            right += int(np.argmax(classifier.classify(p).probabilities) == y)
            progress.advance()
    progress.finish()
    return {"model": model.name, "images": len(truth), "top1": round(right / len(truth), 4)}


def every_nth(entries: list, count: int | None) -> list:
    """``count`` entries spread evenly over the list (all of them when ``count`` is None)."""
    return entries if not count or count >= len(entries) else entries[:: math.ceil(len(entries) / count)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m models.finetune", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=Path, required=True, help="labelled site frames (one sub-folder per class)")
    parser.add_argument("--base", type=Path, default=None,
                        help=f"model to start from: .keras, or an int8 .tflite (default {RECIPE_KERAS} if it is the "
                             "one --current was converted from, else --current)")
    parser.add_argument("--current", type=Path, default=SHIPPED,
                        help="the int8 model the bin runs now, for the before figure on site frames")
    parser.add_argument("--out", type=Path, default=WORK / "finetune" / "garbage12_resnet50_site_int8.tflite",
                        help="int8 model to write (its card and report beside it)")
    dataset_arguments(parser)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"feature cache (default {DEFAULT_CACHE})")
    parser.add_argument("--held-out", type=float, default=0.3, help="share of site frames kept for the report")
    parser.add_argument("--mix", type=float, default=3.0, help="original train photos per site frame per epoch")
    parser.add_argument("--belt-views", type=int, default=1,
                        help="belt views of each original photo mixed in beside its clean view (cached; default 1)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs")
    parser.add_argument("--lr", type=float, default=1e-4, help="initial Adam learning rate (cosine decay to 1%%)")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws and of dropout")
    parser.add_argument("--train-photos", type=int, default=None,
                        help="use this many train photos, spread over the split (default all; small = fast)")
    parser.add_argument("--test-photos", type=int, default=None, help="the same for the test split")
    parser.add_argument("--calibration-count", type=int, default=300, help="conversion: calibration images")
    parser.add_argument("--max-drop", type=float, default=2.0, help="conversion: largest int8 top-1 drop in pp")
    args = parser.parse_args(argv)
    if not 0 < args.held_out < 1 or args.mix < 0 or args.epochs < 1 or args.lr <= 0 or args.batch < 1 \
            or args.belt_views < 0:
        parser.error("--held-out must be in (0, 1); --mix, --belt-views ≥ 0; --epochs, --batch ≥ 1; --lr > 0")
    if args.base is None:
        args.base = default_base(args.current)
    return args


def default_base(current: Path, recipe: Path = RECIPE_KERAS) -> Path:
    """The recipe's ``.keras`` where it is the one ``current`` was converted from (its card's ``source.sha256``),
    else ``current`` itself: a ``.keras`` left by another rebuild must not be fine-tuned in the bin's model's place."""
    try:
        source = read_card(current).extra.get("source", {}).get("sha256")
    except ModelCardError:
        return current
    return recipe if recipe.is_file() and source == sha256_of(recipe) else current


def run(args: argparse.Namespace, frames: SiteFrames | None = None) -> dict[str, Any]:
    """The fine-tune, conversion and report; returns the report. ``frames``: the site's frames already split
    (``smartbin learn`` holds out by item); else ``args.frames`` split by a hash of each file's name."""
    import keras
    import tensorflow as tf

    from convert.card import write_sealed
    from convert.pipeline import Options
    from convert.pipeline import run as convert
    from models.architecture import top as make_top
    from models.architecture import trunk as make_trunk

    started = time.monotonic()
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    entries = read_manifest(args.manifest)
    labels = sorted({e.label for e in entries})
    if not args.current.is_file():
        raise FinetuneError(f"--current model not found: {args.current}")
    if args.base.suffix == ".tflite" and list(read_card(args.base).labels) != labels:
        raise FinetuneError(f"{args.base.name}: its labels are not the recipe's ({', '.join(labels)})")
    if frames is None:
        frames = site_frames(args.frames, labels, args.held_out)
    model = load_base(args.base)
    freeze_batch_norms(model)
    trunk, top = make_trunk(model), make_top(model)

    site_x, site_y = site_features(trunk, frames.train)
    held_pixels, held_y = frame_inputs(frames.held_out)
    held_x = trunk_features(trunk, held_pixels)
    logger.info("site frames: %d to train on (2 views each), %d held out", len(site_y), len(held_y))
    pools = {"train": every_nth(select(entries, "train"), args.train_photos),
             "test": every_nth(select(entries, "test"), args.test_photos)}
    cached, y = original_features(model, args, pools, labels)
    original, test_x = [cached["train"], *belt_views(model, args, pools["train"])], cached["test"]
    prepared_s = time.monotonic() - started

    before = {"site_held_out": figures(top, held_x, held_y, labels), "test": figures(top, test_x, y["test"], labels)}
    dataset = mixed_epochs(site_x, site_y, original, y["train"], args.mix, args.batch, args.seed)
    top.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
                    args.lr, decay_steps=args.epochs * len(dataset), alpha=0.01)),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    trained = time.monotonic()
    history = top.fit(dataset, epochs=args.epochs, verbose=0, callbacks=[training_progress(args.epochs * len(dataset))])
    training_s = time.monotonic() - trained
    after = {"site_held_out": figures(top, held_x, held_y, labels), "test": figures(top, test_x, y["test"], labels)}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    keras_path = args.out.with_suffix(".keras")
    model.save(keras_path)
    with PoolFolders(args.data, pools) as folders:
        card = convert(Options(model=keras_path, calibration=folders["train"], out=args.out,
                               count=args.calibration_count, validation=folders["test"], max_drop=args.max_drop))
    int8 = {"before": int8_top1(args.current, held_pixels, held_y), "after": int8_top1(args.out, held_pixels, held_y)}
    report = {
        "frames": str(args.frames),
        "site_frames": frames.counts(labels),
        "base": str(args.base),
        "float_from_features": {"before": before, "after": after},
        "int8_site_held_out": int8,
        "int8_test": {k: card["validation"][k] for k in ("images", "int8_top1_pct", "float_top1_pct", "drop_pp")},
        "recipe": {"epochs": args.epochs, "lr": args.lr, "mix": args.mix, "batch": args.batch, "seed": args.seed,
                   "held_out": args.held_out, "views": ["as is", "mirrored"], "train_photos": len(pools["train"]),
                   "original_views": ["clean", *[f"belt {i}" for i in range(args.belt_views)]],
                   "trained": "conv5_block3 + head, batch norms frozen", "loss": [round(float(v), 4) for v in
                                                                                 history.history["loss"]]},
        "seconds": {"preparation": round(prepared_s, 1), "training": round(training_s, 1),
                    "total": round(time.monotonic() - started, 1)},
        "machine": machine(),
    }
    write_sealed(args.out, {"fine_tune": report})
    copy_frames(frames.held_out, labels, held_out_folder(args.out))
    report_path = args.out.with_suffix(".finetune.json")
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def training_progress(steps: int):  # a Keras callback, built where Keras is imported
    """A Keras callback that shows the training's batches as a progress line with an ETA, and each epoch's loss."""
    import keras

    class Callback(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.progress = Progress("training", steps, every=10.0)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.progress.advance()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logger.info("epoch %d: loss %.4f", epoch + 1, (logs or {}).get("loss", float("nan")))

        def on_train_end(self, logs: dict | None = None) -> None:
            self.progress.finish()

    return Callback()


def held_out_folder(out: Path) -> Path:
    """Where the held-out site frames are copied (one sub-folder per class): ``OUT.held_out/``, for
    ``smartbin model install OUT --frames`` to compare the models on frames the fine-tune did not see."""
    return out.with_name(out.stem + ".held_out")


def copy_frames(items: list[tuple[Path, int]], labels: list[str], folder: Path) -> None:
    """Copy labelled frames into ``folder/<label>/`` (replacing what a previous run left there)."""
    shutil.rmtree(folder, ignore_errors=True)
    for path, label in items:
        (folder / labels[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, folder / labels[label] / path.name)


class PoolFolders:
    """The photos of each split's pool as a temporary labelled folder of links, for the converter to read."""

    def __init__(self, data: Path, pools: dict[str, list]) -> None:
        import tempfile

        self._temp = tempfile.TemporaryDirectory(prefix="finetune-pools-")
        self.folders: dict[str, Path] = {}
        for split, pool in pools.items():
            root = Path(self._temp.name) / split
            for entry in pool:
                link = root / entry.label / Path(entry.path).name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to((data / entry.path).resolve())
            self.folders[split] = root

    def __enter__(self) -> dict[str, Path]:
        return self.folders

    def __exit__(self, *exc: object) -> None:
        self._temp.cleanup()


def lines(report: dict[str, Any]) -> list[str]:
    """The report in a few lines."""
    f, i8 = report["float_from_features"], report["int8_site_held_out"]
    site, test = (f["before"]["site_held_out"], f["after"]["site_held_out"]), (f["before"]["test"], f["after"]["test"])
    counts = report["site_frames"]
    return [
        f"site frames: {sum(counts['train'].values())} trained on, {sum(counts['held_out'].values())} held out",
        f"held-out site frames, float: top-1 {site[0]['top1']:.4f} -> {site[1]['top1']:.4f}",
        f"held-out site frames, int8: {i8['before']['model']} {i8['before']['top1']:.4f} -> "
        f"{i8['after']['model']} {i8['after']['top1']:.4f}",
        f"test split ({test[0]['images']} photos), float: top-1 {test[0]['top1']:.4f} -> {test[1]['top1']:.4f}, "
        f"weighted F1 {test[0]['weighted_f1']:.4f} -> {test[1]['weighted_f1']:.4f}",
        f"test split, int8 (converter's validation): top-1 {report['int8_test']['int8_top1_pct']:.2f} % "
        f"(float {report['int8_test']['float_top1_pct']:.2f} %)",
        f"time: preparation {report['seconds']['preparation']:.0f} s, training {report['seconds']['training']:.0f} s,"
        f" in all {report['seconds']['total']:.0f} s",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        report = run(args)
    except SmartbinError as exc:
        print(f"models.finetune: {exc}", file=sys.stderr)
        return 1
    for line in lines(report):
        print(line)
    held = held_out_folder(args.out)
    print(f"wrote {args.out}, its card, {args.out.with_suffix('.finetune.json').name} and the held-out frames in "
          f"{held.name}/; install with `smartbin model install {args.out.name} --frames {held.name}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
