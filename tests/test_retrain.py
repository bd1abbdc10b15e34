"""Uncertain items kept for retraining: saved with their record, bounded, exported as labelled folders."""

import csv
import json

import cv2
import numpy as np
import pytest

from edge.app import Sorter
from edge.errors import SmartbinError
from edge.records import ItemRecord
from edge.retrain import FrameKeeper, export
from edge.sources import Frame
from tests.conftest import threshold_rule
from tests.test_loop import Frames, picture, rows

LABELS = ("glass", "paper")


def record(outcome="rejected", confidence=0.3) -> ItemRecord:
    return ItemRecord(time=1.0, frame=0, source="t", bin="residual", gate_action="none", outcome=outcome,
                      model="m", label="glass", confidence=confidence, top_k=(("glass", confidence),))


def frame(seed: int) -> Frame:
    return Frame(np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8), 1.0, seed, 1.0)


def test_only_uncertain_items_are_kept_with_their_facts(tmp_path):
    keeper = FrameKeeper(tmp_path, keep_below=0.8, max_mb=10)
    keeper.keep(1, frame(1), record("rejected", 0.3))
    keeper.keep(2, frame(2), record("sorted", 0.95))
    keeper.keep(3, frame(3), record("sorted", 0.7))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000001.jpg", "00000001.json", "00000003.jpg",
                                                          "00000003.json"]
    facts = json.loads((tmp_path / "00000001.json").read_text())
    assert facts["id"] == 1 and facts["top_k"] == [["glass", 0.3]] and facts["outcome"] == "rejected"


@pytest.mark.parametrize("crop", ["item", "roi"])
def test_an_item_off_the_centre_square_is_kept_whole(tmp_path, crop):
    rgb = np.full((240, 320, 3), 40, np.uint8)
    rgb[100:150, 5:45] = 220  # mostly left of the centre square (x 40-280), where the trigger found it
    keeper = FrameKeeper(tmp_path, keep_below=0.8, max_mb=10, crop=crop)
    keeper.keep(1, Frame(rgb, 1.0, 0, 1.0, item_box=(5, 100, 45, 150)), record())
    kept = cv2.cvtColor(cv2.imread(str(tmp_path / "00000001.jpg")), cv2.COLOR_BGR2GRAY)
    bright = np.flatnonzero((kept > 150).any(axis=0))
    if crop == "item":  # the kept frame reaches the item's left edge: all 40 columns of it are there
        assert kept.shape[0] == 240 and len(bright) == 40
    else:  # the ROI alone: the centre square, with the item's last 5 columns
        assert kept.shape[:2] == (240, 240) and len(bright) == 5


def test_the_folder_is_bounded_oldest_out(tmp_path):
    keeper = FrameKeeper(tmp_path, keep_below=0.8, max_mb=0.1)  # ~100 kB: a few noisy JPEGs
    for n in range(1, 30):
        keeper.keep(n, frame(n), record())
    kept = sorted(p.stem for p in tmp_path.glob("*.jpg"))
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 0.1 * 1024 * 1024
    assert kept and kept[-1] == "00000029" and "00000001" not in kept
    assert len(kept) == len(list(tmp_path.glob("*.json")))


def test_a_nearly_full_disk_stops_keeping_frames_with_one_warning_and_kept_again_when_there_is_room(
        tmp_path, caplog):
    import logging
    import shutil

    free_mb = shutil.disk_usage(tmp_path).free / 1024 / 1024
    keeper = FrameKeeper(tmp_path, keep_below=0.8, max_mb=10, min_free_mb=free_mb * 2)  # more than there is
    with caplog.at_level(logging.INFO):
        for n in (1, 2, 3):
            keeper.keep(n, frame(n), record())
        assert list(tmp_path.iterdir()) == [] and keeper.disk_low
        keeper.min_free_bytes = 0  # room again (as after the operator freed space)
        keeper.keep(4, frame(4), record())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000004.jpg", "00000004.json"]
    messages = [r.message for r in caplog.records if r.name == "edge.retrain"]
    assert len(messages) == 2 and messages[0].startswith("disk nearly full: ") and "records go on" in messages[0]
    assert messages[1].startswith("disk space back: ")


def test_export_template_then_labelled_folders(tmp_path):
    keeper = FrameKeeper(tmp_path / "kept", keep_below=0.8, max_mb=10)
    for n in (1, 2, 3):
        keeper.keep(n, frame(n), record())
    out = tmp_path / "out"
    assert "3 frames listed" in export(tmp_path / "kept", out, None, LABELS)
    rows_ = list(csv.DictReader((out / "labels.csv").open()))
    assert [r["id"] for r in rows_] == ["1", "2", "3"] and rows_[0]["guess"] == "glass"
    labels = tmp_path / "labels.csv"
    labels.write_text("id,guess,confidence,label\n1,glass,0.3,paper\n2,glass,0.3,\n3,glass,0.3,glass\n")
    assert "2 labelled frames" in export(tmp_path / "kept", out, labels, LABELS)
    assert (out / "paper" / "00000001.jpg").exists() and (out / "glass" / "00000003.jpg").exists()
    labels.write_text("id,label\n1,plastik\n")
    with pytest.raises(SmartbinError, match="'plastik' is not a label"):
        export(tmp_path / "kept", out, labels, LABELS)


def test_the_loop_keeps_rejected_items(tiny_settings):
    settings = threshold_rule(tiny_settings, threshold=1.0)
    with Sorter(settings, source=Frames(picture(n) for n in range(3))) as sorter:
        sorter.loop.run()
    kept = sorted(p.name for p in settings.retrain_folder.glob("*.json"))
    assert kept == [f"{r['id']:08d}.json" for r in rows(settings)]
