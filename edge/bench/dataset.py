"""The benchmark's images: a folder with one sub-folder per class (photos directly in it count too, without a
truth), optionally narrowed to one split of a manifest (``path,label,split``, paths relative to the folder),
optionally capped at N images taken round robin over the classes."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

from edge.errors import ConfigError, ImageError
from edge.images import labelled_images, list_images


@dataclass(frozen=True)
class BenchImage:
    """One image file: its path, its path relative to the images folder, and its truth (sub-folder name)."""

    path: Path
    relative: str
    truth: str | None


@dataclass(frozen=True)
class ImageSet:
    """The images a benchmark runs on, and how they were chosen."""

    root: Path
    images: tuple[BenchImage, ...]
    selection: dict[str, object]


def collect(root: Path, manifest: Path | None = None, split: str | None = None,
            max_images: int | None = None) -> ImageSet:
    """The images under ``root``; ImageError if there are none, ConfigError for a bad manifest."""
    if not root.is_dir():
        raise ImageError(f"images folder not found: {root}")
    images = [BenchImage(p, p.name, None) for p in list_images(root)]
    images += [BenchImage(p, f"{label}/{p.name}", label) for p, label in labelled_images(root)]
    selection: dict[str, object] = {"found": len(images)}
    if manifest is not None:
        wanted = split_paths(manifest, split or "test")
        selection.update(manifest=str(manifest), split=split or "test", listed=len(wanted),
                         missing=len(wanted - {i.relative for i in images}))
        images = [i for i in images if i.relative in wanted]
    if max_images is not None and len(images) > max_images:
        images = round_robin(images, max_images)
        selection["max_images"] = max_images
    if not images:
        where = f" of split {selection['split']!r} of {manifest}" if manifest is not None else ""
        raise ImageError(f"no images{where} in {root} (expected .jpg/.png/... files, one sub-folder per class)")
    selection["selected"] = len(images)
    return ImageSet(root, tuple(images), selection)


def split_paths(manifest: Path, split: str) -> set[str]:
    """Relative paths of the manifest's rows in ``split``."""
    try:
        with manifest.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise ConfigError(f"split manifest not found: {manifest}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"split manifest unreadable: {manifest}: {exc}") from None
    if not rows or not {"path", "split"} <= set(rows[0]):
        raise ConfigError(f"{manifest}: expected a CSV with columns path,label,split")
    splits = sorted({row["split"] for row in rows})
    if split not in splits:
        raise ConfigError(f"{manifest}: no split {split!r}; it has {', '.join(splits)}")
    return {row["path"] for row in rows if row["split"] == split}


def round_robin(images: list[BenchImage], count: int) -> list[BenchImage]:
    """``count`` images taken in turn from each class, each class in a fixed pseudo-random (sha256) order."""
    by_truth: dict[str | None, list[BenchImage]] = {}
    for image in images:
        by_truth.setdefault(image.truth, []).append(image)
    queues = [sorted(group, key=lambda i: hashlib.sha256(i.relative.encode()).hexdigest())
              for _, group in sorted(by_truth.items(), key=lambda kv: kv[0] or "")]
    taken = [image for turn in zip_longest(*queues) for image in turn if image is not None][:count]
    return sorted(taken, key=lambda i: i.relative)
