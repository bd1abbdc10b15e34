"""The bin on a real Mosquitto broker that the tests start on a free loopback port: items arrive in order, none
lost when the broker goes away or the sorter is killed, the last will, a refused bin is one warning."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.bench.fleet_soak import MOSQUITTO, Broker, free_port
from edge.records import ItemRecord, Records
from edge.service.mqtt import MqttPublisher
from edge.service.serve import serve
from tests.conftest import make_settings
from tests.test_loop import write_config


def need(present: bool, reason: str) -> None:
    """Skip without a real component, except in CI, which must run every test (.ci/run installs them)."""
    if not present:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the fleet tests: {reason}")
        pytest.skip(reason)


@pytest.fixture
def broker(tmp_path):
    need(MOSQUITTO.exists(), "Debian's mosquitto is not installed (apt-get install mosquitto)")
    running = Broker(tmp_path)
    yield running
    running.stop()


class Listener:
    """A subscriber to smartbin/# (and homeassistant/#) that keeps every message it gets."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, dict, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{port}-{time.monotonic()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe([("smartbin/#", 1), ("homeassistant/#", 1)])
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            payload = {"text": message.payload.decode(errors="replace")}  # homeassistant/status, junk
        with self.lock:
            self.messages.append((message.topic, payload, bool(message.retain)))

    def on(self, suffix: str) -> list[dict]:
        with self.lock:
            return [payload for topic, payload, _ in self.messages if topic.endswith(suffix)]

    def item_ids(self) -> list[int]:
        return [p["id"] for p in self.on("/item")]

    def wait(self, condition, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out; got {self.item_ids()} and {len(self.messages)} in all"
            time.sleep(0.05)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def mqtt_settings(tmp_path: Path, port: int, **mqtt_keys):
    return make_settings(tmp_path, mqtt={"enabled": True, "host": "127.0.0.1", "port": port, "bin_id": "bin-7",
                                         "keepalive_s": 2, "telemetry_s": 1.0, **mqtt_keys})


def add_items(database: Path, first: int, count: int, publisher: MqttPublisher | None = None) -> None:
    with Records(database) as records:
        for n in range(first, first + count):
            item_id = records.add(ItemRecord(time=time.time(), frame=n, source="test", bin="glass",
                                             gate_action="flap→-60°", outcome="sorted", model="m.tflite",
                                             model_sha256="ab" * 32,
                                             label="green-glass", confidence=0.9, reason="top", expected_cost=0.5,
                                             latency_ms={"total": 41.0, "since_line": 300.0}))
            if publisher is not None:
                publisher.on_item(item_id, None)  # type: ignore[arg-type]


def test_items_status_telemetry_and_discovery_arrive_and_a_clean_stop_says_offline(tmp_path, broker):
    settings = mqtt_settings(tmp_path, broker.port)
    database = settings.records.database
    add_items(database, 0, 3)  # recorded before MQTT was turned on: not sent
    listener = Listener(broker.port)
    with MqttPublisher(settings) as publisher:
        publisher.start({"model": {"file": "m.tflite"}})
        add_items(database, 3, 20, publisher)
        listener.wait(lambda: len(listener.item_ids()) >= 20 and any(  # telemetry comes every telemetry_s (1 s)
            t["today"]["bins"]["glass"] == 23 for t in listener.on("/telemetry")))
        status = listener.on("smartbin/bin-7/status")[0]
        assert status["state"] == "online" and status["model"] == {"file": "m.tflite"} and status["schema"] == 1
        telemetry = listener.on("smartbin/bin-7/telemetry")[-1]
        assert telemetry["today"]["total"] == 23 and telemetry["starts"] == 1 and telemetry["problem"] is None
        assert set(telemetry) >= {"fps", "latency_ms", "cpu_temp_c", "throttled", "disk_free_mb", "uptime_s"}
        late = Listener(broker.port)  # a subscriber that comes later gets the retained ones
        late.wait(lambda: len(late.on("/config")) >= len(settings.bins) + 3 and late.on("/status"))
        retained = {topic for topic, _, retain in late.messages if retain}
        assert {"homeassistant/binary_sensor/smartbin_bin-7/problem/config", "smartbin/bin-7/status",
                "homeassistant/sensor/smartbin_bin-7/glass_today/config", "smartbin/bin-7/telemetry"} <= retained
        late.close()
        configs = [topic for topic, _, _ in listener.messages if topic.endswith("/config")]
        before = len(configs)
        listener.client.publish("homeassistant/status", "online")  # Home Assistant restarted: discovery again
        listener.wait(lambda: len([t for t, _, _ in listener.messages if t.endswith("/config")]) > before)
    listener.wait(lambda: listener.on("smartbin/bin-7/status")[-1]["state"] == "offline")
    assert listener.item_ids() == list(range(4, 24))  # ids 4..23, in order, the three older ones not
    item = listener.on("/item")[0]
    assert item["bin_id"] == "bin-7" and item["reason"] == "top" and item["latency_ms"] == 41.0
    with Records(database) as records:
        assert records.counter(publisher.cursor_name) == 23
    listener.close()


@contextmanager
def publishing(tmp_path: Path, broker: Broker, caplog) -> Iterator[tuple[Path, Listener, MqttPublisher]]:
    """A started publisher of bin-7 (warnings captured) and a listener; the publisher is closed at the end."""
    settings = mqtt_settings(tmp_path, broker.port)
    listener = Listener(broker.port)
    with caplog.at_level(logging.WARNING, logger="edge.service.mqtt"), MqttPublisher(settings) as publisher:
        publisher.start({})
        yield settings.records.database, listener, publisher


def test_a_broker_outage_loses_no_item_and_is_one_warning(tmp_path, broker, caplog):
    with publishing(tmp_path, broker, caplog) as (database, listener, publisher):
        add_items(database, 0, 10, publisher)
        listener.wait(lambda: len(listener.item_ids()) >= 10)
        broker.stop()
        add_items(database, 10, 30, publisher)  # the sorter goes on: these wait in the database
        time.sleep(30)
        assert not publisher.connected() and 30 <= publisher.pending_items <= 40  # what the metrics show
        broker.start()
        add_items(database, 40, 10, publisher)
        listener.wait(lambda: set(listener.item_ids()) >= set(range(1, 51)), timeout=30)
        listener.wait(lambda: publisher.pending_items == 0, timeout=5)
    ids = listener.item_ids()
    first_seen = list(dict.fromkeys(ids))
    assert first_seen == list(range(1, 51))  # every one, in order (a few may come twice: de-duplicate by id)
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert 1 <= len(warnings) <= 3 and all("mqtt:" in w for w in warnings), warnings  # lost, then not reachable
    listener.close()


def test_a_refused_bin_is_one_warning_and_sorting_goes_on(tmp_path, caplog, tiny_settings):
    need(MOSQUITTO.exists(), "Debian's mosquitto is not installed (apt-get install mosquitto)")
    broker = Broker(tmp_path, extra="allow_anonymous false\n")  # no user is known: every login is refused
    try:
        password = tmp_path / "password"
        password.write_text("wrong\n")
        settings = tiny_settings.model_copy(update={"mqtt": mqtt_settings(
            tmp_path, broker.port, username="bin", password_file=password).mqtt})
        with caplog.at_level(logging.WARNING):
            assert serve(settings, max_items=5) == 0  # sorted all the same
        with Records(settings.records.database) as records:
            assert records.total() == 5
        refused = [r.message for r in caplog.records if "refused the bin" in r.message]
        assert len(refused) == 1 and "\n" not in refused[0]
        tls = tiny_settings.model_copy(update={"mqtt": mqtt_settings(tmp_path, broker.port, tls=True).mqtt})
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert serve(tls, max_items=3) == 0  # TLS against a plain listener
        assert len([r.message for r in caplog.records if "cannot connect" in r.message]) == 1
    finally:
        broker.stop()


def test_a_killed_sorter_resumes_from_its_cursor_and_its_last_will_says_offline(tmp_path, broker, tiny_model):
    listener = Listener(broker.port)
    config = write_config(tmp_path, tiny_model, extra=f'\n[mqtt]\nenabled = true\nhost = "127.0.0.1"\n'
                                                      f'port = {broker.port}\nbin_id = "kill-me"\nkeepalive_s = 2\n')
    text = config.read_text().replace("\n[mqtt]\n# A fleet", "\n# [mqtt] (set below)\n# A fleet", 1)
    config.write_text(text)
    command = [sys.executable, "-m", "edge.cli", "run", "--config", str(config)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener.wait(lambda: len(listener.item_ids()) >= 3, timeout=60)
    os.kill(first.pid, signal.SIGKILL)  # no clean stop: no "offline" from the bin itself
    first.wait()
    listener.wait(lambda: listener.on("kill-me/status")[-1]["state"] == "offline", timeout=15)  # the last will
    second = subprocess.run([*command, "--max-items", "4"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    with Records(tmp_path / "items.db") as records:
        recorded = [row["id"] for row in records.in_order()]
    listener.wait(lambda: set(listener.item_ids()) >= set(recorded), timeout=30)
    assert list(dict.fromkeys(listener.item_ids())) == recorded  # no gap, in order, across the kill
    statuses = [s["state"] for s in listener.on("kill-me/status")]
    assert statuses[-1] == "offline" and statuses.count("online") == 2
    listener.close()


def test_fleet_status_lists_every_bin_on_the_broker(tmp_path, broker):
    import io
    from contextlib import redirect_stdout

    from edge.cli import main

    publishers = []
    for name in ("north", "south"):
        settings = mqtt_settings(tmp_path / name, broker.port, bin_id=name)
        publisher = MqttPublisher(settings).start({"model": {"file": f"{name}.tflite"}})
        add_items(settings.records.database, 0, 4 if name == "north" else 2, publisher)
        publishers.append(publisher)
    watcher = Listener(broker.port)
    watcher.wait(lambda: {t["bin_id"] for t in watcher.on("/telemetry") if t["today"]["total"]} >= {"north",
                                                                                                    "south"})
    publishers[1].close()  # south stops cleanly: offline
    watcher.wait(lambda: any(s["state"] == "offline" for s in watcher.on("south/status")))
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["fleet", "status", "--broker", f"127.0.0.1:{broker.port}", "--wait", "1"]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:2] == ["bin", "state"] and len(lines) == 3
    north, south = (line.split() for line in lines[1:])
    assert north[:2] == ["north", "online"] and "north.tflite" in north and "4" in north
    assert south[:2] == ["south", "offline"]
    publishers[0].close()
    watcher.close()
    from contextlib import redirect_stderr

    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(["fleet", "status", "--broker", "127.0.0.1:notaport"]) == 2
        assert main(["fleet", "status", "--broker", f"127.0.0.1:{free_port()}"]) == 1  # nobody listens there
    lines = err.getvalue().splitlines()
    assert len(lines) == 2 and "--broker: not a port" in lines[0] and "cannot reach the broker" in lines[1]


PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


@pytest.fixture
def postgres():
    """A PostgreSQL cluster in a temp dir on a free port (as the postgres user when root: it refuses root)."""
    import shutil
    import tempfile

    need(bool(PG_BINS), "Debian's postgresql is not installed (apt-get install postgresql)")
    bin_dir = PG_BINS[-1].parent
    data = Path(tempfile.mkdtemp(prefix="smartbin-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(data, "postgres")
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data / "db"), "--auth=trust", "-U", "postgres",
                    "-E", "UTF8"], check=True, capture_output=True)
    port = free_port()
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w",
                    "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"], check=True,
                   capture_output=True)
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
                   capture_output=True)
    shutil.rmtree(data, ignore_errors=True)


