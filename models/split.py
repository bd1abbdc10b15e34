"""The deterministic, stratified train/val/test split of a labelled image folder, and its CSV manifest.

Per class, files are ordered by the sha256 of ``"class/filename"`` and cut into train / val / test by the
given fractions (val and test rounded, train takes the rest). The split depends only on the file names, so it
is the same on every machine and for every rerun; adding a file moves at most a few neighbours of its class.

    python -m models.split --data ../shared/data/garbage12 --out models/split.csv
    python -m models.split --link ~/.cache/smartbin/split   # SPLIT/CLASS/FILE symlinks, for the converter
"""

from __future__ import annotations

import argparse
import csv
import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edge.images import labelled_images

SPLITS = ("train", "val", "test")
FIELDS = ("path", "label", "split")


def dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The dataset root (``--data``) and the split manifest (``--manifest``), as the training tools take them."""
    parser.add_argument("--data", type=Path, default=Path("../shared/data/garbage12"), help="dataset root")
    parser.add_argument("--manifest", type=Path, default=Path("models/split.csv"), help="split manifest")


@dataclass(frozen=True)
class Entry:
    """One image of the manifest: its path relative to the dataset root, its label and its split."""

    path: str
    label: str
    split: str


def stable_key(label: str, name: str) -> str:
    """The sort key of one file within its class: sha256 of ``"label/name"``."""
    return hashlib.sha256(f"{label}/{name}".encode()).hexdigest()


def split_class(label: str, names: list[str], val: float, test: float) -> list[Entry]:
    """Split one class's file names: hash order, first ``test`` share to test, next ``val`` share to val."""
    ordered = sorted(names, key=lambda name: stable_key(label, name))
    n_test, n_val = round(len(ordered) * test), round(len(ordered) * val)
    splits = ["test"] * n_test + ["val"] * n_val + ["train"] * (len(ordered) - n_test - n_val)
    return [Entry(f"{label}/{name}", label, split) for name, split in zip(ordered, splits, strict=True)]


def make_split(pairs: list[tuple[str, str]], val: float = 0.15, test: float = 0.15) -> list[Entry]:
    """Split (file name, label) pairs per class; entries come back sorted by path."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"fractions val={val}, test={test} must be in [0, 1) and sum below 1")
    by_label: dict[str, list[str]] = {}
    for name, label in pairs:
        by_label.setdefault(label, []).append(name)
    entries = [e for label, names in by_label.items() for e in split_class(label, names, val, test)]
    return sorted(entries, key=lambda e: e.path)


def split_folder(root: str | Path, val: float = 0.15, test: float = 0.15) -> list[Entry]:
    """The split of a folder with one sub-folder per class."""
    return make_split([(path.name, label) for path, label in labelled_images(root)], val, test)


def write_manifest(entries: list[Entry], path: str | Path) -> None:
    """Write entries as CSV with the header ``path,label,split``."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(FIELDS)
        writer.writerows((e.path, e.label, e.split) for e in entries)


def read_manifest(path: str | Path) -> list[Entry]:
    """Read a manifest written by ``write_manifest``."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise ValueError(f"{path}: header {reader.fieldnames}, expected {list(FIELDS)}")
        entries = [Entry(row["path"], row["label"], row["split"]) for row in reader]
    unknown = {e.split for e in entries} - set(SPLITS)
    if unknown:
        raise ValueError(f"{path}: unknown split names {sorted(unknown)}")
    return entries


def select(entries: list[Entry], split: str) -> list[Entry]:
    """The entries of one split, in manifest order."""
    return [e for e in entries if e.split == split]


def link_split(entries: list[Entry], data: str | Path, dest: str | Path) -> None:
    """Make ``dest/SPLIT/LABEL/NAME`` symlinks to the photos, so each split is a labelled folder."""
    data, dest = Path(data).resolve(), Path(dest)
    for entry in entries:
        link = dest / entry.split / entry.path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and link.resolve() == data / entry.path:
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(data / entry.path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/garbage12", help="dataset root, one folder per class")
    parser.add_argument("--out", default="models/split.csv", help="manifest to write")
    parser.add_argument("--val", type=float, default=0.15, help="validation share per class (default 0.15)")
    parser.add_argument("--test", type=float, default=0.15, help="test share per class (default 0.15)")
    parser.add_argument("--link", type=Path, help="instead: link the manifest's splits as folders under LINK")
    args = parser.parse_args(argv)
    if args.link:
        link_split(read_manifest(args.out), args.data, args.link)
        print(f"{args.link}: " + ", ".join(f"{s}/" for s in SPLITS) + f" linked from {args.out}")
        return
    entries = split_folder(args.data, args.val, args.test)
    write_manifest(entries, args.out)
    counts = Counter(e.split for e in entries)
    print(f"{args.out}: {len(entries)} images, " + ", ".join(f"{s} {counts[s]}" for s in SPLITS))


if __name__ == "__main__":
    main()
