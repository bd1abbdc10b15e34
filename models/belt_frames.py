"""Write simulated belt-camera frames of a split's photos: one labelled JPEG per photo, for checking the crop and
the model on full camera frames (``smartbin classify --frame``, the web page's "camera frame").

    python -m models.belt_frames --split test --out /tmp/belt-frames --width 1920 --height 1080
    .venv/bin/smartbin classify --frame --json /tmp/belt-frames/*/*.jpg

Each frame is ``edge.belt.belt_frame`` at the given size: the photo's item on a random dark or light belt, at
``--item`` of the frame's height, anywhere in the frame (off-centre), rotated, blurred and lit at random,
drawn with ``--seed`` (default: a seed no training view uses). ``--rails PX``: a belt narrower than the view,
its steel side rails PX high along the top and bottom (the item's size still a share of the whole frame).
Sub-folders are the labels, so ``python -m models.belt_frames --score FILE`` can score the JSON lines of
``smartbin classify``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from edge.belt import BeltConfig, belt_frame
from edge.images import read_rgb
from models.split import dataset_arguments, read_manifest, select

DEFAULT_SEED = 2_000_003


def between_rails(photo: np.ndarray, rng: np.random.Generator, cfg: BeltConfig, rail_px: int) -> np.ndarray:
    """A ``cfg``-sized frame of the photo's item on a belt that leaves ``rail_px`` rows at the top and bottom
    to its side rails: brushed steel of a random level, shaded across, a dark gap at the belt's edge."""
    if not 0 <= 2 * rail_px < cfg.height:
        raise ValueError(f"rails of {rail_px} px leave no belt in a frame {cfg.height} px high")
    if rail_px == 0:
        return belt_frame(photo, rng, cfg)
    inner = cfg.height - 2 * rail_px
    share = cfg.height / inner  # item sizes stay shares of the whole frame's height
    belt = belt_frame(photo, rng, replace(cfg, height=inner, item_side=(cfg.item_side[0] * share,
                                                                         min(1.0, cfg.item_side[1] * share))))
    level = rng.uniform(110, 190) + np.linspace(-15, 15, rail_px)[:, None] + rng.normal(0, 4, (rail_px, cfg.width))
    rail = np.repeat(np.clip(level, 0, 255)[..., None], 3, axis=2).astype(np.uint8)
    rail[-max(1, rail_px // 12):] = 15
    return np.vstack([rail, belt, rail[::-1]])


def write_frames(data: Path, manifest: Path, split: str, out: Path, cfg: BeltConfig, seed: int, every: int = 1,
                 rail_px: int = 0) -> int:
    """One frame per photo (every ``every``-th) of ``split`` under ``out/<label>/``; returns how many."""
    entries = select(read_manifest(manifest), split)[::every]
    for index, entry in enumerate(entries):
        frame = between_rails(read_rgb(data / entry.path), np.random.default_rng([seed, index]), cfg, rail_px)
        folder = out / entry.label
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{Path(entry.path).stem}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
    return len(entries)


def score(lines: list[str]) -> tuple[int, int]:
    """(right, total) of ``smartbin classify --json`` lines whose path's folder is the label."""
    rows = [json.loads(line) for line in lines if line.strip()]
    return sum(Path(r["path"]).parent.name == r["label"] for r in rows), len(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dataset_arguments(parser)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--out", type=Path, help="folder to write the frames to")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--item", type=float, nargs=2, default=(0.15, 0.45), metavar=("MIN", "MAX"),
                        help="item size as a share of the frame's height (default 0.15 0.45)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--every", type=int, default=1, help="take every N-th photo of the split (default 1)")
    parser.add_argument("--rails", type=int, default=0, metavar="PX",
                        help="the belt's side rails in view: PX rows at the top and bottom (default 0: all belt)")
    parser.add_argument("--score", type=Path, help="score a file of `smartbin classify --json` lines instead")
    args = parser.parse_args(argv)
    if args.score:
        right, total = score(args.score.read_text(encoding="utf-8").splitlines())
        print(f"top-1 {right / max(1, total):.4f} ({right} of {total})")
        return
    if args.out is None:
        parser.error("--out is required to write frames")
    cfg = BeltConfig(width=args.width, height=args.height, item_side=tuple(args.item), out_of_frame=0.0)
    if not 0 <= 2 * args.rails < args.height:
        parser.error(f"--rails {args.rails} leaves no belt in a frame {args.height} px high")
    written = write_frames(args.data, args.manifest, args.split, args.out, cfg, args.seed, args.every, args.rails)
    print(f"wrote {written} frames to {args.out}")


if __name__ == "__main__":
    main()