def test_the_collector_writes_every_bins_items_once_into_postgresql(tmp_path, broker, postgres):
    import psycopg

    from edge.fleet.collect import Collector

    settings = {name: mqtt_settings(tmp_path / name, broker.port, bin_id=name) for name in ("east", "west")}
    stop = threading.Event()
    collector = Collector(settings["east"].mqtt, "127.0.0.1", broker.port, postgres, client_id="test-collector")
    worker = threading.Thread(target=collector.run, args=(stop,))
    worker.start()
    time.sleep(0.5)  # subscribed: the persistent session exists from here on
    publishers = {name: MqttPublisher(s).start({}) for name, s in settings.items()}
    add_items(settings["east"].records.database, 0, 12, publishers["east"])
    add_items(settings["west"].records.database, 0, 5, publishers["west"])

    def rows() -> list[tuple]:
        with psycopg.connect(postgres) as db:
            return db.execute("SELECT bin_id, id, bin, outcome, reason, model, model_sha256 FROM fleet_items "
                              "ORDER BY 1, 2").fetchall()

    deadline = time.monotonic() + 20
    while len(rows()) < 17 and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    worker.join(timeout=10)
    assert [(b, i) for b, i, *_ in rows()] == [("east", i) for i in range(1, 13)] + [("west", i) for i in range(1, 6)]
    assert rows()[0][2:] == ("glass", "sorted", "top", "m.tflite", "ab" * 32)
    # the collector away: the broker keeps its session's items; a bin resending from 0 adds no duplicate
    add_items(settings["west"].records.database, 5, 3, publishers["west"])
    time.sleep(1.0)
    publishers["east"].close()
    with Records(settings["east"].records.database) as records:
        records.set_counter(publishers["east"].cursor_name, 0)
    again = MqttPublisher(settings["east"]).start({})
    time.sleep(1.5)
    stop = threading.Event()
    collector = Collector(settings["east"].mqtt, "127.0.0.1", broker.port, postgres, client_id="test-collector")
    worker = threading.Thread(target=collector.run, args=(stop,))
    worker.start()
    deadline = time.monotonic() + 20
    while len(rows()) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    worker.join(timeout=10)
    assert len(rows()) == 20 and ("west", 8) in [(b, i) for b, i, *_ in rows()]  # kept by the broker meanwhile
    assert collector.repeated >= 12  # east's 12 again, ignored
    with psycopg.connect(postgres) as db:
        bins = dict(db.execute("SELECT bin_id, status->>'state' FROM fleet_bins").fetchall())
    assert bins == {"east": "online", "west": "online"}
    again.close()
    publishers["west"].close()


