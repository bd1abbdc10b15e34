"""The sorting loop end to end with real parts: LiteRT, gpiozero mock pins, SQLite, OpenCV sources."""

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from edge.app import Sorter
from edge.config import DEFAULT_CONFIG, load_settings, parse_settings
from edge.errors import ConfigError, GateError, ModelError, RecordError
from edge.fakes import FakeClassifier
from edge.sources import FrameSource
from edge.sources.folder import FolderSource
from tests.conftest import LABELS, make_settings, threshold_rule
from tests.test_gates import dying_pins


class Frames(FrameSource):
    """A finite list of RGB frames."""

    name = "frames"

    def __init__(self, images):
        super().__init__()
        self.images = list(images)

    def read(self):
        return self._frame(self.images.pop(0)) if self.images else None


def picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (64, 96, 3), dtype=np.uint8)


def rows(settings):
    db = sqlite3.connect(settings.records.database)
    db.row_factory = sqlite3.Row
    return [dict(r) for r in db.execute("SELECT * FROM items ORDER BY id")]


def test_every_photo_of_a_replay_is_one_item_paced_as_the_belt_would_carry_it(tmp_path, tiny_model, garbage12):
    settings = make_settings(tmp_path, model={"path": tiny_model}, camera={"fps": 0.0},
                             sorting={"votes": 3}, conveyor={"belt_speed_m_s": 1.0, "item_pass_s": 0.2},
                             simulator={"spacing_m": 0.6})
    photos = tmp_path / "photos"
    for label in ("battery", "cardboard", "clothes", "metal", "paper", "shoes"):
        (photos / label).mkdir(parents=True)
        (photos / label / "a.jpg").symlink_to(sorted((garbage12 / label).iterdir())[0])
    started = time.monotonic()
    with Sorter(settings, source=FolderSource(photos)) as sorter:
        assert sorter.stream.period == pytest.approx(0.6)  # spacing / belt speed, though camera.fps is 0
        tally = sorter.loop.run()
    elapsed = time.monotonic() - started
    records = rows(settings)
    assert tally.items == 6 and len(records) == 6 and elapsed > 5 * 0.6
    assert [r["truth"] for r in records] == ["battery", "cardboard", "clothes", "metal", "paper", "shoes"]
    assert [r["frames"] for r in records] == [1] * 6  # one photo, one item: votes do not mix photos
    bin_of = settings.bin_of()
    for record in records:
        assert record["outcome"] in ("sorted", "rejected")  # paced: the gates keep up, nothing too close
        wanted = bin_of[record["label"]] if record["outcome"] == "sorted" else settings.sorting.reject_bin
        assert record["bin"] == wanted


def test_below_threshold_goes_to_the_reject_bin(tmp_path, tiny_settings):
    settings = threshold_rule(tiny_settings, threshold=1.0)
    with Sorter(settings, source=Frames(picture(n) for n in range(3))) as sorter:
        sorter.loop.run()
    outcomes = [(r["bin"], r["outcome"], r["gate_action"]) for r in rows(settings)]
    assert outcomes == [("residual", "rejected", "none")] * 3


def test_votes_average_several_frames_per_item(tiny_settings):
    settings = tiny_settings.model_copy(update={"sorting": tiny_settings.sorting.model_copy(update={"votes": 3})})
    with Sorter(settings, source=Frames(picture(n) for n in range(7))) as sorter:
        tally = sorter.loop.run()
    records = rows(settings)
    assert tally.items == 2 and [r["frames"] for r in records] == [3, 3] and [r["frame"] for r in records] == [0, 3]


def test_dead_frame_is_an_error_record_with_gates_safe(tiny_settings):
    frames = [picture(1), np.zeros((64, 96, 3), np.uint8), picture(2)]
    with Sorter(tiny_settings, source=Frames(frames)) as sorter:
        sorter.loop.run()
    records = rows(tiny_settings)
    assert [r["outcome"] for r in records][1] == "error" and len(records) == 3
    assert records[1]["gate_action"] == "none"  # no gate moves for it: it rides along with the gates as they are
    assert "dead frame" in records[1]["error"]


