"""Item records in real SQLite: durable per item, readable after kill -9, clear error when the disk is full."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from edge.errors import RecordError
from edge.records import NOT_ITEM, SCHEMA_VERSION, ItemRecord, Records, disk_full, local_midnight


def record(n: int = 0, outcome: str = "sorted") -> ItemRecord:
    return ItemRecord(time=1000.0 + n, frame=n, source="test", bin="glass", gate_action="flap→-60°",
                      outcome=outcome, model="m.tflite", label="green-glass", confidence=0.9,
                      top_k=(("green-glass", 0.9), ("white-glass", 0.05)), latency_ms={"classify": 12.5})


def test_add_commits_and_reads_back(tmp_path):
    with Records(tmp_path / "items.db") as records:
        first = records.add(record(0))
        records.add(record(1, "rejected"))
        # a second connection (another process, e.g. `smartbin status`) sees both without a close
        other = sqlite3.connect(tmp_path / "items.db")
        assert other.execute("SELECT COUNT(*) FROM items").fetchone() == (2,)
        rows = records.recent()
    assert first == 1 and [r["outcome"] for r in rows] == ["rejected", "sorted"]
    assert rows[0]["top_k"] == [["green-glass", 0.9], ["white-glass", 0.05]]
    assert rows[0]["latency_ms"] == {"classify": 12.5}


def test_kill_9_mid_run_loses_no_committed_record(tmp_path):
    path = tmp_path / "items.db"
    writer = f"""
import sys; sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
from test_records import record
from edge.records import Records
records = Records({str(path)!r})
n = 0
while True:
    records.add(record(n)); n += 1
    print(n, flush=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    committed = 0
    deadline = time.monotonic() + 30
    while committed < 200 and time.monotonic() < deadline:
        committed = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    count = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    assert count >= committed >= 200


def test_full_disk_is_a_record_error(tmp_path):
    records = Records(tmp_path / "items.db")
    records._db.execute("PRAGMA max_page_count = 8")  # what a full disk looks like to SQLite
    with pytest.raises(RecordError, match="database or disk is full"):
        for n in range(10_000):
            records.add(record(n))
    records.close()


def test_unwritable_location_is_a_record_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RecordError, match="cannot open item database"):
        Records(tmp_path / "file" / "items.db")


def test_counts_per_bin_and_outcome(tmp_path):
    with Records(tmp_path / "items.db") as records:
        for n, outcome in enumerate(["sorted", "sorted", "rejected"]):
            records.add(record(n, outcome))
        assert records.counts() == {("glass", "sorted"): 2, ("glass", "rejected"): 1}
        assert records.counts(since=1001.5) == {("glass", "rejected"): 1}


def test_the_wal_stays_small_while_running_even_with_a_reader(tmp_path):
    path = tmp_path / "items.db"
    with Records(path) as records:
        reader = sqlite3.connect(path)  # the web page or `status`, reading now and then
        for n in range(1500):
            records.add(record(n))
            if n % 100 == 0:
                reader.execute("SELECT COUNT(*) FROM items").fetchone()
        wal = path.with_name("items.db-wal").stat().st_size
        reader.close()
    assert wal < 1.5 * 1024 * 1024  # SQLite alone lets it reach its 1000-page (4 MB) auto-checkpoint


def recount(db: sqlite3.Connection) -> list[tuple]:
    return db.execute("SELECT date(time, 'unixepoch', 'localtime'), bin, outcome, COUNT(*) FROM items "
                      "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3").fetchall()


def spread_items(records: Records, n: int) -> None:
    """Items over three days, in two bins, with every fifth an error."""
    for i in range(n):
        item = record(i, "error" if i % 5 == 0 else "sorted")
        records.add(ItemRecord(**{**item.__dict__, "time": 1_700_000_000.0 + i * 3000.0,
                                  "bin": ("glass", "residual")[i % 2]}))


