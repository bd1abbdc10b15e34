"""Records held while the database refuses them (a full disk, a long lock), in real SQLite and in the loop."""

import logging
import sqlite3
from pathlib import Path

import pytest

from edge.app import Sorter
from edge.errors import RecordError
from edge.held import HeldRecords, read_state, spilled
from edge.records import Records
from edge.service.unit import RUNTIME
from tests.test_loop import Frames, picture, rows
from tests.test_records import record


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_full_disk_holds_records_in_order_and_writes_them_when_space_is_back(tmp_path, caplog):
    records = Records(tmp_path / "items.db")
    clock = Clock()
    held = HeldRecords(records, retry_s=5.0, clock=clock)
    pages = records._db.execute("PRAGMA page_count").fetchone()[0]
    written = [item_id for n in range(3) for item_id, _ in held.add(record(n))]
    records._db.execute(f"PRAGMA max_page_count = {pages + 1}")  # what a full disk looks like to SQLite
    with caplog.at_level(logging.WARNING):
        for n in range(3, 200):
            written += [item_id for item_id, _ in held.add(record(n))]
            clock.now += 0.5
    assert held.held > 100
    assert sum("holding item records in memory" in r.message for r in caplog.records) == 1
    records._db.execute("PRAGMA max_page_count = 100000")  # space again
    clock.now += 5
    back = held.add(record(200))
    assert [r.frame for _, r in back][-1] == 200 and held.held == 0
    frames = [row["frame"] for row in records.in_order()]
    assert frames == list(range(201))  # none lost, none twice, in the order they were sorted
    assert "writable again" in caplog.records[-1].message
    records.close()


def test_a_locked_database_is_tried_again_only_after_the_retry_interval(tmp_path):
    records = Records(tmp_path / "items.db")
    records._db.execute("PRAGMA busy_timeout = 50")
    clock = Clock()
    held = HeldRecords(records, retry_s=5.0, clock=clock)
    reader = sqlite3.connect(tmp_path / "items.db", isolation_level=None)
    reader.execute("BEGIN EXCLUSIVE")  # a reader holding the lock far past the timeout
    assert held.add(record(0)) == [] and held.held == 1
    clock.now += 1
    assert held.add(record(1)) == []  # not tried: a lock would make every item wait out the timeout
    reader.execute("COMMIT")
    clock.now += 1
    assert held.add(record(2)) == []  # still inside the retry interval
    clock.now += 5
    assert [r.frame for _, r in held.add(record(3))] == [0, 1, 2, 3]
    records.close()


def test_other_write_failures_and_a_full_hold_are_errors(tmp_path):
    records = Records(tmp_path / "items.db")
    records._db.execute("PRAGMA query_only = ON")  # read-only: waiting will not help
    held = HeldRecords(records)
    with pytest.raises(RecordError, match="readonly"):
        held.add(record(0))
    assert [r.frame for r in held.unsaved()] == [0] and held.held == 0
    records._db.execute("PRAGMA query_only = OFF")
    records._db.execute(f"PRAGMA max_page_count = {records._db.execute('PRAGMA page_count').fetchone()[0]}")
    small = HeldRecords(records, limit=3, clock=Clock())
    n = 0
    while small.held < 3:
        small.add(record(n := n + 1))
    with pytest.raises(RecordError, match="4 item records held"):
        small.add(record(n + 1))
    records.close()


class DiskFills:
    """An observer that fills the database's "disk" once item ``full`` is written, and frees it again (if
    ``free``) once ten records are held."""

    def __init__(self, full, free=True):
        self.full, self.free, self.sorter = full, free, None

    def on_frame(self, frame):
        if self.free and self.sorter.loop.held.held >= 10:
            self.sorter.records._db.execute("PRAGMA max_page_count = 100000")

    def on_item(self, item_id, record):
        if item_id == self.full:
            db = self.sorter.records._db
            db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")


def test_the_loop_goes_on_sorting_through_a_full_disk_and_loses_no_record(tiny_settings, caplog):
    disk = DiskFills(full=5)
    source = Frames(picture(n) for n in range(40))
    source.live = False  # a replay: the frames wait for the sorting thread, so the disk frees up mid-run
    with Sorter(tiny_settings, source=source, observers=[disk]) as sorter:
        disk.sorter = sorter
        sorter.loop.held.retry_s = 0.0
        with caplog.at_level(logging.INFO):
            tally = sorter.loop.run()
    assert tally.items == 40
    assert [r["frame"] for r in rows(tiny_settings)] == list(range(40))  # in order, none lost
    assert sum(r.message.startswith("item (held) frame") for r in caplog.records) >= 10
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_run_that_ends_with_records_held_logs_them_and_fails(tiny_settings, caplog):
    disk = DiskFills(full=3, free=False)
    with Sorter(tiny_settings, source=Frames(picture(n) for n in range(30)), observers=[disk]) as sorter:
        disk.sorter = sorter
        with caplog.at_level(logging.ERROR), pytest.raises(RecordError, match="item records could not be written"):
            sorter.loop.run()
    unsaved = [r for r in caplog.records if r.message.startswith("unsaved record: ")]
    assert len(unsaved) + len(rows(tiny_settings)) == 30