def test_model_failure_mid_run_is_an_error_record(tiny_settings):
    broken = FakeClassifier(LABELS, error=ModelError("interpreter failed"))
    with Sorter(tiny_settings, source=Frames(picture(n) for n in range(2)), classifier=broken) as sorter:
        sorter.loop.run()
    assert [(r["outcome"], r["error"]) for r in rows(tiny_settings)] == [("error", "interpreter failed")] * 2


def test_record_failure_stops_with_gates_safe_and_logs_the_record(tiny_settings, caplog):
    with Sorter(tiny_settings, source=Frames(picture(n) for n in range(5))) as sorter:
        sorter.loop.run(max_items=1)
        sorter.records._db.execute("PRAGMA query_only = ON")  # the database refuses writes from here on
        with caplog.at_level(logging.ERROR), pytest.raises(RecordError):
            sorter.loop.run()
        assert sorter.gates.devices["flap"].angle == 0 and not sorter.gates.devices["pusher"].value
    unsaved = [r.message for r in caplog.records if r.message.startswith("unsaved record: ")]
    assert len(unsaved) >= 1 and json.loads(unsaved[0].removeprefix("unsaved record: "))["frame"] == 1


class FrameCounter:
    """An observer that counts the frames the loop read."""

    def __init__(self):
        self.frames = 0

    def on_frame(self, frame):
        self.frames += 1

    def on_item(self, item_id, record):
        pass


def test_every_item_queued_behind_a_failed_write_still_gets_its_json_line(tiny_settings, caplog):
    counter = FrameCounter()
    source = Frames(picture(n) for n in range(40))
    source.live = True  # no backlog bound: items pile up behind the failing write
    with Sorter(tiny_settings, source=source, observers=[counter]) as sorter:
        sorter.records._db.execute("PRAGMA query_only = ON")
        with caplog.at_level(logging.ERROR), pytest.raises(RecordError):
            sorter.loop.run()
    unsaved = [json.loads(r.message.removeprefix("unsaved record: ")) for r in caplog.records
               if r.message.startswith("unsaved record: ")]
    assert [u["frame"] for u in unsaved] == list(range(counter.frames))  # every item found, none dropped
    assert all(u["outcome"] == "error" and u["label"] is None for u in unsaved[1:])  # not classified


def test_class_without_bin_fails_at_start(tiny_settings):
    bins = tiny_settings.model_dump()["bins"]
    bins["residual"]["classes"] = []
    settings = parse_settings({**tiny_settings.model_dump(), "bins": bins})
    with pytest.raises(Exception, match="class 'trash' of the model has no bin"):
        Sorter(settings)


def run_cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kwargs)


def write_config(tmp_path, tiny_model, extra=""):
    """The default config with the tiny model, mock pins, records in tmp_path, a small fast belt."""
    config = DEFAULT_CONFIG.read_text().replace(
        "[model]", f'[model]\npath = "{tiny_model}"').replace(
        "[records]", f'[records]\npath = "{tmp_path / "items.db"}"').replace(
        "[gpio]", '[gpio]\npin_factory = "mock"') + extra
    path = tmp_path / "smartbin.toml"
    config = config.replace("[camera]", "[camera]\nwidth = 320\nheight = 240\nfps = 30.0").replace(
        "[conveyor]", "[conveyor]\nbelt_speed_m_s = 0.5")
    path.write_text(config)
    return path


