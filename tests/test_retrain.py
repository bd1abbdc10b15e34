"""Uncertain items kept for retraining: saved with their record, bounded, exported as labelled folders."""

import csv
import json

import cv2
import numpy as np
import pytest

from edge.app import Sorter
from edge.cli import main
from edge.errors import SmartbinError
from edge.records import NOT_ITEM, ItemRecord, Records
from edge.retrain import FrameKeeper, export, export_labelled, sampled
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
    assert facts["kept"] == "uncertain"


def test_a_stable_share_of_the_confident_items_is_kept_as_a_sample(tmp_path):
    confident = record("sorted", 0.97)
    keeper = FrameKeeper(tmp_path / "a", keep_below=0.8, max_mb=50, sample_share=0.1)
    for n in range(1, 401):
        keeper.keep(n, frame(n % 7), confident)
    keeper.keep(401, frame(1), record("rejected", 0.3))
    keeper.keep(402, frame(2), ItemRecord(**{**confident.__dict__, "outcome": "error", "label": None,
                                               "confidence": None, "top_k": ()}))
    sample = sorted(int(p.stem) for p in (tmp_path / "a").glob("*.json") if int(p.stem) <= 400)
    assert 25 <= len(sample) <= 55  # 10 % of 400, give or take what a hash gives
    assert sample == [n for n in range(1, 401) if sampled(n, 0.1)]
    kinds = {int(p.stem): json.loads(p.read_text())["kept"] for p in (tmp_path / "a").glob("*.json")}
    assert set(kinds.values()) == {"sample", "uncertain"} and kinds.pop(401) == "uncertain" and 402 not in kinds
    again = FrameKeeper(tmp_path / "b", keep_below=0.8, max_mb=50, sample_share=0.1)  # another run: the same items
    for n in range(1, 401):
        again.keep(n, frame(n % 7), confident)
    assert sorted(int(p.stem) for p in (tmp_path / "b").glob("*.json")) == sample
    assert [n for n in range(1, 2001) if sampled(n, 0.0)] == [] and all(sampled(n, 1.0) for n in range(1, 2001))
    assert set(filter(lambda n: sampled(n, 0.05), range(1, 2001))) < set(filter(lambda n: sampled(n, 0.1),
                                                                                 range(1, 2001)))


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


def test_labelled_frames_are_trimmed_after_every_unlabelled_one(tmp_path):
    labelled = {1, 2, 3}
    keeper = FrameKeeper(tmp_path, keep_below=0.8, max_mb=0.1, labelled=lambda: labelled)
    for n in range(1, 30):
        keeper.keep(n, frame(n), record())
    kept = sorted(int(p.stem) for p in tmp_path.glob("*.jpg"))
    assert kept[:3] == [1, 2, 3] and kept[-1] == 29 and 4 not in kept  # the oldest, but labelled
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 0.1 * 1024 * 1024
    labelled.update(range(1, 40))  # the labelled alone over the cap: the oldest of them go
    for n in range(30, 40):
        keeper.keep(n, frame(n), record())
    kept = sorted(int(p.stem) for p in tmp_path.glob("*.jpg"))
    assert 1 not in kept and kept[-1] == 39 and kept == list(range(kept[0], 40))


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


def test_frames_labelled_on_the_page_are_exported_by_class_with_a_csv(tmp_path):
    kept, database, out = tmp_path / "kept", tmp_path / "items.db", tmp_path / "out"
    with pytest.raises(SmartbinError, match=r"^no labels in .+items.db: label kept frames on the web page's Teach"):
        export_labelled(kept, out, database, LABELS)  # no database yet
    keeper = FrameKeeper(kept, keep_below=0.8, max_mb=10)
    with Records(database) as records:
        for n in (1, 2, 3, 4, 5):
            keeper.keep(records.add(record()), frame(n), record())
        with pytest.raises(SmartbinError, match=r"^no labels in"):
            export_labelled(kept, out, database, LABELS)
        records.set_label(2, "paper", "ann", 2000.0, "glass", 0.3)
        records.set_label(1, "glass", "operator", 2001.0, "glass", 0.3)
        records.set_label(3, NOT_ITEM, "ann", 2002.0, "glass", 0.3)
        records.set_label(4, "paper", "bob", 2003.0, "glass", 0.3)
        records.set_label(5, "plastik", "bob", 2004.0, "glass", 0.3)  # a class of an earlier model
    (kept / "00000004.jpg").unlink()
    assert export_labelled(kept, out, database, LABELS) == (
        f"2 labelled frames exported to {out} (one sub-folder per class, listed in labels.csv); left out: "
        "1 not-an-item, 1 whose frame is gone, 1 with a label the model does not have")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg")) == ["glass/00000001.jpg", "paper/00000002.jpg"]
    assert (out / "glass" / "00000001.jpg").read_bytes() == (kept / "00000001.jpg").read_bytes()
    assert list(csv.reader((out / "labels.csv").open())) == [
        ["id", "label", "who", "time", "guess"], ["2", "paper", "ann", "2000.0", "glass"],
        ["1", "glass", "operator", "2001.0", "glass"]]


def test_smartbin_frames_labelled_is_one_line_and_exit_1_without_labels(config, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["frames", str(out), "--labelled", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("smartbin: no labels in ") and err.endswith("Teach tab\n") and err.count("\n") == 1
    state = tmp_path / "state"
    FrameKeeper(state / "uncertain", keep_below=0.8, max_mb=10).keep(1, frame(1), record())
    with Records(state / "items.db") as records:
        records.add(record())
        records.set_label(1, "paper", "ann", 2000.0, "glass", 0.3)
    assert main(["frames", str(out), "--labelled", "--config", str(config)]) == 0
    assert capsys.readouterr().out.startswith("1 labelled frames exported to ")
    assert [p.relative_to(out).as_posix() for p in out.rglob("*.jpg")] == ["paper/00000001.jpg"]
    with pytest.raises(SystemExit):
        main(["frames", str(out), "--labelled", "--labels", "x.csv", "--config", str(config)])


def test_smartbin_frames_without_config_reads_the_installed_services_records(tmp_path, monkeypatch, capsys):
    from edge.config import DEFAULT_CONFIG
    from edge.service import unit

    config, state = tmp_path / "etc" / "smartbin.toml", tmp_path / "var"
    config.parent.mkdir()
    config.write_text(DEFAULT_CONFIG.read_text())  # as install.sh writes it: no records.path, the state directory
    monkeypatch.setattr(unit, "CONFIG", config)
    monkeypatch.setattr(unit, "STATE", state)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)  # sudo, not the service
    FrameKeeper(state / "uncertain", keep_below=0.8, max_mb=10).keep(1, frame(1), record())
    with Records(state / "items.db") as records:
        records.add(record())
        records.set_label(1, "paper", "ann", 2000.0, "glass", 0.3)
    assert main(["frames", str(tmp_path / "out"), "--labelled"]) == 0
    assert capsys.readouterr().out.startswith("1 labelled frames exported to ")
    assert (tmp_path / "out" / "paper" / "00000001.jpg").is_file()


def test_the_loop_keeps_rejected_items(tiny_settings):
    settings = threshold_rule(tiny_settings, threshold=1.0)
    with Sorter(settings, source=Frames(picture(n) for n in range(3))) as sorter:
        sorter.loop.run()
    kept = sorted(p.name for p in settings.retrain_folder.glob("*.json"))
    assert kept == [f"{r['id']:08d}.json" for r in rows(settings)]