def test_held_records_spill_to_a_file_and_are_taken_back_once(tmp_path, caplog):
    records = Records(tmp_path / "items.db")
    spill = tmp_path / "run" / "held-records.jsonl"
    freed = []
    held = HeldRecords(records, retry_s=0.0, clock=Clock(), spill=spill, make_space=lambda: freed.append(1) or 0)
    records._db.execute(f"PRAGMA max_page_count = {records._db.execute('PRAGMA page_count').fetchone()[0]}")
    n = 0
    while held.held < 5:
        held.add(record(n := n + 1))
    assert held.disk_full and freed  # a try on a full disk made room first
    state = read_state(spill)
    assert state is not None and state["held"] == 5 and state["disk_full"] and "SQLITE_FULL" in state["error"]
    assert held.spill_held() and held.held == 0 and spilled(spill) == 5
    written_before = records.total()
    records._db.execute("PRAGMA max_page_count = 100000")
    copy = spill.read_text()
    spill.write_text(copy + "not a record\n")
    with caplog.at_level(logging.WARNING):
        back = HeldRecords(records, spill=spill).take_back()
    assert [r.frame for _, r in back] == list(range(n - 4, n + 1)) and not spill.exists()
    assert read_state(spill) is None  # nothing held any more
    spill.write_text(copy)  # the same records again (a crash before the file was removed): no second row
    assert len(HeldRecords(records, spill=spill).take_back()) == 5
    assert records.total() == written_before + 5 == n
    assert [row["frame"] for row in records.in_order()] == list(range(1, n + 1))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [f"spill file {spill} line 6 is not an item record: not a record"]
    records.close()


def test_held_records_stay_held_where_the_spill_file_cannot_be_written(tmp_path, caplog):
    records = Records(tmp_path / "items.db")
    (tmp_path / "file").write_text("")
    held = HeldRecords(records, spill=tmp_path / "file" / "held-records.jsonl")  # its folder is a file
    records._db.execute(f"PRAGMA max_page_count = {records._db.execute('PRAGMA page_count').fetchone()[0]}")
    while held.held < 2:
        held.add(record(held.held))
    with caplog.at_level(logging.ERROR):
        assert not held.spill_held() and held.held == 2
    assert "cannot spill 2 held item records" in caplog.records[-1].getMessage()
    records.close()


def test_a_run_that_fails_with_records_held_spills_them_for_the_next_start(tmp_path, tiny_settings, caplog):
    spill = tmp_path / "run" / "held-records.jsonl"
    settings = tiny_settings.model_copy(update={"records": tiny_settings.records.model_copy(update={"spill": spill})})
    disk = DiskFills(full=3, free=False)
    with Sorter(settings, source=Frames(picture(n) for n in range(30)), observers=[disk]) as sorter:
        disk.sorter = sorter
        sorter.loop.held.limit = 5
        with caplog.at_level(logging.WARNING), pytest.raises(RecordError, match="6 item records held"):
            sorter.loop.run()
    unsaved = [r for r in caplog.records if r.message.startswith("unsaved record: ")]  # items after the failure
    assert spilled(spill) == 6 and len(unsaved) + len(rows(settings)) + 6 == 30
    with Sorter(settings, source=Frames(picture(n) for n in range(30, 32))) as sorter:  # space again: taken back
        sorter.loop.run()
    assert not spill.exists() and len(rows(settings)) == 30 - len(unsaved) + 2


def test_the_unit_keeps_a_runtime_directory_for_the_spill_file_across_stops():
    unit = (Path(__file__).parent.parent / "systemd" / "smartbin.service").read_text().splitlines()
    assert {f"RuntimeDirectory={RUNTIME.name}", "RuntimeDirectoryPreserve=yes"} <= set(unit)  # what status reads
    assert RUNTIME.parent == Path("/run")


def test_records_taken_back_onto_a_disk_still_full_are_written_when_it_frees_and_the_spill_file_goes(tmp_path):
    records = Records(tmp_path / "items.db")
    spill = tmp_path / "run" / "held-records.jsonl"
    spill.parent.mkdir()
    spill.write_text("".join(record(n).to_json() + "\n" for n in range(3)))
    records._db.execute(f"PRAGMA max_page_count = {records._db.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(RecordError, match="SQLITE_FULL"):  # full to the last page
        for n in range(100, 200):
            records.add(record(n))
    before = records.total()
    clock = Clock()
    held = HeldRecords(records, retry_s=5.0, clock=clock, spill=spill)
    assert held.take_back() == [] and held.held == 3 and spill.exists()  # still full: kept, in case of a kill
    records._db.execute("PRAGMA max_page_count = 100000")
    clock.now += 5
    assert [r.frame for _, r in held.add(record(3))] == [0, 1, 2, 3] and records.total() == before + 4
    assert not spill.exists() and read_state(spill) is None
    records.close()