def test_gaps_in_a_bins_ids_ask_for_a_resend_from_the_first_missing_one():
    from edge.fleet.gaps import GapTracker

    now = [0.0]
    gaps = GapTracker(every_s=2.0, clock=lambda: now[0])
    assert [gaps.seen("a", i) for i in (5, 6, 7)] == [None, None, None] and gaps.expected["a"] == 8  # first sight
    assert gaps.seen("a", 10) == 8  # 8 and 9 missing
    assert gaps.seen("a", 11) is None  # asked a moment ago: not again yet
    now[0] = 2.5
    assert gaps.seen("a", 12) == 8
    assert gaps.seen("a", 8) is None and gaps.expected["a"] == 9
    assert gaps.seen("a", 9) is None and gaps.expected["a"] == 13  # 10, 11, 12 were there: caught up
    assert gaps.seen("a", 9) is None  # a repeat
    now[0] = 10.0
    assert gaps.latest("a", 12) is None and gaps.latest("a", 14) == 13  # the end of the stream is missing
    gaps.start("b", 100)
    assert gaps.seen("b", 101) == 100


def test_a_resend_request_moves_the_cursor_back_and_a_bad_one_is_ignored(tmp_path, broker, caplog):
    with publishing(tmp_path, broker, caplog) as (database, listener, publisher):
        add_items(database, 0, 8, publisher)
        listener.wait(lambda: len(listener.item_ids()) == 8)
        padded = json.dumps({"from": 1, "pad": "x" * 1000}).encode()  # well-formed but over the size bound
        for junk in (b"not json", b'{"from": "3"}', b'{"from": -1}', b'[1]', b"\xff" * 10_000, padded):
            listener.client.publish("smartbin/bin-7/resend", junk, qos=1)
        listener.client.publish("smartbin/bin-7/resend", json.dumps({"from": 5}), qos=1)
        listener.wait(lambda: len(listener.item_ids()) == 12)
        add_items(database, 8, 2, publisher)  # and it goes on
        listener.wait(lambda: len(listener.item_ids()) == 14)
    assert listener.item_ids() == [*range(1, 9), 5, 6, 7, 8, 9, 10]
    ignored = [r.message for r in caplog.records if "ignored a resend request" in r.message]
    assert ignored and all("\n" not in m and len(m) < 200 for m in ignored)
    listener.close()


