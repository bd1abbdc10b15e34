"""Faults a bin meets in months of running, each on its own: a camera that stalls, gives dead frames or
vanishes and comes back; a service killed and restarted as systemd does it; and a short fault soak of the
whole service (``edge.bench.fault_soak``) with every fault at once."""

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from dataclasses import replace

import pytest

from edge.bench import fault_soak
from edge.bench.supervise import Supervisor, UnitPolicy, seconds
from edge.errors import CameraError, CameraStalled
from edge.fakes import Fault, FaultyCamera
from edge.held import spilled
from edge.records import Records
from edge.sources import FrameStream, open_waiting
from edge.sources.base import FrameSource
from edge.sources.folder import FolderSource
from tests.conftest import TINY_MODEL, make_settings
from tests.test_loop import picture, write_config


class Endless(FrameSource):
    """Random pictures for ever."""

    name = "frames"

    def read(self):
        return self._frame(picture(self._count))


def endless():
    return Endless()


def test_a_stalled_camera_becomes_a_stall_error_and_dead_frames_are_flat():
    now = time.monotonic()
    camera = FaultyCamera(endless(), [Fault("dead", now, now + 0.3), Fault("stall", now + 0.3, now + 5)])
    camera.open()
    frame = camera.read()
    assert frame is not None and int(frame.rgb.max()) == 0  # dead: no picture
    stream = FrameStream(camera, stall_timeout_s=0.5).start()
    with pytest.raises(CameraStalled, match=r"no frame from frames for 0\.5 s"):
        while True:
            next(stream)
    stream.stop()


def test_a_camera_that_vanishes_fails_reads_and_opens_until_it_is_back(caplog):
    now = time.monotonic()
    camera = FaultyCamera(endless(), [Fault("gone", now + 0.2, now + 1.2)])
    camera.open()
    assert camera.read() is not None
    time.sleep(0.25)
    with pytest.raises(CameraError, match="disconnected"):
        camera.read()
    with caplog.at_level(logging.WARNING):
        open_waiting(camera, wait_s=5.0, retry_s=0.2)  # waits for it, as the service does at start
    assert time.monotonic() >= now + 1.2 and camera.read() is not None
    messages = [r.message for r in caplog.records]
    assert len(messages) == 2 and "no camera found" in messages[0] and messages[1] == "frames is back"


def test_a_camera_gone_for_longer_than_the_wait_is_the_error_and_a_replay_is_not_waited_for(tmp_path):
    now = time.monotonic()
    camera = FaultyCamera(endless(), [Fault("gone", now, now + 60)])
    started = time.monotonic()
    with pytest.raises(CameraError, match="no camera found"):
        open_waiting(camera, wait_s=0.6, retry_s=0.2)
    assert 0.3 < time.monotonic() - started < 2
    started = time.monotonic()
    with pytest.raises(CameraError):
        open_waiting(FolderSource(tmp_path / "missing"), wait_s=30)
    assert time.monotonic() - started < 1


def test_the_supervisor_follows_the_units_own_restart_settings():
    policy = UnitPolicy.read()
    assert (policy.restart_s, policy.watchdog_s, policy.prevent_exit) == (2.0, 30.0, frozenset({2}))
    assert (policy.start_interval_s, policy.start_burst) == (600.0, 30)
    assert seconds("10min") == 600 and seconds("100ms") == pytest.approx(0.1) and seconds("1min 30s") == 90


CHILD = textwrap.dedent("""
    import sys, time
    from edge.service.notify import Notifier
    notifier = Notifier()
    notifier.ready("up")
    for _ in range(int(sys.argv[1])):
        time.sleep(0.1)
        notifier.ping()
    time.sleep(float(sys.argv[2]))
    sys.exit(int(sys.argv[3]))
""")


def supervise(tmp_path, pings, then_s, code, **policy):
    unit = replace(UnitPolicy.read(), restart_s=0.1, **policy)
    safe = []
    supervisor = Supervisor([sys.executable, "-c", CHILD, str(pings), str(then_s), str(code)],
                            tmp_path / "journal.log", unit, stop_post=lambda: safe.append(time.monotonic()))
    return supervisor, safe


