"""The feature cache: ``conv5_block2_out`` of every image view, computed once, float16 on disk.

The frozen part of the network (everything before ``conv5_block3``) sees each view of each photo once; its
output (7×7×2048) is kept as a float16 ``.npy`` per (split, kind, view, seed) in a cache folder outside the
repo. Kinds are those of ``models.augment``: ``clean``, ``photo`` (augmented photo), ``belt`` (belt frame →
item crop).
A file's name carries a digest of what it depends on (the split's file list, the trunk's weights themselves,
the feature layer, the augmentation ranges), so a rerun reuses it and a changed input (other ImageNet weights,
a base whose trunk was tuned) gets a new file. Extraction writes ``NAME.part.npy`` with a progress file and
resumes after an interruption.

    python -m models.features --data ../shared/data/garbage12 --weights W.h5
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edge.images import read_rgb
from models.augment import DEFAULT_BELT, AugmentConfig, BeltConfig, ViewKind, view
from models.split import Entry, dataset_arguments, read_manifest, select

logger = logging.getLogger(__name__)

DEFAULT_CACHE = Path.home() / ".cache" / "smartbin" / "features"
BATCH = 32
BELT_EVAL_SEED = 1_000_003  # the belt-view val/test sets: belts that no training view uses
BELT_VIEW_INDEX = 100  # belt views are numbered from here, apart from the photo views


@dataclasses.dataclass(frozen=True)
class ViewSpec:
    """One cached array: a split's photos in one view."""

    split: str
    kind: ViewKind
    index: int = 0
    seed: int = 0
    belt: BeltConfig = DEFAULT_BELT  # the ranges of a belt view

    @property
    def tag(self) -> str:
        return "clean" if self.kind == "clean" else f"{self.kind}{self.index}-s{self.seed}"

    def of(self, photo: np.ndarray, image_index: int) -> np.ndarray:
        """This view of a photo, the ``image_index``-th of its split."""
        return view(photo, self.kind, self.seed, self.index, image_index, self.belt)


def evaluation_views(split: str) -> list[ViewSpec]:
    """A split's evaluation views: clean photos and the same photos on held-out belts."""
    return [ViewSpec(split, "clean"), ViewSpec(split, "belt", 0, BELT_EVAL_SEED)]


def view_plan(photo_views: int, belt_views: int, seed: int) -> list[ViewSpec]:
    """What the recipe caches: val clean and on held-out belts, train clean + belt + augmented photo views.
    The test split is not cached: it is evaluated once, from its photos, by the full model."""
    evaluation = evaluation_views("val")
    train = [ViewSpec("train", "clean")]
    train += [ViewSpec("train", "belt", BELT_VIEW_INDEX + i, seed) for i in range(belt_views)]
    train += [ViewSpec("train", "photo", i, seed) for i in range(1, photo_views + 1)]
    return evaluation + train


def trunk_digest(trunk) -> str:
    """What identifies the frozen trunk in a cache key: a digest of its weights."""
    digest = hashlib.sha256()
    for array in trunk.get_weights():
        digest.update(np.ascontiguousarray(array, np.float32).tobytes())
    return digest.hexdigest()[:16]


def cache_name(entries: list[Entry], spec: ViewSpec, trunk: str) -> str:
    """File stem of one view's feature array, with a digest of its inputs (``trunk``: ``trunk_digest``)."""
    from models.architecture import FEATURE_LAYER

    configs: dict[str, str | AugmentConfig | BeltConfig] = {"clean": "clean", "photo": AugmentConfig(),
                                                             "belt": spec.belt}
    config = configs[spec.kind]
    key = {
        "paths": [e.path for e in entries],
        "trunk": trunk,
        "layer": FEATURE_LAYER,
        "augment": config if isinstance(config, str) else dataclasses.asdict(config),
        "kind": spec.kind,
        "view": spec.index,
        "seed": spec.seed,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return f"{spec.split}-{spec.tag}-{digest}"


def _batches(data: Path, entries: list[Entry], start: int, spec: ViewSpec) -> Iterator[np.ndarray]:
    """uint8 batches of views from ``start`` on, the next batch decoded while the current one runs."""

    def load(first: int) -> np.ndarray:
        stop = min(first + BATCH, len(entries))
        return np.stack([spec.of(read_rgb(data / entries[i].path), i) for i in range(first, stop)])

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, start) if start < len(entries) else None
        for first in range(start, len(entries), BATCH):
            batch = pending.result() if pending else load(first)
            nxt = first + BATCH
            pending = pool.submit(load, nxt) if nxt < len(entries) else None
            yield batch


