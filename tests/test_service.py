"""The systemd service: the unit, sd_notify over a real datagram socket, the watchdog, safe shutdown on SIGTERM,
the installer's plan, the metrics endpoint, ``smartbin status`` and the guard beside a running service."""

import logging
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin
from prometheus_client.parser import text_string_to_metric_families

from edge.app import Sorter
from edge.config import MetricsSettings, load_settings
from edge.errors import CameraStalled, GateError
from edge.fakes import FakeClassifier
from edge.records import ItemRecord, Records
from edge.service import unit as service
from edge.service.logs import JournalFormatter, is_journal
from edge.service.metrics import Metrics
from edge.service.notify import Notifier, ServiceWatch
from edge.service.serve import serve
from edge.service.status import database_for
from edge.sources import FrameSource
from tests.conftest import LABELS, PROJECT
from tests.test_gates import duty, dying_pins
from tests.test_loop import Frames, one_hot, paced, picture, run_cli, write_config

UNIT = PROJECT / "systemd" / "smartbin.service"
INSTALL = PROJECT / "systemd" / "install.sh"


def unit_settings() -> dict[str, list[str]]:
    """The unit's ``Key=value`` lines (every value of a repeated key)."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing: apt-get install systemd")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    unit = tmp_path / "smartbin.service"  # ExecStart must exist: point it at this venv's smartbin
    smartbin = Path(sys.executable).parent / "smartbin"
    unit.write_text(UNIT.read_text().replace("/opt/smartbin/.venv/bin/smartbin", str(smartbin)))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "smartbin.service" not in result.stdout + result.stderr, result.stderr


def test_unit_is_a_hardened_notify_service_with_a_watchdog():
    unit = unit_settings()
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"] and unit["Restart"] == ["on-failure"]
    assert unit["WatchdogSec"] == ["30s"] and unit["RestartPreventExitStatus"] == ["2"]
    assert unit["User"] == ["smartbin"] and unit["SupplementaryGroups"] == ["video gpio"]
    assert unit["StateDirectory"] == [service.STATE.name]
    assert unit["ConfigurationDirectory"] == [service.CONFIG.parent.name]
    argv = unit["ExecStart"][0].split()
    assert argv[:2] == ["/opt/smartbin/.venv/bin/smartbin", "run"]
    assert argv[argv.index("--config") + 1] == str(service.CONFIG)
    assert unit["ExecStopPost"] == [f"/opt/smartbin/.venv/bin/smartbin safe --config {service.CONFIG}"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes")):
        assert unit[key] == [value]
    assert not {"PrivateDevices", "DevicePolicy", "PrivateUsers", "ProcSubset"} & set(unit)  # camera, GPIO


def notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(60)
    return sock


def test_run_sends_ready_watchdog_status_stopping_in_order(tmp_path, tiny_model):
    """A real `smartbin run` under a fake systemd: a datagram socket as NOTIFY_SOCKET, stdout as the journal."""
    config = write_config(tmp_path, tiny_model)
    read_end, write_end = os.pipe()
    stdout = os.fstat(write_end)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "300000",
           "JOURNAL_STREAM": f"{stdout.st_dev}:{stdout.st_ino}"}
    with notify_socket(tmp_path / "notify") as sock:
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config), "--max-items", "3"],
                                stdout=write_end, stderr=subprocess.PIPE, text=True, env=env)
        os.close(write_end)
        messages = [sock.recv(4096).decode()]
        while not messages[-1].startswith("STOPPING=1"):
            messages.append(sock.recv(4096).decode())
        _, err = proc.communicate(timeout=30)
    with os.fdopen(read_end) as out:
        lines = out.read().splitlines()
    assert proc.returncode == 0, err
    assert messages[0] == "READY=1\nSTATUS=sorting from belt simulator"
    assert messages[-1] == "STOPPING=1\nSTATUS=stopping: gates to safe, closing the camera and the records"
    middle = messages[1:-1]
    statuses = {f"STATUS=sorting: {n} items; last: item {n} trash 1.00 → residual [sorted]" for n in (1, 2, 3)}
    assert set(middle) - {"WATCHDOG=1"} == statuses
    assert middle.count("WATCHDOG=1") >= 2
    assert "<6>INFO smartbin: systemd: notify through socket, watchdog every 0.1 s" in lines
    assert sum(line.startswith("<6>INFO smartbin.items: item ") for line in lines) == 3


def test_notify_reaches_an_abstract_socket_and_stays_quiet_outside_systemd():
    name = f"smartbin-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        Notifier({"NOTIFY_SOCKET": "@" + name}).ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
    quiet = Notifier({})
    assert quiet.backend == "none" and quiet.watchdog_s is None
    quiet.ready("nobody listens")  # no socket, no error
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_s is None


class StallingCamera(FrameSource):
    """A live camera that gives good frames, then dead (flat) ones, then hangs like a stuck driver until closed."""

    name = "stalling camera"

    def __init__(self, good: int, dead: int) -> None:
        super().__init__()
        self.plan = ["good"] * good + ["dead"] * dead
        self.dead_from = self.hung_from = float("inf")
        self._closed = threading.Event()

    def read(self):
        if not self.plan:
            self.hung_from = min(self.hung_from, time.monotonic())
            self._closed.wait(1.5)  # longer than the stall timeout; bounded, so that the reader thread ends soon
            return None
        time.sleep(0.01)
        if self.plan.pop(0) == "dead":
            self.dead_from = min(self.dead_from, time.monotonic())
            return self._frame(np.zeros((48, 64, 3), np.uint8))
        return self._frame(picture(len(self.plan)))

    def close(self) -> None:
        self._closed.set()


def test_watchdog_pings_stop_when_frames_stop_or_go_dark(tmp_path, tiny_settings):
    camera_settings = tiny_settings.camera.model_copy(update={"stall_timeout_s": 0.5})
    settings = tiny_settings.model_copy(update={"camera": camera_settings})
    camera = StallingCamera(good=40, dead=20)
    pings: list[float] = []
    done = threading.Event()
    with notify_socket(tmp_path / "notify") as sock:
        def receive() -> None:
            sock.settimeout(0.05)
            while not done.is_set():
                try:
                    if sock.recv(4096) == b"WATCHDOG=1":
                        pings.append(time.monotonic())
                except TimeoutError:
                    continue

        receiver = threading.Thread(target=receive)
        receiver.start()
        watch = ServiceWatch(Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "90000"}))
        with Sorter(settings, source=camera, observers=[watch]) as sorter, pytest.raises(CameraStalled):
            sorter.loop.run()  # the stall ends the run (exit 1, Restart=on-failure): no ping in the meantime
        done.set()
        receiver.join()
    assert len([t for t in pings if t < camera.dead_from]) >= 3  # every 30 ms while good frames flow
    assert all(t < camera.dead_from + 0.02 for t in pings)  # none for dead frames, none while hung
    assert camera.hung_from < float("inf")


def test_sigterm_in_a_run_leaves_gates_safe_records_committed_and_stopping_sent(tmp_path, tiny_model, monkeypatch,
                                                                               caplog):
    """`smartbin run`'s service in this process, a real SIGTERM after two items; the mock pins are read after."""
    pins = MockFactory(pin_class=MockPWMPin)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    database = tmp_path / "items.db"

    def terminate_after_two_items() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if database.exists() and count_items(database) >= 2:
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    with notify_socket(tmp_path / "notify") as sock, caplog.at_level(logging.INFO):
        threading.Thread(target=terminate_after_two_items, daemon=True).start()
        assert serve(load_settings(write_config(tmp_path, tiny_model)), pin_factory=pins) == 0
        messages = drain(sock)
    assert not database.with_name("items.db-wal").exists()  # checkpointed and closed
    logged = [r.message for r in caplog.records if r.name == "smartbin.items" and r.message.startswith("item ")]
    assert len(logged) >= 2 and count_items(database) == len(logged)
    assert "SIGTERM: stopping after the item in hand" in caplog.text
    flap = [s.state for s in pins.pin(18).states]
    assert [x for x in flap if x][-1] == pytest.approx(duty(0)) and flap[-1] == 0  # safe angle, then released
    assert pins.pin(23).states[-1].state == 0  # pusher off
    assert messages[0].startswith("READY=1") and messages[-1].startswith("STOPPING=1")
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("frames-", "gate-", "sorting"))]