def test_a_killed_service_is_restarted_with_gates_safe_first_and_a_crash_loop_is_given_up(tmp_path):
    supervisor, safe = supervise(tmp_path, 1000, 0, 0, start_burst=3)
    supervisor.start()
    deadline = time.monotonic() + 20
    while not any(e.kind == "ready" for e in supervisor.events) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert supervisor.kill(signal.SIGKILL)
    while sum(e.kind == "ready" for e in supervisor.events) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    kinds = [e.kind for e in supervisor.events]
    assert kinds[:6] == ["start", "ready", "exit", "stop-post", "start", "ready"]
    assert supervisor.events[2].detail == "signal SIGKILL" and len(safe) == 1
    supervisor.stop()
    assert [e.kind for e in supervisor.events][-2:] == ["exit", "stop-post"] and len(safe) == 2

    looping, _ = supervise(tmp_path, 0, 0, 1, start_burst=3)  # exits 1 at once, every time
    looping.start()
    while not looping.failed and time.monotonic() < deadline + 20:
        time.sleep(0.05)
    assert looping.failed and [e.kind for e in looping.events].count("start") == 3
    assert looping.events[-1].kind == "gave-up"
    looping.stop()


def test_the_watchdog_aborts_a_service_that_stops_pinging_and_exit_2_is_not_restarted(tmp_path):
    supervisor, _ = supervise(tmp_path, 2, 60, 0, watchdog_s=1.0, start_burst=2)
    supervisor.start()
    deadline = time.monotonic() + 20
    while not any(e.kind == "exit" for e in supervisor.events) and time.monotonic() < deadline:
        time.sleep(0.05)
    exits = [e for e in supervisor.events if e.kind in ("watchdog", "exit")]
    assert [e.kind for e in exits][:2] == ["watchdog", "exit"] and exits[1].detail == "signal SIGABRT"
    supervisor.stop()
    config_error, _ = supervise(tmp_path, 0, 0, 2)
    config_error.start()
    time.sleep(2)
    assert [e.kind for e in config_error.events].count("start") == 1 and config_error.pid is None
    config_error.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="the disk-full fault needs a tmpfs (root)")
def test_a_short_soak_of_every_fault_loses_no_record_and_sends_no_item_to_a_wrong_bin(tmp_path):
    settings = make_settings(tmp_path)
    state = tmp_path / "state"
    with fault_soak.small_disk(state, 24) as disk:
        (tmp_path / "model").mkdir()
        model = tmp_path / "model" / "tiny12.tflite"
        for suffix in (".tflite", ".json"):
            model.with_suffix(suffix).write_bytes(TINY_MODEL.with_suffix(suffix).read_bytes())
        soak = fault_soak.soak_settings(settings, state, None, model)
        figures = fault_soak.run(soak, tmp_path, items=10_000, every_s=2.0, seed=3, disk=disk,
                                 progress=lambda line: None, max_faults=7)  # one of each kind
    assert figures["integrity"] == "ok" and figures["ids_contiguous"] and not figures["gave_up"]
    assert figures["records_lost"] == 0 and figures["unsaved_logged"] == 0
    assert figures["belt"].get("wrong bin during a fault", 0) == 0, figures["wrong_bin"]
    done = {kind.split(":")[0] for kind in figures["faults"]}
    assert done >= {"kill", "stall", "dead", "gone", "lock", "full", "model"}, figures["faults"]
    safe, exits = figures["gates_safe_after_exit"].split(" of ")
    assert safe == exits and int(exits) >= 4
    assert figures["start_to_ready_s"]["max"] < 10, figures["slow_starts"]
    assert figures["restart_to_first_item_s"]["max"] < 10


