"""Frames of one simulated site: a split's photos on the same belt under the same lamp, as the bin keeps them.

A site is not the recipe's random belts: every frame shows one belt (a green PVC belt, a texture drawn once
from ``--seed`` and seen through a moving window), under one warm lamp, at one camera distance (items 35-70 %
of the frame's height), with the camera's own blur, noise and JPEG artefacts. Frames are written in the layout
``smartbin frames OUT --labels CSV`` exports (one sub-folder per class, 480×360 like the simulator's kept
frames), so they stand in for an operator's labelled site frames in ``python -m models.finetune``:

    python -m models.site_frames --split val --every 2 --out /tmp/site-frames
    python -m models.finetune --frames /tmp/site-frames
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.belt import belt_texture, camera, cut_out, place, transformed
from edge.images import read_rgb
from models.split import dataset_arguments, read_manifest, select

DEFAULT_SEED = 3_000_017


@dataclass(frozen=True)
class Site:
    """What stays the same at one site: its belt's colour, its lamp and its camera distance."""

    belt_rgb: tuple[float, float, float] = (0.55, 1.0, 0.62)  # a green PVC belt: channel gains on a grey texture
    belt_level: float = 1.6  # brightness of the belt relative to the dark texture it is tinted from
    lamp: tuple[float, float, float] = (1.10, 1.0, 0.80)  # a warm lamp: R, G, B gains
    item_side: tuple[float, float] = (0.35, 0.70)  # share of the frame's height
    width: int = 480
    height: int = 360


def site_belt(site: Site, seed: int) -> np.ndarray:
    """The site's belt, four frames long (frames look through a window of it as it moves)."""
    grey = belt_texture(np.random.default_rng(seed), site.width * 4, site.height, light=False).astype(np.float32)
    tinted = grey * site.belt_level * np.asarray(site.belt_rgb, np.float32)
    return np.clip(tinted, 0, 255).astype(np.uint8)


def site_frame(photo: np.ndarray, belt: np.ndarray, site: Site, rng: np.random.Generator) -> np.ndarray:
    """A frame of the photo's item on the site's belt under its lamp (uint8 RGB, site.height × site.width)."""
    x = int(rng.integers(0, belt.shape[1] - site.width))
    frame = belt[:, x : x + site.width].copy()
    item = cut_out(photo[:, ::-1] if rng.random() < 0.5 else photo)
    rgb, alpha = transformed(item, round(rng.uniform(*site.item_side) * site.height), float(rng.uniform(0, 360)))
    h, w = alpha.shape
    left, top = int(rng.integers(0, max(1, site.width - w))), int(rng.integers(0, max(1, site.height - h)))
    place(frame, rgb, alpha, left, top)
    lamp = np.asarray(site.lamp, np.float32).reshape(1, 1, 3)
    lit = np.clip(frame.astype(np.float32) * lamp, 0, 255).astype(np.uint8)
    return camera(lit, rng, float(rng.uniform(0, 6)))


def write_site_frames(data: Path, manifest: Path, split: str, out: Path, seed: int, every: int = 1,
                      site: Site = Site()) -> int:
    """One frame per photo (every ``every``-th) of ``split`` under ``out/<label>/``; returns how many."""
    belt = site_belt(site, seed)
    entries = select(read_manifest(manifest), split)[::every]
    for index, entry in enumerate(entries):
        frame = site_frame(read_rgb(data / entry.path), belt, site, np.random.default_rng([seed, index]))
        folder = out / entry.label
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{Path(entry.path).stem}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    return len(entries)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dataset_arguments(parser)
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--out", type=Path, required=True, help="folder to write the frames to")
    parser.add_argument("--every", type=int, default=1, help="take every N-th photo of the split (default 1)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the site's belt and the frames' draws")
    args = parser.parse_args(argv)
    written = write_site_frames(args.data, args.manifest, args.split, args.out, args.seed, args.every)
    print(f"wrote {written} site frames to {args.out}")


if __name__ == "__main__":
    main()