def count_items(database: Path) -> int:
    with closing(sqlite3.connect(database)) as db:
        return db.execute("SELECT COUNT(*) FROM items").fetchone()[0]


def drain(sock: socket.socket) -> list[str]:
    """Every message waiting on the socket."""
    sock.settimeout(0.2)
    messages = []
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except TimeoutError:
        return messages


def test_metrics_endpoint_serves_the_counters_after_a_simulated_run(tiny_settings):
    settings = tiny_settings.model_copy(update={"metrics": MetricsSettings(enabled=True, port=0)})
    frames = [picture(n) for n in range(5)] + [np.zeros((48, 64, 3), np.uint8)]  # the last item fails
    with Metrics(settings) as metrics, Sorter(settings, source=Frames(frames), observers=[metrics]) as sorter:
        sorter.loop.run()
        host, port = metrics.address
        text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10).read().decode()
    assert host == "127.0.0.1"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    rows = sqlite3.connect(settings.records.database).execute("SELECT bin, outcome FROM items").fetchall()
    for bin_name in settings.bins:
        for outcome in ("sorted", "rejected", "error"):
            expected = sum(row == (bin_name, outcome) for row in rows)
            assert samples[("smartbin_items_total", (("bin", bin_name), ("outcome", outcome)))] == expected
    assert samples[("smartbin_errors_total", ())] == 1 and samples[("smartbin_frames_total", ())] == 6
    assert samples[("smartbin_confidence_count", ())] == 5
    assert samples[("smartbin_stage_latency_seconds_count", (("stage", "classify"),))] == 5
    gates = {name: spec.gate for name, spec in settings.bins.items()}
    for gate in settings.gates:
        moves = sum(gates[bin_name] == gate for bin_name, _ in rows)
        assert samples[("smartbin_gate_actuations_total", (("gate", gate),))] == moves
    assert samples[("smartbin_camera_fps", ())] > 0


