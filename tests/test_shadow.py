"""Shadow runs: a candidate model (the real runtime) beside the live one, only while the sorter is idle."""

import logging
import sqlite3
import time

from edge.app import Sorter
from edge.config import BUNDLED_MODEL
from edge.records import Records
from edge.service.logs import RepeatFilter
from edge.service.status import report
from edge.shadow import Shadow, summary
from edge.sources.folder import FolderSource
from tests.conftest import TINY_MODEL, make_settings
from tests.test_loop import Frames, picture


def test_a_shadow_waits_while_the_sorter_is_busy_and_drops_the_oldest_when_behind(tmp_path):
    busy = [True]
    shadow = Shadow(TINY_MODEL, tmp_path / "items.db", busy=lambda: busy[0])
    frames = Frames([picture(0)])
    frame = frames.read()
    for item_id in range(40):
        shadow.offer(item_id, [frame], "battery")
    time.sleep(0.3)
    assert shadow.done == 0 and shadow.skipped >= 40 - 32 - 1  # nothing while busy; the queue holds 32
    busy[0] = False
    deadline = time.monotonic() + 10
    while shadow.done < 32 and time.monotonic() < deadline:
        time.sleep(0.05)
    shadow.close()
    rows = sqlite3.connect(tmp_path / "items.db").execute("SELECT COUNT(*), MIN(item_id) FROM shadow").fetchone()
    assert rows[0] >= 31 and rows[1] >= 7  # the newest offers, the oldest dropped


def test_shadow_writes_that_fail_are_counted_and_their_warnings_collapse(tmp_path):
    shadow = Shadow(TINY_MODEL, tmp_path / "items.db", busy=lambda: False)
    with sqlite3.connect(tmp_path / "items.db") as db:  # the disk fills up: every write is refused
        db.execute("CREATE TRIGGER full BEFORE INSERT ON shadow BEGIN SELECT RAISE(ABORT, 'database or disk is "
                   "full'); END")
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(RepeatFilter())
    logging.getLogger("smartbin").addHandler(handler)
    try:
        frame = Frames([picture(0)]).read()
        for item_id in range(5):
            shadow.offer(item_id, [frame], "battery")
        deadline = time.monotonic() + 10
        while shadow.failed < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        shadow.close()
        logging.getLogger("smartbin").removeHandler(handler)
    assert shadow.failed == 5 and shadow.done == 0
    assert len(lines) == 1 and "database or disk is full" in lines[0]


def test_a_shadow_model_is_measured_beside_the_live_one_on_known_truths(tmp_path, garbage12, tiny_model):
    photos = tmp_path / "photos"
    for label in ("battery", "cardboard", "clothes", "shoes"):
        (photos / label).mkdir(parents=True)
        for photo in sorted((garbage12 / label).iterdir())[:2]:
            (photos / label / photo.name).symlink_to(photo)
    settings = make_settings(tmp_path, model={"path": tiny_model, "shadow": BUNDLED_MODEL},
                             camera={"fps": 0.0}, sorting={"votes": 1}, conveyor={"trigger": "frames"})
    with Sorter(settings, source=FolderSource(photos)) as sorter:
        sorter.loop.run()
        deadline = time.monotonic() + 30
        while sorter.loop.shadow.done < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
    with Records(settings.records.database, readonly=True) as records:
        figures = summary(records)
    assert figures["model"] == BUNDLED_MODEL.name and figures["items"] == 8 and figures["known"] == 8
    assert figures["top1"] >= 0.85 > figures["live_top1"]  # the shipped model beats the tiny one on real photos
    line = next(x for x in report(settings.records.database, 1, None) if x.startswith("shadow"))
    assert f"{BUNDLED_MODEL.name}" in line and "8 items" in line and "with a known truth" in line


def test_records_without_a_shadow_say_none(tmp_path, tiny_settings):
    with Sorter(tiny_settings, source=Frames([picture(1)])) as sorter:
        sorter.loop.run()
        assert summary(sorter.records) is None
    assert not [x for x in report(tiny_settings.records.database, 1, None) if x.startswith("shadow")]