def test_the_daily_aggregates_equal_a_recount_and_answer_the_same_as_the_items(tmp_path):
    with Records(tmp_path / "items.db") as records:
        spread_items(records, 90)
        daily = records._db.execute("SELECT day, bin, outcome, items FROM daily ORDER BY 1, 2, 3").fetchall()
        assert daily == recount(records._db) and len({d for d, *_ in daily}) == 5  # 90 × 50 min: 3.1 days
        assert records.total() == 90 == records._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        now = 1_700_000_000.0 + 89 * 3000.0  # the last item: since its midnight = its day
        assert records.today(now) == records.counts(since=local_midnight(now)) != {}
        assert records.last_error()["id"] == 86  # item 85 (0-based), the last multiple of five
        plan = " ".join(str(r) for r in records._db.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM items WHERE outcome = 'error' ORDER BY id DESC LIMIT 1"))
        assert "items_errors" in plan  # an index, not a scan of the table


def test_a_database_from_before_the_aggregates_is_counted_once_and_read_the_same_meanwhile(tmp_path):
    path = tmp_path / "items.db"
    with Records(path) as records:
        spread_items(records, 40)
        records._db.executescript("DROP TRIGGER items_daily; DELETE FROM daily; PRAGMA user_version = 0;")
        records.add(record(99))  # written by an older smartbin: no aggregate
    with Records(path, readonly=True) as reader:  # `smartbin status` before the sorter was updated
        assert not reader.has_aggregates and reader.total() == 41
    with Records(path) as records:  # the updated sorter's first start
        assert records.has_aggregates and records.total() == 41
        assert records._db.execute("SELECT day, bin, outcome, items FROM daily ORDER BY 1, 2, 3").fetchall() \
            == recount(records._db)
        records.add(record(100))
        assert records.total() == 42


def test_the_decision_reason_and_expected_cost_are_kept_and_an_older_table_gains_their_columns(tmp_path):
    path = tmp_path / "items.db"
    with Records(path) as records:
        records.add(record(0))  # failed or decided by an older release: no reason, no cost
        records._db.executescript("ALTER TABLE items DROP COLUMN reason; ALTER TABLE items DROP COLUMN "
                                  "expected_cost; ALTER TABLE items DROP COLUMN model_sha256; "
                                  "ALTER TABLE items DROP COLUMN passing_s; "
                                  "PRAGMA user_version = 1;")  # as an earlier release made it
    with Records(path, readonly=True) as reader:  # `smartbin status` before the sorter was updated
        assert "reason" not in reader.recent()[0] and reader.total() == 1
    with Records(path) as records:
        decided = ItemRecord(**{**record(1).__dict__, "reason": "quarantine", "expected_cost": 4.7, "passing_s": 0.8})
        records.add(decided)
        rows = records.in_order()
        assert [(r["reason"], r["expected_cost"], r["passing_s"]) for r in rows] == [(None, None, None),
                                                                                     ("quarantine", 4.7, 0.8)]
        assert records._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION and records.total() == 2


def test_retention_deletes_only_what_is_due_and_the_aggregates_still_equal_the_count_of_every_item(tmp_path):
    path = tmp_path / "items.db"
    with Records(path) as records:
        spread_items(records, 90)  # one item every 50 min from 1_700_000_000
        everything = recount(records._db)
        today = records.today(1_700_000_000.0 + 89 * 3000.0)
        cutoff = 1_700_000_000.0 + 40 * 3000.0
        deleted = 0
        while batch := records.prune(before=cutoff, batch=7):  # small batches: several transactions
            assert batch <= 7
            deleted += batch
        assert deleted == 40 and records._db.execute("SELECT MIN(time) FROM items").fetchone()[0] == cutoff
        assert records._db.execute("SELECT day, bin, outcome, items FROM daily ORDER BY 1, 2, 3").fetchall() \
            == everything  # the counts outlive the items
        assert records.total() == 90 and records.today(1_700_000_000.0 + 89 * 3000.0) == today
        assert records.last_error()["id"] == 86 and records.recent(1)[0]["id"] == 90
        assert records.prune(before=cutoff) == 0  # nothing more is due


def test_retention_by_size_drops_the_oldest_first_and_the_file_shrinks(tmp_path):
    path = tmp_path / "items.db"
    with Records(path) as records:
        assert records._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # a new database: incremental
        for i in range(3000):
            records.add(ItemRecord(**{**record(i).__dict__, "error": "x" * 200}))
        records._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        full = path.stat().st_size
        cap = records.used_bytes() // 3
        while records.prune(max_bytes=cap):
            pass
        left = records._db.execute("SELECT MIN(id), COUNT(*) FROM items").fetchone()
        assert records.used_bytes() <= cap and left[0] + left[1] - 1 == 3000  # the newest are the ones kept
        records._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert path.stat().st_size < full / 2 and records.total() == 3000


def test_the_retention_thread_prunes_at_start_and_survives_a_broken_database(tmp_path, caplog):
    import logging

    from edge.service.retention import Retention

    path = tmp_path / "items.db"
    with Records(path) as records:
        spread_items(records, 30)
    now = 1_700_000_000.0 + 29 * 3000.0
    retention = Retention(path, keep_days=(now - (1_700_000_000.0 + 10 * 3000.0)) / 86_400, max_mb=0)
    assert retention.run_once(now=now) == 10
    with Records(path, readonly=True) as records:
        assert records.total() == 30 and records._db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 20
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING):
        worker = Retention(broken, keep_days=1, max_mb=0, interval_s=0.05).start()
        time.sleep(0.3)
        worker.stop()
    assert any("retention: cannot open item database" in r.message for r in caplog.records)
    assert not Retention(path, keep_days=0, max_mb=0).enabled