def test_the_mqtt_gauges_read_the_publisher(tmp_path):
    from edge.service.metrics import Metrics

    metrics = Metrics(make_settings(tmp_path))
    state = {"connected": True, "pending": 7}
    metrics.watch_mqtt(lambda: state["connected"], lambda: state["pending"])
    assert metrics.registry.get_sample_value("smartbin_mqtt_connected") == 1.0
    assert metrics.registry.get_sample_value("smartbin_mqtt_pending_items") == 7.0
    state.update(connected=False, pending=40)
    assert metrics.registry.get_sample_value("smartbin_mqtt_connected") == 0.0
    assert metrics.registry.get_sample_value("smartbin_mqtt_pending_items") == 40.0


def test_a_bad_record_and_a_database_error_do_not_end_the_item_messages(tmp_path, broker, caplog):
    failed = []
    threading.excepthook, before = failed.append, threading.excepthook  # a thread that dies with a traceback
    try:
        with publishing(tmp_path, broker, caplog) as (database, listener, publisher):
            add_items(database, 0, 3, publisher)
            listener.wait(lambda: len(listener.item_ids()) == 3)
            raw = sqlite3.connect(database)
            with raw:  # records damaged on disk: a BLOB where text goes (4), latency not JSON (5), not a dict (6)
                for label, latency in (("x'00ff'", "'{}'"), ("'glass'", "'{'"), ("'glass'", "'[1]'")):
                    raw.execute("INSERT INTO items (time, frame, source, top_k, bin, gate_action, outcome, "
                                f"latency_ms, frames, model, label) VALUES (1, 1, 's', '[]', 'glass', 'none', "
                                f"'sorted', {latency}, 1, 'm', {label})")
            add_items(database, 3, 2, publisher)
            listener.wait(lambda: listener.item_ids()[-1:] == [8])
            with raw:
                raw.execute("DROP TABLE counters")  # what a raw sqlite error did: ended the thread, a traceback
            raw.close()
            listener.wait(lambda: any("item messages wait" in r.getMessage() for r in caplog.records), timeout=5)
            add_items(database, 5, 2, publisher)  # the table is there again
            listener.wait(lambda: 10 in listener.item_ids(), timeout=30)  # reopened, resent from the lost cursor
            assert any(thread.name == "mqtt-items" and thread.is_alive() for thread in threading.enumerate())
    finally:
        threading.excepthook = before
    assert failed == []
    assert listener.item_ids()[:7] == [1, 2, 3, 5, 6, 7, 8]  # 4 skipped
    assert [item["latency_ms"] for item in listener.on("/item")[3:5]] == [None, None]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert {w for w in warnings if "skipped" in w} == {
        "mqtt: item 4 skipped: its record is not a message (TypeError: Object of type bytes is not JSON "
        "serializable)"}
    waits = [w for w in warnings if "item messages wait" in w]
    assert len(waits) == 1 and "no such table: counters (SQLITE_ERROR)" in waits[0]
    assert not [r for r in caplog.records if r.exc_info]
    listener.close()
