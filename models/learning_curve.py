"""How many items an operator should label: ``smartbin learn`` on two simulated sites the model never saw, after
10, 25, 50 and 100 labelled items per class.

    python -m models.learning_curve [--counts 10,25,50,100] [--out ~/.cache/smartbin/curve]

Each site (``models.site_frames``: its own belt, lamp and camera distance) shows every val photo once, as a
kept frame. A quarter of each class's items is held out, the same for every count (``models.learn.hold_out``);
the labelled items of a count are the first N of the rest in a fixed order (all of them where a class has
fewer: brown-glass has 44). Each point is a whole ``learn`` (fine-tune, conversion with the parity gate on the
test split, temperature), so its minutes are what an operator waits, the feature cache of the train split
already made. Prints the table and writes ``OUT/curve.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from models import learn
from models.site_frames import Site, write_site_frames

SITES = {
    # a green PVC belt under a warm lamp, items 35-70 % of the frame's height (models.site_frames' default)
    "green belt, warm lamp, near": (Site(), 3_000_017),
    # a pale grey-blue belt under a cool lamp, the camera farther away: items 22-45 % of the height
    "grey belt, cool lamp, far": (Site(belt_rgb=(0.85, 0.92, 1.0), belt_level=1.3, lamp=(0.90, 1.0, 1.15),
                                       item_side=(0.22, 0.45)), 4_000_037),
}


def site_folder(root: Path, name: str, site: Site, seed: int, data: Path, manifest: Path) -> Path:
    """The site's frames of every val photo (written once)."""
    folder = root / name.replace(", ", "-").replace(" ", "-")
    if not (folder / ".done").is_file():
        write_site_frames(data, manifest, "val", folder / "frames", seed, site=site)
        (folder / ".done").touch()
    return folder


def labelled_first(frames: list[learn.Frame], count: int) -> list[learn.Frame]:
    """The first ``count`` items of each class in a fixed order (a hash of the file's name)."""
    by_label: dict[str, list[learn.Frame]] = defaultdict(list)
    for frame in sorted(frames, key=lambda f: hashlib.sha256(f"curve:{f.path.name}".encode()).hexdigest()):
        by_label[frame.label].append(frame)
    return [frame for label in sorted(by_label) for frame in by_label[label][:count]]


def point(args: argparse.Namespace, folder: Path, count: int, train: list[learn.Frame],
          held: list[learn.Frame]) -> dict[str, Any]:
    """One ``learn`` on ``count`` labelled items per class; its report's figures."""
    out = folder / f"n{count}" / "site_int8.tflite"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = ["--frames", str(folder / "frames"), "--out", str(out), "--data", str(args.data),
            "--manifest", str(args.manifest), "--cache", str(args.cache)]
    parser = argparse.ArgumentParser()
    learn.add_arguments(parser)
    report = learn.learn(parser.parse_args(argv), train, held)
    return {"per_class": count, "labelled": sum(report["labelled"].values()) - report["site_held_out"]["items"],
            "held_out": report["site_held_out"]["items"],
            "before": report["site_held_out"]["before"]["top1"], "after": report["site_held_out"]["after"]["top1"],
            "test_before": report["test"]["before"]["top1"], "test_after": report["test"]["after"]["top1"],
            "minutes": report["minutes"], "cpu_minutes": report["cpu_minutes"], "verdict": report["verdict"]}


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| site | items per class | labelled | held out | site top-1 before → after | test top-1 | minutes |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['site']} | {row['per_class']} | {row['labelled']} | {row['held_out']} | "
                     f"{row['before']:.4f} → {row['after']:.4f} | {row['test_before']:.4f} → {row['test_after']:.4f} "
                     f"| {row['minutes']:.1f} ({row['cpu_minutes']:.1f} CPU) |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="10,25,50,100", help="labelled items per class (default 10,25,50,100)")
    parser.add_argument("--out", type=Path, default=learn.finetune.WORK / "curve", help="work folder")
    parser.add_argument("--sites", default=None, help="only these sites (numbers from 1, comma-separated)")
    learn.dataset_arguments(parser)
    parser.add_argument("--cache", type=Path, default=learn.DEFAULT_CACHE, help="feature cache")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    chosen = [int(s) for s in args.sites.split(",")] if args.sites else list(range(1, len(SITES) + 1))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    rows: list[dict[str, Any]] = []
    for number, (name, (site, seed)) in enumerate(SITES.items(), 1):
        if number not in chosen:
            continue
        folder = site_folder(args.out, name, site, seed, args.data, args.manifest)
        frames = learn.folder_frames(folder / "frames")
        pool, held = learn.hold_out(frames)
        for count in counts:
            rows.append({"site": name, **point(args, folder, count, labelled_first(pool, count), held)})
            (args.out / "curve.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
            print("\n".join(table(rows)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
