"""Item records in real SQLite: durable per item, readable after kill -9, clear error when the disk is full."""

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from edge.errors import RecordError
from edge.records import ItemRecord, Records


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
                                  "expected_cost; PRAGMA user_version = 1;")  # as the previous release made it
    with Records(path, readonly=True) as reader:  # `smartbin status` before the sorter was updated
        assert "reason" not in reader.recent()[0] and reader.total() == 1
    with Records(path) as records:
        decided = ItemRecord(**{**record(1).__dict__, "reason": "quarantine", "expected_cost": 4.7})
        records.add(decided)
        rows = records.in_order()
        assert [(r["reason"], r["expected_cost"]) for r in rows] == [(None, None), ("quarantine", 4.7)]
        assert records._db.execute("PRAGMA user_version").fetchone()[0] == 2 and records.total() == 2
