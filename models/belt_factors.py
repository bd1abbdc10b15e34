"""What each belt condition costs a model: the belt view set with one condition at a time made easy.

The belt view set (``models.evaluate``'s ``test_belt``: each photo's item on a held-out belt, then the edge's
item crop) puts every condition of a belt camera on each photo at once. This runs the same views again with
one of them removed or narrowed (``edge.belt.BeltConfig``; the same seeds, so the other conditions stay as they
were), through the int8 model as the edge runs it, and prints top-1 for each, the change against the set as is
(views gained and lost), and top-1 apart for the items cut out of their photo and for the photos used whole in
a soft ellipse (no item found against their border, ``edge.belt.cut_out``). The "as is" row is the card's
belt view set.

It tells the ML engineer where training on belt views still falls short, and the operator what a camera
setting is worth (a short exposure: no motion blur; the camera closer: larger items).

    python -m models.belt_factors --model models/garbage12_resnet50_int8.tflite --split test
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edge.belt import BeltConfig, cut_out
from edge.images import read_rgb
from edge.model_card import read_card
from models.evaluate import VIEWS, tflite_probabilities
from models.split import Entry, dataset_arguments, read_manifest, select

CONDITIONS: dict[str, dict[str, Any]] = {
    "as is": {},
    "no motion blur": {"blur_px": (0.0, 0.0)},
    "no light, white balance, noise or JPEG": {"camera_effects": False},
    "upright (no rotation)": {"rotation_deg": (0.0, 0.0)},
    "whole item in the frame": {"out_of_frame": 0.0},
    "large items (70-85 % of the height)": {"item_side": (0.70, 0.85)},
    "small items (30-45 % of the height)": {"item_side": (0.30, 0.45)},
    "dark belts only": {"light_belt_share": 0.0},
    "light belts only": {"light_belt_share": 1.0},
}


class Row(NamedTuple):
    """One condition's figures: top-1 over all views, for cut-out items and for whole photos, and the views
    right here but wrong as is (gained) and the reverse (lost)."""

    condition: str
    top1: float
    cut_out: float
    whole_photo: float
    gained: int
    lost: int


def cut_out_items(data: Path, entries: list[Entry]) -> np.ndarray:
    """Per photo, whether its item is cut out of it (True) or the photo is used whole (False)."""
    return np.array([cut_out(read_rgb(data / e.path)).segmented for e in entries], bool)


def factor_rows(model: Path, data: Path, entries: list[Entry], segmented: np.ndarray, split: str = "test",
                threads: int | None = None) -> list[Row]:
    """The figures of every condition in ``CONDITIONS``, on the belt views of ``entries`` (a split's photos;
    ``segmented``: ``cut_out_items`` of them)."""
    labels = read_card(model).labels
    truth = np.array([labels.index(e.label) for e in entries])
    base = dataclasses.replace(VIEWS["test_belt"], split=split)
    rows, as_is = [], None
    for name, changes in CONDITIONS.items():
        spec = dataclasses.replace(base, belt=dataclasses.replace(BeltConfig(), **changes))
        right = tflite_probabilities(model, data, entries, spec, threads).argmax(1) == truth
        as_is = right if as_is is None else as_is
        rows.append(Row(name, float(right.mean()), float(right[segmented].mean()) if segmented.any() else np.nan,
                        float(right[~segmented].mean()) if (~segmented).any() else np.nan,
                        int((right & ~as_is).sum()), int((as_is & ~right).sum())))
    return rows


def table(rows: list[Row], cut: int, whole: int) -> str:
    """The rows as a Markdown table."""
    lines = [f"| belt view set | top-1 | change | gained / lost | cut out ({cut}) | whole photo ({whole}) |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row.condition} | {row.top1:.4f} | {100 * (row.top1 - rows[0].top1):+.1f} pp | "
                     f"{row.gained} / {row.lost} | {row.cut_out:.4f} | {row.whole_photo:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/garbage12_resnet50_int8.tflite"), help="int8 model")
    dataset_arguments(parser)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to evaluate")
    parser.add_argument("--every", type=int, default=1,
                        help="take every N-th photo of the split (default 1; other belts than the card's set)")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: all cores)")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be at least 1")
    entries = select(read_manifest(args.manifest), args.split)[:: args.every]
    segmented = cut_out_items(args.data, entries)
    rows = factor_rows(args.model, args.data, entries, segmented, args.split, args.threads)
    print(f"{args.model.name}, {len(entries)} {args.split} photos on held-out belts, one condition eased at a time:")
    print(table(rows, int(segmented.sum()), int((~segmented).sum())))
    return rows


if __name__ == "__main__":
    main()
