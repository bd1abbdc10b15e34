"""Faults a bin meets in months of running, each on its own: a camera that stalls, gives dead frames or
vanishes and comes back; a service killed and restarted as systemd does it; and a short fault soak of the
whole service (``edge.bench.fault_soak``) with every fault at once."""

import logging
import os
import signal
import sys
import textwrap
import time
from dataclasses import replace

import pytest

from edge.bench import fault_soak
from edge.bench.supervise import Supervisor, UnitPolicy, seconds
from edge.errors import CameraError, CameraStalled
from edge.fakes import Fault, FaultyCamera
from edge.sources import FrameStream, open_waiting
from edge.sources.base import FrameSource
from edge.sources.folder import FolderSource
from tests.conftest import TINY_MODEL, make_settings
from tests.test_loop import picture


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