def fake_systemctl(tmp_path: Path, **properties: str) -> dict[str, str]:
    """An environment whose `systemctl show` prints these properties (as systemd would for smartbin.service)."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    script = folder / "systemctl"
    lines = "\n".join(f"{key}={value}" for key, value in {"LoadState": "loaded", **properties}.items())
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{lines}\nEOF\n")
    script.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


RUNNING = dict(ActiveState="active", SubState="running", Result="success", MainPID="4242", NRestarts="2",
               StateChangeTimestamp="Tue 2026-11-24 12:00:01 UTC", StatusText="sorting: 17 items")


def test_status_prints_the_service_today_per_bin_the_latest_error_and_the_last_items(tmp_path, tiny_model):
    config = write_config(tmp_path, tiny_model)
    midnight = time.mktime((*time.localtime()[:3], 0, 0, 0, 0, 0, -1))
    item = dict(frame=1, source="picamera2", gate_action="flap→-60°", model="m.tflite", latency_ms={"total": 41.0})
    with Records(tmp_path / "items.db") as records:
        records.add(ItemRecord(time=midnight - 3600, bin="paper", outcome="sorted", label="paper", confidence=0.9,
                               **item))
        records.add(ItemRecord(time=time.time(), bin="glass", outcome="sorted", label="green-glass", confidence=0.93,
                               **item))
        records.add(ItemRecord(time=time.time(), bin="residual", outcome="error", error="dead frame", **item))
    result = run_cli("status", "--config", str(config), "--last", "2", env=fake_systemctl(tmp_path, **RUNNING),
                     timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == ("service    active (running) since Tue 2026-11-24 12:00:01 UTC, pid 4242, 2 restarts: "
                        "sorting: 17 items")
    assert lines[1] == f"records    {tmp_path / 'items.db'}: 3 items"
    assert lines[2] == "today      2 items: 1 error, 1 sorted | glass 1, residual 1"
    assert re.fullmatch(r"last error \d{4}-\d\d-\d\d \d\d:\d\d:\d\d item 3: dead frame", lines[3])
    assert lines[4] == "last 2 items:" and len(lines) == 7
    assert lines[5].endswith("item 3 frame 1: ? → residual [error] flap→-60° 41 ms error: dead frame")
    assert lines[6].endswith("item 2 frame 1: green-glass 0.93 → glass [sorted] flap→-60° 41 ms")
    outside = run_cli("status", "--config", str(config), timeout=60)  # no systemd on this machine
    assert outside.stdout.startswith("service    unknown here")


def test_status_reads_the_installed_services_records_by_default(tmp_path, tiny_settings):
    config = tmp_path / "etc" / "smartbin.toml"
    config.parent.mkdir()
    assert database_for(tiny_settings, True, config, tmp_path) == tiny_settings.records.database
    assert database_for(tiny_settings, False, config, tmp_path) == tiny_settings.records.database  # not installed
    config.write_text('[bins.residual]\nclasses = ["trash"]\n')
    assert database_for(tiny_settings, False, config, tmp_path / "state") == tmp_path / "state" / "items.db"
    config.write_text("[sorting]\nthresold = 0.5\n")  # broken: the service is failing, status still works
    assert database_for(tiny_settings, False, config, tmp_path / "state") == tmp_path / "state" / "items.db"


def test_a_second_run_beside_the_service_gets_one_line(tmp_path, tiny_model):
    config = str(write_config(tmp_path, tiny_model))
    result = run_cli("run", "--config", config, "--source", "picamera2", env=fake_systemctl(tmp_path, **RUNNING),
                     timeout=60)
    assert result.returncode == 1 and result.stderr == (
        "smartbin: the smartbin service is running (pid 4242) and holds the camera: stop it first with "
        "`sudo systemctl stop smartbin` (and `sudo systemctl start smartbin` when done)\n")
    stopped = fake_systemctl(tmp_path, **{**RUNNING, "ActiveState": "inactive", "SubState": "dead", "MainPID": "0"})
    result = run_cli("run", "--config", config, "--source", "picamera2", env=stopped, timeout=60)
    assert "service is running" not in result.stderr  # went on to the camera (no picamera2 here)
    mock_pins = run_cli("gate", "glass", "--hold", "0", "--config", config, env=fake_systemctl(tmp_path, **RUNNING),
                        timeout=60)
    assert mock_pins.returncode == 0  # mock pins take nothing from the service


def plan(*args: str, root: Path) -> list[str]:
    result = subprocess.run(["bash", str(INSTALL), "--root", str(root), *args], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_install_dry_run_lays_out_what_the_unit_needs(tmp_path):
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    steps = plan(root=tmp_path)
    assert steps[0] == f"install.sh: dry run for {tmp_path}: nothing is changed"
    commands = [s.removeprefix("+ ") for s in steps if s.startswith("+ ")]
    unit = unit_settings()
    exec_start = unit["ExecStart"][0].split()[0]
    app = str(Path(exec_start).parents[2])
    expected = [
        "apt-get install -y --no-install-recommends python3-venv python3-systemd python3-picamera2 python3-lgpio",
        "groupadd --system gpio",
        f"useradd --system --user-group --groups {','.join(unit['SupplementaryGroups'][0].split())} "
        f"--home-dir {service.STATE} --no-create-home --shell /usr/sbin/nologin --comment 'smartbin waste sorter' "
        f"{unit['User'][0]}",
        f"copy_code {PROJECT} {app}",
        f"{app}/setup.sh",  # makes {app}/.venv: ExecStart's smartbin
        f"install -D -m 0644 {app}/edge/smartbin.toml {service.CONFIG}",
        f"install -D -m 0644 {app}/systemd/smartbin.service /etc/systemd/system/smartbin.service",
        f"ln -sfn {exec_start} /usr/local/bin/smartbin",
        f"systemctl --root={tmp_path} enable smartbin.service",
    ]
    positions = [next(i for i, c in enumerate(commands) if c == e or c.startswith(e)) for e in expected]
    assert positions == sorted(positions), commands
    assert not any("/var/lib/smartbin" in c and c.startswith(("rm", "install -d")) for c in commands)


def test_install_keeps_an_existing_config_and_uninstall_keeps_the_records(tmp_path):
    (tmp_path / "etc" / "smartbin").mkdir(parents=True)
    (tmp_path / "etc" / "smartbin" / "smartbin.toml").write_text("# the operator's\n")
    (tmp_path / "etc" / "passwd").write_text("smartbin:x:997:996::/var/lib/smartbin:/usr/sbin/nologin\n")
    (tmp_path / "etc" / "group").write_text("video:x:44:\ngpio:x:997:\n")
    steps = plan("--config", str(INSTALL), root=tmp_path)
    assert f"install.sh: keeping {service.CONFIG} (never overwritten); not installing {INSTALL}" in steps
    assert "+ usermod --append --groups video,gpio smartbin" in steps
    assert not any(s.startswith(("+ groupadd", "+ useradd", f"+ install -D -m 0644 {INSTALL}")) for s in steps)
    removal = plan("--uninstall", root=tmp_path)
    assert removal[1:] == [
        f"+ systemctl --root={tmp_path} disable smartbin.service",
        "+ rm -f /etc/systemd/system/smartbin.service /usr/local/bin/smartbin",
        "+ rm -rf /opt/smartbin",
        "+ userdel smartbin",
        "install.sh: kept the records in /var/lib/smartbin and the config in /etc/smartbin (remove them by hand if "
        "they should go)",
    ]


def test_journal_lines_carry_the_syslog_priority(tmp_path):
    with open(tmp_path / "log", "w") as stream:
        stat = os.fstat(stream.fileno())
        assert is_journal(stream, {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"})
        assert not is_journal(stream, {"JOURNAL_STREAM": "1:2"}) and not is_journal(stream, {})
    record = logging.LogRecord("smartbin", logging.WARNING, __file__, 1, "camera %s", ("slow",), None)
    assert JournalFormatter("%(levelname)s %(name)s: %(message)s").format(record) == "<4>WARNING smartbin: camera slow"


def test_the_watchdogs_sigabrt_logs_every_threads_stack_and_aborts(tmp_path, tiny_model):
    """As systemd does it to a hung sorter: SIGSTOP (the hang), the watchdog's SIGABRT, SIGCONT. Twice."""
    config = write_config(tmp_path, tiny_model, extra="")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "30000000"}
    for _ in range(2):
        with notify_socket(tmp_path / "notify") as sock:
            proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            assert sock.recv(4096).decode().startswith("READY=1")
            time.sleep(0.5)  # sorting: camera, gate and web threads busy
            proc.send_signal(signal.SIGSTOP)
            proc.send_signal(signal.SIGABRT)
            proc.send_signal(signal.SIGCONT)
            out, _ = proc.communicate(timeout=30)
        (tmp_path / "notify").unlink()
        assert proc.returncode == -signal.SIGABRT, out
        dump = [line for line in out.splitlines() if line.startswith("CRITICAL smartbin.watchdog: ")]
        assert "every thread's stack" in dump[0] and "Segmentation fault" not in out
        assert any(line.startswith("CRITICAL smartbin.watchdog: MainThread: ") and "in cmd_run" in line
                   for line in dump), out