class Service:
    """``smartbin run`` in a subprocess with the unit's runtime directory (``RUNTIME_DIRECTORY``), its output
    (the journal) read line by line."""

    def __init__(self, config, runtime):
        env = {**os.environ, "RUNTIME_DIRECTORY": str(runtime), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    def count(self, text):
        return sum(text in line for line in list(self.lines))

    def sorted(self, n, timeout=60.0):
        """Wait until ``n`` items are sorted."""
        deadline = time.monotonic() + timeout
        while len(self.items()) < n:
            assert self.proc.poll() is None and time.monotonic() < deadline, "".join(self.lines[-20:])
            time.sleep(0.1)

    def wait_for(self, text, n=1, timeout=60.0):
        deadline = time.monotonic() + timeout
        while self.count(text) < n:
            assert self.proc.poll() is None and time.monotonic() < deadline, "".join(self.lines[-20:])
            time.sleep(0.1)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.reader.join(timeout=5)
        return code

    def items(self):
        """The item lines: one per item sorted, written or held."""
        return [line for line in self.lines if re.search(r"smartbin\.items: item (\d+|\(held\)) frame", line)]


def disk_config(tmp_path, tiny_model, state, retrain=False, served=False):
    """The test config with the records on ``state``; ``served``: with the web page and metrics on free ports."""
    text = write_config(tmp_path, tiny_model).read_text().replace(
        f'path = "{tmp_path / "items.db"}"', f'path = "{state / "items.db"}"').replace(
        "[retrain]", f"[retrain]\nenabled = {str(retrain).lower()}\nsample_share = 1.0\nmin_free_mb = 0.0")
    if served:
        text = text.replace("[web]", "[web]\nenabled = true\nport = 0").replace(
            "[metrics]", "[metrics]\nenabled = true\nport = 0")
    return text


def served_at(service, what):
    """The URL that ``smartbin run`` logged for ``what`` ("web page at", "metrics at")."""
    line = next(line for line in service.lines if f" {what} http://" in line)
    return re.search(r"http://\S+", line).group(0)


def rows_of(database):
    with Records(database, readonly=True) as records:
        return records.in_order()


@pytest.mark.skipif(os.geteuid() != 0, reason="a real full disk needs a tmpfs (root)")
def test_a_disk_full_for_30_s_mid_run_loses_no_record_and_the_run_exits_0(tmp_path, tiny_model):
    state = tmp_path / "state"
    with fault_soak.small_disk(state, 16) as mounted:
        assert mounted
        config = tmp_path / "smartbin.toml"
        config.write_text(disk_config(tmp_path, tiny_model, state))
        service = Service(config, tmp_path / "run")
        service.sorted(20)
        ballast = fault_soak.fill_disk(state)  # to the last byte
        assert shutil.disk_usage(state).free < 64 * 1024
        service.wait_for("holding item records in memory")
        time.sleep(30)
        held = service.count("item (held)")
        ballast.unlink()
        service.wait_for("item database writable again")
        sorted_after = len(service.items())
        service.sorted(sorted_after + 10)
        assert service.stop() == 0
        rows = rows_of(state / "items.db")
    output = "".join(service.lines)
    assert "Traceback" not in output and "unsaved record" not in output
    assert held >= 20  # sorting went on while the disk was full
    assert [row["id"] for row in rows] == list(range(1, len(rows) + 1))
    assert len(rows) == len(service.items()) and len({row["uid"] for row in rows}) == len(rows)
    assert service.count("holding item records in memory") == 1
    assert f"done: {len(rows)} items" in service.lines[-1]


@pytest.mark.skipif(os.geteuid() != 0, reason="a real full disk needs a tmpfs (root)")
def test_records_held_on_a_disk_that_stays_full_are_spilled_at_the_stop_and_taken_back_at_the_restart(
        tmp_path, tiny_model):
    state, runtime = tmp_path / "state", tmp_path / "run"
    spill = runtime / "held-records.jsonl"
    with fault_soak.small_disk(state, 16) as mounted:
        assert mounted
        config = tmp_path / "smartbin.toml"
        config.write_text(disk_config(tmp_path, tiny_model, state, served=True))
        first = Service(config, runtime)
        first.sorted(10)
        ballast = fault_soak.fill_disk(state)
        first.wait_for("holding item records in memory")
        first.sorted(len(first.items()) + 10)
        health = json.loads(urllib.request.urlopen(served_at(first, "web page at") + "api/health", timeout=10).read())
        metrics = urllib.request.urlopen(served_at(first, "metrics at"), timeout=10).read().decode()
        status = subprocess.run([sys.executable, "-m", "edge.cli", "status", "--config", str(config)], text=True,
                                capture_output=True, env={**os.environ, "RUNTIME_DIRECTORY": str(runtime)})
        assert first.stop() == 0  # nothing lost: the held records are in the spill file
        spilled = [json.loads(line) for line in spill.read_text().splitlines()]
        assert len(spilled) >= 10 and first.count(f"{len(spilled)} held item records spilled to {spill}") == 1
        ballast.unlink()
        second = Service(config, runtime)
        second.wait_for(f"took back {len(spilled)} held item records from {spill}: {len(spilled)} written, 0 still")
        second.sorted(5)
        assert second.stop() == 0
        rows = rows_of(state / "items.db")
    assert not spill.exists()
    output = "".join(first.lines + second.lines)
    assert "Traceback" not in output and "unsaved record" not in output
    assert len(rows) == len(first.items()) + len(second.items())  # every item of both runs, once
    assert len({row["uid"] for row in rows}) == len(rows) and {r["uid"] for r in spilled} <= {r["uid"] for r in rows}
    assert [row["id"] for row in rows] == list(range(1, len(rows) + 1))
    assert health["disk"]["full"] and health["disk"]["held"] >= 10 and health["disk"]["free_mb"] < 0.1
    assert "SQLITE_FULL" in health["disk"]["refused"] and health["disk"]["spill"] == str(spill)
    assert re.search(r"^smartbin_disk_full 1\.0$", metrics, re.M)
    assert int(float(re.search(r"^smartbin_records_held (\S+)$", metrics, re.M).group(1))) >= 10
    assert status.returncode == 0 and re.search(r"^disk       disk full: \d+ item records held in memory since ",
                                                status.stdout, re.M), status.stdout + status.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="a real full disk needs a tmpfs (root)")
