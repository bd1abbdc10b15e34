"""Write simulated belt-camera frames of a split's photos: one labelled JPEG per photo, for checking the crop and
the model on full camera frames (``smartbin classify --frame``, the web page's "camera frame").

    python -m models.belt_frames --split test --out /tmp/belt-frames --width 1920 --height 1080
    .venv/bin/smartbin classify --frame --json /tmp/belt-frames/*/*.jpg

Each frame is ``edge.belt.belt_frame`` at the given size: the photo's item on a random dark or light belt, at
``--item`` of the frame's height, anywhere in the frame (off-centre), rotated, blurred and lit at random,
drawn with ``--seed`` (default: a seed no training view uses). Sub-folders are the labels, so
``python -m models.belt_frames --score FILE`` can score the JSON lines of ``smartbin classify``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from edge.belt import BeltConfig, belt_frame
from edge.images import read_rgb
from models.split import dataset_arguments, read_manifest, select

DEFAULT_SEED = 2_000_003


def write_frames(data: Path, manifest: Path, split: str, out: Path, cfg: BeltConfig, seed: int, every: int = 1
                 ) -> int:
    """One frame per photo (every ``every``-th) of ``split`` under ``out/<label>/``; returns how many."""
    entries = select(read_manifest(manifest), split)[::every]
    for index, entry in enumerate(entries):
        frame = belt_frame(read_rgb(data / entry.path), np.random.default_rng([seed, index]), cfg)
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
    parser.add_argument("--score", type=Path, help="score a file of `smartbin classify --json` lines instead")
    args = parser.parse_args(argv)
    if args.score:
        right, total = score(args.score.read_text(encoding="utf-8").splitlines())
        print(f"top-1 {right / max(1, total):.4f} ({right} of {total})")
        return
    if args.out is None:
        parser.error("--out is required to write frames")
    cfg = BeltConfig(width=args.width, height=args.height, item_side=tuple(args.item), out_of_frame=0.0)
    written = write_frames(args.data, args.manifest, args.split, args.out, cfg, args.seed, args.every)
    print(f"wrote {written} frames to {args.out}")


if __name__ == "__main__":
    main()
