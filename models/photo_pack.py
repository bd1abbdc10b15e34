"""A split's photos in one compact file, for a training machine that holds no copy of the dataset.

    python -m models.photo_pack --split train --out ~/.cache/smartbin/train_pack.npz

Each photo is scaled down (``cv2.INTER_AREA``) to ``--side`` pixels on its short side (224, the model's input:
the clean view is then the same centre square) and stored as WebP at ``--quality``; the label of each is stored
beside it. The 7,302 train photos of garbage12 take 30 MiB at the defaults (the photos themselves: 67 MiB), small
enough to travel with a checkout to an accelerator machine (``models.tune_trunk --pack``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from edge.images import read_rgb
from models.split import Entry, dataset_arguments, read_manifest, select


def encoded(photo: np.ndarray, side: int, quality: int) -> np.ndarray:
    """A uint8 RGB photo, scaled to ``side`` on its short side (never up), as WebP bytes."""
    height, width = photo.shape[:2]
    scale = side / min(height, width)
    if scale < 1:
        size = (max(side, round(width * scale)), max(side, round(height * scale)))
        photo = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".webp", cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise ValueError("WebP encoding failed")
    return data.ravel()


def write(data: Path, entries: list[Entry], labels: list[str], out: Path, side: int = 224, quality: int = 75) -> int:
    """Pack the photos of ``entries`` (paths under ``data``) into ``out``; returns its size in bytes."""
    blobs = [encoded(read_rgb(data / entry.path), side, quality) for entry in entries]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as file:
        np.savez(file, data=np.concatenate(blobs), offsets=np.cumsum([0] + [len(b) for b in blobs]),
                 labels=np.array([labels.index(e.label) for e in entries], np.int16), label_names=np.array(labels))
    return out.stat().st_size


class PhotoPack:
    """The photos of a pack, decoded on demand: ``pack.photo(i)`` (uint8 RGB) and ``pack.labels[i]``."""

    def __init__(self, path: Path) -> None:
        with np.load(path) as arrays:
            self._data, self._offsets = arrays["data"], arrays["offsets"]
            self.labels = arrays["labels"].astype(np.int64)
            self.label_names = [str(name) for name in arrays["label_names"]]

    def __len__(self) -> int:
        return len(self.labels)

    def photo(self, index: int) -> np.ndarray:
        bgr = cv2.imdecode(self._data[self._offsets[index]: self._offsets[index + 1]], cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"photo {index} of the pack cannot be decoded")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dataset_arguments(parser)
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--out", type=Path, required=True, help="the pack to write (.npz)")
    parser.add_argument("--side", type=int, default=224, help="short side in pixels (default 224)")
    parser.add_argument("--quality", type=int, default=75, help="WebP quality (default 75)")
    args = parser.parse_args(argv)
    entries = read_manifest(args.manifest)
    labels = sorted({e.label for e in entries})
    chosen = select(entries, args.split)
    size = write(args.data, chosen, labels, args.out, args.side, args.quality)
    print(f"packed {len(chosen)} photos of the {args.split} split into {args.out} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