def test_cli_run_prints_one_line_per_item_and_a_tally(tmp_path, tiny_model):
    config = write_config(tmp_path, tiny_model)
    result = run_cli("run", "--config", str(config), "--max-items", "4", timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum("smartbin.items: item " in line for line in lines) == 4
    assert "done: 4 items" in lines[-1]
    assert any("decisions: expected cost, quarantine at P(battery) >= 0.05;" in line for line in lines)


def test_a_config_without_costs_starts_on_the_threshold_rule_and_records_why(tmp_path, tiny_model):
    text = write_config(tmp_path, tiny_model).read_text()
    old = text[:text.index("\n[costs]\n")] + text[text.index("\n[conveyor]\n"):]
    (tmp_path / "old.toml").write_text(old.replace("hazardous = true\n", ""))
    result = run_cli("run", "--config", str(tmp_path / "old.toml"), "--max-items", "3", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "decisions: threshold 0.6;" in result.stdout
    reasons = {r["reason"] for r in rows(load_settings(tmp_path / "old.toml"))}
    assert reasons <= {"top", "below threshold"} and reasons


def test_cli_check_reports_each_part(tmp_path, tiny_model):
    result = run_cli("check", "--config", str(write_config(tmp_path, tiny_model)), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [
        ["config", "OK"], ["memory", "OK"], ["model", "OK"], ["gates", "OK"], ["records", "OK"], ["camera", "OK"]]


def test_cli_check_names_a_missing_model(tmp_path, tiny_model):
    tiny_model.unlink()
    result = run_cli("check", "--config", str(write_config(tmp_path, tiny_model)), timeout=60)
    assert result.returncode == 1 and "model    FAIL model not found" in result.stdout


def test_cli_gate_moves_and_returns(tmp_path, tiny_model):
    config = write_config(tmp_path, tiny_model)
    result = run_cli("gate", "glass", "--hold", "0.1", "--config", str(config), timeout=60)
    assert result.returncode == 0 and "glass: flap→-60° for 0.1 s (MockFactory)" in result.stdout
    assert run_cli("gate", "nowhere", "--config", str(config)).returncode == 2


def test_sigterm_finishes_the_item_leaves_gates_safe_and_records_committed(tmp_path, tiny_model):
    config = write_config(tmp_path, tiny_model)
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 3 and time.monotonic() < deadline:
        if "smartbin.items: item" in proc.stdout.readline():
            seen += 1
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    logged = seen + out.count("smartbin.items: item")
    db = sqlite3.connect(tmp_path / "items.db")
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == logged
    assert "SIGTERM: stopping after the item in hand" in out and "done:" in out


def test_a_hung_sorting_thread_stops_the_frame_reports_that_feed_the_watchdog(tiny_settings):
    release, stop = threading.Event(), threading.Event()
    hung = FakeClassifier(LABELS, hold=release)  # every classify waits for the release
    counter = FrameCounter()
    source = Frames(picture(n % 5) for n in range(10_000))
    source.live = True  # frames keep coming (no backlog bound) while the sorting thread hangs
    with Sorter(tiny_settings, source=source, observers=[counter], classifier=hung) as sorter:
        sorter.loop.stuck_s = 0.2
        sorter.stream.period = 0.01
        runner = threading.Thread(target=sorter.loop.run, kwargs={"stop": stop})
        runner.start()
        time.sleep(0.6)
        seen, left = counter.frames, len(source.images)
        time.sleep(0.4)
        assert counter.frames == seen  # stuck: no more frame reports, so no watchdog pings
        assert len(source.images) < left and hung.calls == 1 and seen > 0  # though frames are read still
        release.set()
        time.sleep(0.3)
        stop.set()
        runner.join(10)
    assert not runner.is_alive() and counter.frames > seen  # released: frames reported again


def test_cli_classify_prints_one_line_per_photo_and_fails_only_at_the_end(tmp_path, tiny_model, garbage12):
    config = write_config(tmp_path, tiny_model)
    photos = [sorted((garbage12 / label).iterdir())[0] for label in ("battery", "paper")]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    result = run_cli("classify", "--config", str(config), str(photos[0]), str(broken), str(photos[1]), timeout=60)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(photos[0]), str(photos[1])]  # the others still classified
    assert all("→" in line and "top-3" in line for line in lines)
    assert result.stderr.splitlines() == [f"{broken}: cannot decode image: {broken} (not a readable JPEG, PNG, "
                                          "BMP or WebP header)"]  # one line, no native runtime chatter
    as_json = run_cli("classify", "--config", str(config), "--frame", "--json", *map(str, photos), timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    rows_ = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [list(r) for r in rows_] == [["path", "label", "confidence", "bin", "rejected", "reason",
                                         "expected_cost", "top_k"]] * 2
    assert all(len(r["top_k"]) == 3 and r["top_k"][0][0] == r["label"] for r in rows_)


def test_a_retrain_folder_under_a_file_is_one_line_and_nothing_is_left_running(tmp_path, tiny_settings):
    (tmp_path / "file").write_text("x")
    settings = tiny_settings.model_copy(update={
        "retrain": tiny_settings.retrain.model_copy(update={"folder": tmp_path / "file" / "uncertain"})})
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(ConfigError, match=r"^retrain.folder: cannot use .*file/uncertain: Not a directory$"):
        Sorter(settings)
    assert {t.name for t in threading.enumerate() if t.is_alive()} <= before  # no simulator or frame thread


def one_hot(label: str) -> list[float]:
    return [1.0 if name == label else 0.0 for name in LABELS]


def paced(settings, fps: float = 4.0):
    """``settings`` with frames read at ``fps`` (one item each) on a 1 m/s belt: the flap 0.9 s after the line."""
    return settings.model_copy(update={
        "camera": settings.camera.model_copy(update={"fps": fps}),
        "conveyor": settings.conveyor.model_copy(update={"belt_speed_m_s": 1.0, "item_pass_s": 0.1})})


def test_a_gate_that_fails_under_items_on_their_way_marks_their_records_in_one_line(tiny_settings, caplog):
    settings = paced(tiny_settings)
    pins, die = dying_pins("GPIO18")  # the flap's servo board dies before it first moves
    glass = FakeClassifier(LABELS, one_hot("green-glass"))
    with Sorter(settings, source=Frames(picture(n) for n in range(12)), pin_factory=pins,
                classifier=glass) as sorter:
        die()
        with caplog.at_level(logging.INFO), pytest.raises(GateError, match=r"^gate failure: gate flap failed: "
                                                                             r"I2C bus error$"):
            sorter.loop.run()
        tally = sorter.loop.tally
        assert not sorter.gates.devices["pusher"].value and sorter.gates.broken == {"flap": "I2C bus error"}
    records = rows(settings)
    failed = "gate failure: gate flap failed: I2C bus error"
    on_way = [r for r in records if r["error"] == f"{failed} (on its way to glass)"]
    after = [r for r in records if r["error"] == failed]
    assert on_way and on_way == records[:len(on_way)] and after == records[len(on_way):]  # none left sorted
    assert all(r["outcome"] == "error" and r["bin"] == "glass" and r["gate_action"] == "flap→-60°" for r in on_way)
    assert all(r["outcome"] == "error" and r["bin"] == "residual" and r["gate_action"] == "none" for r in after)
    daily = sqlite3.connect(settings.records.database).execute(
        "SELECT bin, outcome, items FROM daily WHERE items > 0 ORDER BY bin").fetchall()
    assert daily == [("glass", "error", len(on_way))] + ([("residual", "error", len(after))] if after else [])
    assert +tally.counts == {("glass", "error"): len(on_way), **({("residual", "error"): len(after)} if after else {})}
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
    errors = [r.message for r in caplog.records if r.levelno >= logging.ERROR]
    ids = ", ".join(str(r["id"]) for r in on_way)
    assert errors == ["gate failure, no more items into gates: gate flap failed: I2C bus error",
                      f"gate flap failed with {len(on_way)} item(s) on their way: item {ids} recorded error"]


def test_a_stage_error_is_that_items_error_record_and_the_items_after_it_sort(tiny_settings, caplog):
    def script(call):
        if call == 1:
            raise ValueError("tensor of the wrong shape")
        return one_hot("trash")

    with caplog.at_level(logging.INFO), Sorter(tiny_settings, source=Frames(picture(n) for n in range(4)),
                                               classifier=FakeClassifier(LABELS, script)) as sorter:
        tally = sorter.loop.run()
    assert [(r["outcome"], r["bin"], r["error"]) for r in rows(tiny_settings)] == [
        ("sorted", "residual", None), ("error", "residual", "classify failed: ValueError: tensor of the wrong shape"),
        ("sorted", "residual", None), ("sorted", "residual", None)]
    assert tally.items == 4
    lines = [r.message for r in caplog.records if "tensor of the wrong shape" in r.message]
    assert len(lines) == 1 and lines[0].startswith("item 2 frame 1: ? → residual [error] none")
    assert not any("could not be written" in r.message or r.exc_info for r in caplog.records)


class Failing(FrameCounter):
    """An observer that raises on every item (a broken page or publisher)."""

    def on_item(self, item_id, record):
        raise RuntimeError("observer broke")


def test_an_observer_that_raises_is_one_line_and_the_items_are_still_recorded(tiny_settings, caplog):
    counter = FrameCounter()
    with caplog.at_level(logging.ERROR), Sorter(tiny_settings, source=Frames(picture(n) for n in range(3)),
                                                observers=[Failing(), counter]) as sorter:
        tally = sorter.loop.run()
    assert tally.items == 3 and [r["outcome"] for r in rows(tiny_settings)] == ["sorted"] * 3
    assert [r.message for r in caplog.records] == [
        "observer Failing raised in on_item: RuntimeError: observer broke (not logged again)"]


def sorting_threads():
    return [t for t in threading.enumerate() if t.name == "sorting"]


def test_stop_with_an_item_in_hand_finishes_and_records_it_before_anything_closes(tiny_settings, caplog):
    release, stop = threading.Event(), threading.Event()
    held = FakeClassifier(LABELS, one_hot("trash"), hold=release)
    with caplog.at_level(logging.INFO), Sorter(tiny_settings, source=Frames(picture(n) for n in range(200)),
                                               classifier=held) as sorter:
        sorter.stream.period = 0.01
        runner = threading.Thread(target=sorter.loop.run, kwargs={"stop": stop})
        runner.start()
        deadline = time.monotonic() + 10
        while held.calls == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()  # the first item is in the classifier: a SIGTERM now
        time.sleep(0.3)
        assert runner.is_alive() and sorting_threads()  # the end of the run waits for the item in hand
        release.set()
        runner.join(10)
        assert not runner.is_alive() and not sorting_threads()
        tally = sorter.loop.tally
    records = rows(tiny_settings)
    assert records and tally.items == len(records) == held.calls  # every item found was classified and recorded
    assert {r["outcome"] for r in records} == {"sorted"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


def test_close_beside_a_hung_sorting_thread_leaves_it_the_records_until_it_ends(tiny_settings, caplog):
    release, stop = threading.Event(), threading.Event()
    held = FakeClassifier(LABELS, one_hot("trash"), hold=release)
    sorter = Sorter(tiny_settings, source=Frames(picture(n) for n in range(3)), classifier=held)
    sorter.loop.join_s = 0.2  # the end of the run gives up on the item in hand this soon
    stop.set()
    with caplog.at_level(logging.ERROR):
        sorter.loop.run(max_items=1)  # the classifier holds the one item
        sorter.close()  # gates safe, camera closed; not the records, which the sorting thread still uses
    assert [r.message for r in caplog.records] == [
        "sorting thread still busy 0.2 s after the end of the run; leaving it",
        "the sorting thread is still busy with an item: the classifier and the records are closed when it ends"]
    assert sorter.records.total() == 0 and sorting_threads()
    release.set()
    deadline = time.monotonic() + 10
    while sorting_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not sorting_threads()
    assert [r["outcome"] for r in rows(tiny_settings)] == ["sorted"]  # the item in hand got its record
    with pytest.raises(AttributeError):
        sorter.records.total()  # and the thread closed the records as it ended


def test_the_items_on_their_way_at_the_end_of_a_run_reach_their_gates_before_the_gates_go_safe(tiny_settings):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from tests.test_gates import duty

    pins = MockFactory(pin_class=MockPWMPin)
    glass = FakeClassifier(LABELS, one_hot("green-glass"))
    with Sorter(paced(tiny_settings), source=Frames([picture(0)]), pin_factory=pins, classifier=glass) as sorter:
        sorter.loop.run()  # the one item is recorded at once; its flap moves 0.55 s after it crossed the line
        assert [s.state for s in pins.pin(18).states if s.state] == [pytest.approx(duty(0))]  # not moved yet
        started = time.monotonic()
    assert 0.3 < time.monotonic() - started < 3  # the close waited for the flap's hold, no longer
    flap = [s.state for s in pins.pin(18).states if s.state]
    assert flap[1] == pytest.approx(duty(-60)) and flap[-1] == pytest.approx(duty(0))  # moved for it, then safe
    assert [(r["bin"], r["outcome"]) for r in rows(tiny_settings)] == [("glass", "sorted")]