def extract(
    trunk,
    data: Path,
    entries: list[Entry],
    out: Path,
    spec: ViewSpec,
) -> np.ndarray:
    """Compute (or resume) the features of one view of ``entries`` into ``out`` (.npy); return them mapped."""
    from models.architecture import FEATURE_SHAPE, preprocess

    if out.is_file():
        return np.load(out, mmap_mode="r")
    part, progress = out.with_suffix(".part.npy"), out.with_suffix(".part.json")
    shape = (len(entries), *FEATURE_SHAPE)
    state = json.loads(progress.read_text()) if part.is_file() and progress.is_file() else {"done": 0, "seconds": 0.0}
    done, spent = int(state["done"]), float(state.get("seconds", 0.0))
    array = np.lib.format.open_memmap(part, mode="r+" if done else "w+", dtype=np.float16, shape=shape)
    started, last_log, resumed_at = time.monotonic(), 0.0, done
    for batch in _batches(data, entries, done, spec):
        features = trunk.predict_on_batch(preprocess(batch))
        array[done : done + len(batch)] = np.asarray(features, np.float16)
        done += len(batch)
        if time.monotonic() - last_log > 30 or done == len(entries):
            array.flush()
            progress.write_text(json.dumps({"done": done, "seconds": spent + time.monotonic() - started}))
            rate = (done - resumed_at) / max(time.monotonic() - started, 1e-9)
            last_log = time.monotonic()
            logger.info("%s: %d/%d, %.1f img/s, ETA %.0f s", out.name, done, len(entries), rate,
                        (len(entries) - done) / max(rate, 1e-9))
    array.flush()
    del array
    seconds = spent + time.monotonic() - started
    out.with_suffix(".json").write_text(json.dumps({"images": len(entries), "seconds": round(seconds, 1)}))
    part.rename(out)
    progress.unlink(missing_ok=True)
    return np.load(out, mmap_mode="r")


def extraction_seconds(features: Iterable[np.ndarray]) -> float:
    """Total seconds the extraction of these cached arrays (``feature_set``'s, mapped) took, as recorded beside
    their files."""
    files = [getattr(array, "filename", None) for array in features]
    records = [Path(name).with_suffix(".json") for name in files if name]
    return sum(json.loads(record.read_text())["seconds"] for record in records if record.is_file())


def feature_set(
    model,
    data: Path,
    entries: list[Entry],
    cache: Path,
    plan: list[ViewSpec],
) -> dict[ViewSpec, np.ndarray]:
    """Features of every view in ``plan``, extracting what is missing; each row in manifest order of its split."""
    from models.architecture import trunk as make_trunk

    cache.mkdir(parents=True, exist_ok=True)
    trunk = make_trunk(model)
    digest = trunk_digest(trunk)
    result: dict[ViewSpec, np.ndarray] = {}
    for spec in plan:
        subset = select(entries, spec.split)
        name = cache_name(subset, spec, digest)
        result[spec] = extract(trunk, data, subset, cache / f"{name}.npy", spec)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dataset_arguments(parser)
    parser.add_argument("--weights", default="imagenet", help="ImageNet weights: 'imagenet' or a .weights.h5 path")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"feature cache (default {DEFAULT_CACHE})")
    parser.add_argument("--photo-views", type=int, default=0, help="augmented photo views per train photo")
    parser.add_argument("--belt-views", type=int, default=2, help="belt views per train photo")
    parser.add_argument("--seed", type=int, default=0, help="augmentation seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from models.architecture import build_model

    started = time.monotonic()
    entries = read_manifest(args.manifest)
    plan = view_plan(args.photo_views, args.belt_views, args.seed)
    feature_set(build_model(args.weights), args.data, entries, args.cache, plan)
    logger.info("features ready in %.0f s", time.monotonic() - started)


if __name__ == "__main__":
    main()
