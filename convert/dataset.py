"""Image folders for calibration and validation: listing, stratified deterministic order, reading.

A folder is either labelled (one sub-folder per class, the sub-folder's name as label) or flat (images
directly inside, no labels). Images go through ``edge.preprocess.prepare``, the crop and resize the edge uses:
as photos (centre square), or, for a share of the calibration images, as the sorter sees items on a belt (the
photo's item on a random belt, ``edge.belt.belt_frame``, then the item crop). Unreadable images are skipped
and counted; the caller decides when too few are left.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convert.errors import ConversionError
from edge.belt import belt_frame
from edge.errors import ImageError
from edge.images import labelled_images, list_images, read_rgb
from edge.preprocess import prepare

Item = tuple[Path, str | None]  # an image file and its label (None in a flat folder)


def list_folder(folder: str | Path, role: str) -> list[Item]:
    """The images of ``folder``: labelled when it has class sub-folders with images, else flat."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConversionError(f"{role} folder not found: {folder}")
    try:
        items: list[Item] = list(labelled_images(folder)) or [(path, None) for path in list_images(folder)]
    except OSError as exc:
        raise ConversionError(f"{role} folder unreadable: {folder}: {exc.strerror or exc}") from None
    if not items:
        raise ConversionError(f"{role} folder has no images (.jpg, .png, ...): {folder}")
    return items


def stratified_order(items: Iterable[Item], seed: int) -> list[Item]:
    """All items, each class shuffled with ``seed``, interleaved class by class (round robin).

    Any prefix of the result is as even across classes as the classes allow, so taking the first N
    readable images gives a stratified, deterministic sample that replaces unreadable files by their class.
    """
    groups: dict[str | None, list[Item]] = {}
    for item in sorted(items, key=lambda pair: str(pair[0])):
        groups.setdefault(item[1], []).append(item)
    rng = np.random.default_rng(seed)
    shuffled = [[group[i] for i in rng.permutation(len(group))] for _, group in sorted(groups.items(), key=_key)]
    longest = max((len(group) for group in shuffled), default=0)
    return [group[i] for i in range(longest) for group in shuffled if i < len(group)]


def _key(entry: tuple[str | None, list[Item]]) -> str:
    return entry[0] or ""


@dataclass
class Reader:
    """Reads and prepares images to ``size`` = (width, height), remembering the files it had to skip.

    ``belt_share`` of the images (drawn with ``seed``) are shown as belt frames with the item crop."""

    size: tuple[int, int]
    belt_share: float = 0.0
    seed: int = 0
    skipped: list[Path] = field(default_factory=list)

    def prepared(self, items: Iterable[Item]) -> Iterator[tuple[np.ndarray, Item]]:
        """(uint8 RGB pixels of the model's input size, item) for each readable item, in order."""
        for index, item in enumerate(items):
            try:
                pixels = self._prepare(read_rgb(item[0]), index)
            except (ImageError, ValueError, OSError):
                self.skipped.append(item[0])
                continue
            yield pixels, item

    def _prepare(self, photo: np.ndarray, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, index])
        if self.belt_share and rng.random() < self.belt_share:
            return prepare(belt_frame(photo, rng), self.size, crop="item")
        return prepare(photo, self.size)

    def batches(self, items: Iterable[Item], batch: int) -> Iterator[tuple[np.ndarray, list[str | None]]]:
        """The readable items in batches of up to ``batch``: (N×H×W×3 uint8 pixels, labels)."""
        pixels: list[np.ndarray] = []
        labels: list[str | None] = []
        for image, (_, label) in self.prepared(items):
            pixels.append(image)
            labels.append(label)
            if len(pixels) == batch:
                yield np.stack(pixels), labels
                pixels, labels = [], []
        if pixels:
            yield np.stack(pixels), labels