def test_retention_with_keep_days_0_keeps_old_items_by_age_and_says_so(tmp_path, caplog):
    from edge.service.retention import Retention
    from tests.test_records import spread_items

    path = tmp_path / "items.db"
    with Records(path) as records:
        spread_items(records, 2000)  # from November 2023: older than any age limit
        full = records.used_bytes()
    with caplog.at_level(logging.INFO, logger="edge.service.retention"):
        off = Retention(path, keep_days=0, max_mb=0).start()
        off.stop()
        assert off.run_once() == 0
        capped = Retention(path, keep_days=0, max_mb=full / 2 / 1024 / 1024, interval_s=60).start()
        deadline = time.monotonic() + 10
        while not any("deleted" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
        capped.stop()
    lines = [r.getMessage() for r in caplog.records]
    with Records(path, readonly=True) as records:
        kept = records._db.execute("SELECT COUNT(*), MIN(id) FROM items").fetchone()
    assert 0 < kept[0] < 2000 and kept[1] == 2001 - kept[0]  # the oldest went, by size alone
    assert lines[0] == "retention: off (keep_days = 0, max_mb = 0): every item is kept"
    size = f"the oldest items while they take more than {full / 2 / 1024 / 1024:g} MB"
    assert lines[1] == f"retention: no age limit (keep_days = 0); {size}"
    assert lines[2] == f"retention: deleted {2000 - kept[0]} items (no age limit (keep_days = 0); {size}); counts " \
        "are kept" and not any("0 days" in line for line in lines), lines


def test_a_failed_gate_shows_on_the_health_page_with_the_items_it_failed(tiny_settings):
    from edge.web import LiveState, WebServer
    from tests.test_web import get_json

    settings = paced(tiny_settings).model_copy(update={"web": tiny_settings.web.model_copy(update={"port": 0})})
    pins, die = dying_pins("GPIO18")
    live = LiveState(settings.camera.region, "frames")
    with WebServer(settings, live) as server, Sorter(
            settings, source=Frames(picture(n) for n in range(12)), observers=[live], pin_factory=pins,
            classifier=FakeClassifier(LABELS, one_hot("green-glass"))) as sorter:
        assert get_json(server.url + "api/health")["gate_fault"] is None
        die()
        started = time.time()
        with pytest.raises(GateError):
            sorter.loop.run()
        health = get_json(server.url + "api/health")
        amended = [r["id"] for r in sorter.records.in_order() if r["error"].endswith("(on its way to glass)")]
    fault = health["gate_fault"]
    assert fault["gate"] == "flap" and fault["error"] == "gate flap failed: I2C bus error"
    assert started <= fault["time"] <= time.time() and fault["items"] == amended and amended
    assert health["last_error"]["error"].startswith("gate failure: gate flap failed: I2C bus error")