def test_on_a_full_disk_the_unlabelled_kept_frames_give_way_to_the_records(tmp_path, tiny_model):
    state = tmp_path / "state"
    with fault_soak.small_disk(state, 16) as mounted:
        assert mounted
        config = tmp_path / "smartbin.toml"
        config.write_text(disk_config(tmp_path, tiny_model, state, retrain=True))
        service = Service(config, tmp_path / "run")
        service.sorted(20)
        frames = state / "uncertain"
        kept = sorted(frames.glob("*.jpg"))
        with Records(state / "items.db") as records:  # the operator labelled the first two
            for path in kept[:2]:
                records.set_label(int(path.stem), "trash", "test", time.time(), None, None)
        ballast = fault_soak.fill_disk(state)
        service.wait_for("holding item records in memory")
        service.wait_for("unlabelled kept frames")
        service.wait_for("item database writable again")  # the ballast is still there
        service.sorted(len(service.items()) + 5)
        assert service.stop() == 0
        left = {path.stem for path in frames.glob("*.jpg")}
        rows = rows_of(state / "items.db")
        ballast.unlink()
    assert {path.stem for path in kept[:2]} <= left  # labelled frames are precious
    assert not {path.stem for path in kept[2:]} & left  # the unlabelled ones went (the oldest first)
    assert len(rows) == len(service.items()) and "Traceback" not in "".join(service.lines)


@pytest.mark.skipif(os.geteuid() != 0, reason="a real full disk needs a tmpfs (root)")
def test_records_held_when_the_service_is_killed_on_a_full_disk_are_taken_back_at_the_restart(tmp_path, tiny_model):
    state, runtime = tmp_path / "state", tmp_path / "run"
    spill = runtime / "held-records.jsonl"
    with fault_soak.small_disk(state, 16) as mounted:
        assert mounted
        config = tmp_path / "smartbin.toml"
        config.write_text(disk_config(tmp_path, tiny_model, state))
        first = Service(config, runtime)
        first.sorted(10)
        ballast = fault_soak.fill_disk(state)
        first.wait_for("holding item records in memory")
        first.sorted(len(first.items()) + 10)
        first.proc.kill()  # SIGKILL: no stop, no spill at the end: only what was appended as it was held
        first.proc.wait(timeout=30)
        first.reader.join(timeout=5)
        held = first.count("item (held)")
        assert spilled(spill) >= held >= 10
        ballast.unlink()
        second = Service(config, runtime)
        second.wait_for("took back")
        second.sorted(5)
        assert second.stop() == 0
        rows = rows_of(state / "items.db")
    assert not spill.exists()
    assert 0 <= len(rows) - len(first.items()) - len(second.items()) <= 1  # the item in hand may not be logged yet
    assert len({row["uid"] for row in rows}) == len(rows)
    assert [row["id"] for row in rows] == list(range(1, len(rows) + 1))
