"""End to end on the belt simulator with real photos: detection, timing, gates, and where items really went."""

import sqlite3
import time

import pytest

from edge.app import Sorter
from edge.simulation import GateRecorder
from tests.conftest import make_settings


def belt_settings(tmp_path, tiny_model, garbage12, **sorting):
    return make_settings(
        tmp_path,
        model={"path": tiny_model},
        camera={"source": "synthetic", "fps": 30.0, "width": 320, "height": 240},
        conveyor={"trigger": "vision", "belt_speed_m_s": 0.5},
        simulator={"items": garbage12, "seed": 7},
        sorting={"votes": 3, "threshold": 0.0, **sorting},
    )


def run_belt(settings, items: int):
    """Sort ``items`` items, wait until they have passed every gate, and return records, sim items, bins."""
    with Sorter(settings) as sorter:
        recorder = GateRecorder(sorter.gates, settings)
        sorter.loop.run(max_items=items)
        sim = sorter.source
        deadline = time.monotonic() + 30
        while len(sim.passed(settings)) < items and time.monotonic() < deadline:
            time.sleep(0.1)
        passed = sim.passed(settings)[:items]
        reached = [recorder.reached_bin(item) for item in passed]
    db = sqlite3.connect(settings.records.database)
    db.row_factory = sqlite3.Row
    records = [dict(r) for r in db.execute("SELECT * FROM items ORDER BY id")]
    return records, passed, reached


def test_every_item_gets_one_record_and_reaches_the_bin_its_record_names(tmp_path, tiny_model, garbage12):
    settings = belt_settings(tmp_path, tiny_model, garbage12)
    records, passed, reached = run_belt(settings, items=8)
    assert len(records) == 8 and len(passed) == 8
    assert [r["truth"] for r in records] == [item.truth for item in passed]  # one record per physical item
    assert [r["bin"] for r in records] == reached  # the gates really routed each item where its record says
    assert any(r["gate_action"] != "none" for r in records)  # and gates did move
    assert {r["outcome"] for r in records} <= {"sorted", "too_close"}


def test_a_slow_classifier_makes_late_items_not_missorts(tmp_path, tiny_model, garbage12, monkeypatch):
    settings = belt_settings(tmp_path, tiny_model, garbage12)
    from edge.classifier import Classifier

    original = Classifier.classify

    def slow(self, pixels):
        time.sleep(0.7)  # three votes: 2.1 s, longer than any gate's budget at 0.5 m/s
        return original(self, pixels)

    monkeypatch.setattr(Classifier, "classify", slow)
    records, passed, reached = run_belt(settings, items=4)
    assert [r["truth"] for r in records] == [item.truth for item in passed]  # no item missed while classifying
    assert [r["outcome"] for r in records] == ["late"] * 4
    assert [r["bin"] for r in records] == reached == [settings.default_bin] * 4