def test_labels_are_set_replaced_undone_counted_and_outlive_a_reopen_and_the_retention_of_their_items(tmp_path):
    path = tmp_path / "items.db"
    with Records(path) as records:
        spread_items(records, 10)
        assert records.labels() == [] and records.label_counts() == {}
        records.set_label(3, "paper", "ann", 2000.0, "green-glass", 0.9)
        records.set_label(5, NOT_ITEM, "operator", 2001.0, "green-glass", 0.4)
        records.set_label(3, "cardboard", "bob", 2002.0, "green-glass", 0.9)  # a second look replaces the first
        records.set_label(7, "paper", "ann", 2003.0, None, None)
        assert records.remove_label(7) and not records.remove_label(7) and not records.remove_label(99)
    with Records(path) as records:
        assert [tuple(r.values()) for r in records.labels()] == [
            (5, NOT_ITEM, "operator", 2001.0, "green-glass", 0.4), (3, "cardboard", "bob", 2002.0, "green-glass", 0.9)]
        assert records.label_counts() == {"cardboard": 1, NOT_ITEM: 1}
        while records.prune(before=1e12):  # retention deletes every item
            pass
        assert records._db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
        assert [r["item_id"] for r in records.labels()] == [5, 3] and records.label_counts()[NOT_ITEM] == 1


def test_a_database_from_before_the_labels_gains_their_table_and_reads_as_unlabelled_meanwhile(tmp_path):
    path = tmp_path / "items.db"
    with Records(path) as records:
        records.add(record(0))
        records._db.executescript("DROP TABLE labels; PRAGMA user_version = 4;")  # as the previous release made it
    with Records(path, readonly=True) as reader:  # the page or `smartbin frames` before the sorter was updated
        assert reader.labels() == [] and reader.label_counts() == {}
    with Records(path) as records:
        assert records._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        records.set_label(1, "paper", "ann", 2000.0, "green-glass", 0.9)
        assert records.label_counts() == {"paper": 1} and records.total() == 1


def test_database_errors_carry_their_sqlite_code_and_whether_they_may_pass(tmp_path):
    records = Records(tmp_path / "items.db")
    records.add(record(0))
    records._db.execute(f"PRAGMA max_page_count = {records._db.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(RecordError) as full:
        for n in range(1, 100):
            records.add(record(n))
    assert (full.value.code, full.value.transient, disk_full(full.value)) == ("SQLITE_FULL", True, True)
    assert str(full.value).endswith("database or disk is full (SQLITE_FULL)")
    records._db.execute("PRAGMA max_page_count = 100000")
    records._db.execute("PRAGMA busy_timeout = 50")
    locker = sqlite3.connect(tmp_path / "items.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(RecordError) as busy:
        records.add(record(100))
    assert (busy.value.code, busy.value.transient, disk_full(busy.value)) == ("SQLITE_BUSY", True, False)
    locker.execute("COMMIT")
    records._db.execute("PRAGMA query_only = ON")
    with pytest.raises(RecordError) as readonly:
        records.set_counter("x", 1)
    assert (readonly.value.code, readonly.value.transient) == ("SQLITE_READONLY", False)
    records.close()
    (tmp_path / "junk.db").write_bytes(b"not a database " * 1000)
    with pytest.raises(RecordError) as junk:
        Records(tmp_path / "junk.db")
    assert (junk.value.code, junk.value.transient) == ("SQLITE_NOTADB", False)
    with Records(tmp_path / "items.db", readonly=True) as reader, pytest.raises(
            RecordError, match=r"no such table: nowhere \(SQLITE_ERROR\)") as read:
        reader.query("SELECT * FROM nowhere")
    assert not read.value.transient


def test_a_record_written_twice_is_one_row_with_one_id(tmp_path):
    with Records(tmp_path / "items.db") as records:
        first, again = record(0), record(0)
        assert first.uid != again.uid  # each record its own uid
        ids = [records.add(first), records.add(record(1)), records.add(first)]
        assert ids == [1, 2, 1] and records.total() == 2 and [r["frame"] for r in records.in_order()] == [0, 1]
        assert ItemRecord.from_row(json.loads(first.to_json())) == first
