"""The split manifest: deterministic, stratified, disjoint, and the committed one matches the data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from models.split import SPLITS, make_split, read_manifest, split_folder, write_manifest
from tests.conftest import PROJECT

MANIFEST = PROJECT / "models" / "split.csv"


def _pairs() -> list[tuple[str, str]]:
    sizes = {"a": 100, "b": 41, "c": 7}
    return [(f"{label}{i}.jpg", label) for label, n in sizes.items() for i in range(n)]


def test_split_is_deterministic_and_order_free() -> None:
    pairs = _pairs()
    assert make_split(pairs) == make_split(list(reversed(pairs)))


def test_split_is_stratified_and_disjoint() -> None:
    entries = make_split(_pairs(), val=0.15, test=0.15)
    assert len({e.path for e in entries}) == len(entries) == len(_pairs())
    counts = Counter((e.label, e.split) for e in entries)
    assert [counts[("a", s)] for s in SPLITS] == [70, 15, 15]
    assert [counts[("b", s)] for s in SPLITS] == [29, 6, 6]
    assert [counts[("c", s)] for s in SPLITS] == [5, 1, 1]


def test_adding_a_file_moves_few_others() -> None:
    before = {e.path: e.split for e in make_split(_pairs())}
    after = {e.path: e.split for e in make_split([*_pairs(), ("a_new.jpg", "a")])}
    assert sum(before[p] != after[p] for p in before) <= 2


def test_manifest_round_trip(tmp_path: Path) -> None:
    entries = make_split(_pairs())
    write_manifest(entries, tmp_path / "split.csv")
    assert read_manifest(tmp_path / "split.csv") == entries


def test_committed_manifest_is_stratified() -> None:
    entries = read_manifest(MANIFEST)
    per_label = Counter(e.label for e in entries)
    for (label, split), n in Counter((e.label, e.split) for e in entries).items():
        share = n / per_label[label]
        assert share == pytest.approx(0.70 if split == "train" else 0.15, abs=0.01), (label, split)


def test_committed_manifest_matches_the_data(garbage12: Path) -> None:
    assert read_manifest(MANIFEST) == split_folder(garbage12)
