"""Teaching a running bin, end to end, with nothing copied by hand: a real ``smartbin run`` (the belt simulator
with real photos, the page on with a token) keeps frames; they are labelled on its page; ``smartbin learn --from
--to`` (the real ResNet-50 and converter, a small fast configuration) learns from them and stages the result; the
sorter restarts in place with it as its shadow; the page installs it and the next records carry its sha256; the
page rolls it back and the next records carry the bundled model's again. Labelling with the keys in Chromium is
tested in tests/test_web.py."""

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.config import BUNDLED_MODEL
from edge.model_card import sha256_of
from models import learn
from models.split import read_manifest, select
from tests.conftest import LABELS, PROJECT
from tests.test_web import request

TOKEN = "teach-the-bin-its-belt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> dict:
    status, _, body = request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    return json.loads(body)


def post(url: str, body: dict) -> dict:
    status, _, answer = request(url, "POST", json.dumps(body).encode(),
                                {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert status == 200, answer
    return json.loads(answer)


def until(what, timeout: float, process: subprocess.Popen):
    """Poll ``what()`` until it is truthy (connection errors while the sorter restarts count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the sorter died"
        try:
            value = what()
        except (OSError, AssertionError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s")


def newest_sha256(database: Path, after: int) -> set[str]:
    """The models of the newest three records, once all three came after ``after``."""
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT id, model_sha256 FROM items ORDER BY id DESC LIMIT 3").fetchall()
    return {sha for item_id, sha in rows} if len(rows) == 3 and min(r[0] for r in rows) > after else set()


def last_id(database: Path) -> int:
    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM items").fetchone()[0])


@pytest.fixture
def photos(tmp_path, garbage12):
    """Three val photos of each class, as the simulator's items."""
    out = tmp_path / "photos"
    entries = select(read_manifest(PROJECT / "models" / "split.csv"), "val")
    for label in LABELS:
        for entry in [e for e in entries if e.label == label][:3]:
            (out / label).mkdir(parents=True, exist_ok=True)
            (out / label / Path(entry.path).name).symlink_to(garbage12 / entry.path)
    return out


def test_a_bin_is_taught_its_belt_from_its_page_and_one_learn_command(tmp_path, photos, garbage12):
    port = free_port()
    state = tmp_path / "state"
    text = (PROJECT / "edge" / "smartbin.toml").read_text()
    text = text.replace("[model]\n", "[model]\ntrial_items = 0\n", 1)
    text = text.replace("[simulator]\n", f'[simulator]\nitems = "{photos}"\nspacing_m = 0.3\n', 1)
    text = text.replace("[records]\n", f'[records]\npath = "{state / "items.db"}"\n', 1)
    text = text.replace("[retrain]\n", "[retrain]\nkeep_below = 1.0\nmin_free_mb = 0\n", 1)
    text = text.replace("[web]\n", f'[web]\nenabled = true\nport = {port}\ntoken = "{TOKEN}"\n', 1)
    text = text.replace("[gpio]\n", '[gpio]\npin_factory = "mock"\n', 1)
    config = tmp_path / "smartbin.toml"
    config.write_text(text)
    url = f"http://127.0.0.1:{port}/"
    log = (tmp_path / "run.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], cwd=PROJECT,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        # the operator labels what the bin kept (the simulator knows each item's truth: the operator's eye here)
        teach = until(lambda: (t := get(url + "api/teach?limit=500"))["counts"]["left"] >= 30 and t, 240, process)
        for frame in teach["frames"]:
            facts = json.loads((state / "uncertain" / f"{frame['id']:08d}.json").read_text())
            post(url + f"api/teach/{frame['id']}", {"label": facts["truth"], "who": "test"})
        token = tmp_path / "token"
        token.write_text(TOKEN)
        out = tmp_path / "learnt" / "site.tflite"
        argv = ["--from", url, "--to", url, "--token-file", str(token), "--out", str(out), "--work", str(tmp_path),
                "--current", str(BUNDLED_MODEL), "--cache", str(tmp_path / "cache"), "--train-photos", "36",
                "--test-photos", "24", "--val-photos", "24", "--epochs", "1", "--calibration-count", "24",
                "--max-drop", "100", "--force", "--data", str(garbage12),
                "--manifest", str(PROJECT / "models" / "split.csv")]
        assert learn.main(argv) == 0
        report = json.loads(out.with_suffix(".learn.json").read_text())  # one epoch: --force stages it whatever
        assert report["verdict"] == "better" or report["verdict"].startswith("not better: ")
        assert report["site_held_out"]["items"] * 4 >= sum(report["labelled"].values())
        assert set(report["trained_items"]).isdisjoint(report["held_out_items"])
        learnt = sha256_of(out)

        # staged: the sorter restarts with it as its shadow, compared on the labelled items it did not learn
        staged = until(lambda: (s := get(url + "api/model")["staged"]) and s.get("compared") and s.get("shadow")
                       and s, 180, process)
        assert staged["sha256"] == learnt and staged["compared"]["frames"] == report["site_held_out"]["frames"]
        before = last_id(state / "items.db")
        post(url + "api/model/install", {"sha256": learnt})
        until(lambda: newest_sha256(state / "items.db", before) == {learnt}, 120, process)

        before = last_id(state / "items.db")
        post(url + "api/model/rollback", {})
        until(lambda: newest_sha256(state / "items.db", before) == {sha256_of(BUNDLED_MODEL)}, 120, process)
        history = [e["action"] for e in get(url + "api/model")["history"]]
        assert history[-3:] == ["stage", "install", "rollback"]
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        log.close()
    output = (tmp_path / "run.log").read_text()
    assert code == 0, output[-3000:]
    assert output.count("restarting the sorter:") == 3 and "Traceback" not in output
