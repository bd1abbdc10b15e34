"""A bin on an MQTT broker (``[mqtt]``, off by default): status, items, telemetry, Home Assistant discovery.

Topics (``PREFIX/BIN_ID/...``, payloads JSON with ``"schema": 1``):

- ``status``: retained; ``online`` with the version, model and config summary at connect; ``offline`` on a
  clean stop, and as the last will, which the broker publishes when the bin drops off without one.
- ``item``: one message per item record, QoS ``mqtt.qos``, published **from the item database** in id order
  with a durable cursor (the last id the broker acknowledged, in the database's ``counters`` table): a broker
  outage, a network cut or a restart loses no item; after a reconnect some may come twice, so a consumer
  de-duplicates by ``(bin_id, id)``. ``resend`` (``{"from": id}``, from a consumer that found a gap, see
  ``edge.fleet.gaps``): the cursor moves back and the items are sent again from there.
- ``telemetry``: retained, every ``mqtt.telemetry_s``: frame rate, latency, today's counts, CPU temperature and
  throttling (where the Pi exposes them), free disk, whether it is full and the item records held meanwhile
  (``edge.held``), uptime, starts.
- Home Assistant discovery under ``homeassistant/``, re-sent when Home Assistant announces itself on
  ``homeassistant/status``.

The network runs in paho's thread and the publishing in two threads of this module: sorting never waits for the
broker. A broker that is down or refuses the bin is a warning (once, until it is back), never an error; so is
an item database that fails (retried every ``DATABASE_RETRY_S``) or a record that cannot be made a message
(skipped).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge import __version__
from edge.config import MqttSettings, Settings
from edge.errors import ConfigError, RecordError
from edge.frame_rate import FrameRate
from edge.held import disk_state
from edge.model_store import ModelStore
from edge.records import ItemRecord, Records
from edge.sources import Frame
from edge.web.queries import RecordsView

logger = logging.getLogger(__name__)

SCHEMA = 1
BATCH = 100  # item messages in flight at most, then wait for the broker's acknowledgements
ACK_TIMEOUT_S = 10.0
DATABASE_RETRY_S = 5.0  # between two tries of an item database that failed
RESEND_MAX_BYTES = 64  # a resend request longer than this is ignored unparsed
DISCOVERY = "homeassistant"
THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")
THROTTLED = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")  # Raspberry Pi firmware


def bin_id_of(mqtt_settings: MqttSettings) -> str:
    """The configured bin id, else the host name made safe for a topic level."""
    return mqtt_settings.bin_id or re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64] or "bin"


def read_password(mqtt_settings: MqttSettings) -> str | None:
    """The password from ``password_file`` (first line), None without one. Raises ConfigError."""
    if mqtt_settings.password_file is None:
        return None
    try:
        return mqtt_settings.password_file.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        raise ConfigError(f"mqtt.password_file: cannot read {mqtt_settings.password_file}: "
                          f"{getattr(exc, 'strerror', None) or exc or 'empty'}") from None


def broker_client(config: MqttSettings, client_id: str, clean: bool = True) -> mqtt.Client:
    """A paho client with the config's TLS and credentials; ``clean=False``: a persistent session, whose QoS 1
    messages the broker keeps while the client is away. Raises ConfigError (an unreadable password file)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    if config.username:
        client.username_pw_set(config.username, read_password(config))
    if config.tls:
        client.tls_set(ca_certs=str(config.ca_file) if config.ca_file else None,
                       certfile=str(config.cert_file) if config.cert_file else None,
                       keyfile=str(config.key_file) if config.key_file else None)
    return client


class MqttPublisher:
    """Loop observer publishing this bin to the broker of ``settings.mqtt``; ``start(summary)`` once the sorter
    is built, ``close()`` at the end (a context manager)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = settings.mqtt
        self.bin_id = bin_id_of(self.config)
        base = f"{self.config.prefix}/{self.bin_id}"
        self.status_topic, self.item_topic, self.telemetry_topic, self.resend_topic = (
            f"{base}/{t}" for t in ("status", "item", "telemetry", "resend"))
        self._resend_from: int | None = None  # asked for by a consumer that found a gap (edge.fleet.gaps)
        self.pending_items = 0  # recorded, not yet acknowledged by the broker (a metric)
        self.cursor_name = f"mqtt:{self.config.host}:{self.config.port}/{base}"
        self.database = settings.records.database
        self.view = RecordsView(self.database, settings.retrain_folder, list(settings.bins))  # telemetry's reads
        self.started = time.time()
        self.rate = FrameRate()
        self.summary: dict[str, Any] = {}
        self.starts = 0
        self._wake, self._stop, self._connected = threading.Event(), threading.Event(), threading.Event()
        self._warned: str | None = None
        self._threads: list[threading.Thread] = []
        self.client = self._client()

    def _client(self) -> mqtt.Client:
        client = broker_client(self.config, f"smartbin-{self.bin_id}")
        client.will_set(self.status_topic, self._status("offline"), qos=1, retain=True)
        client.reconnect_delay_set(1, 10)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # --- the loop's observer interface
    def on_frame(self, frame: Frame) -> None:
        self.rate.tick()

    def on_item(self, item_id: int, record: ItemRecord) -> None:
        self._wake.set()

    def connected(self) -> bool:
        """Whether the broker is connected now."""
        return self._connected.is_set()

    # --- lifecycle
    def start(self, summary: dict[str, Any]) -> MqttPublisher:
        """Connect in the background and start publishing; ``summary``: model and config for the status."""
        self.summary = summary
        with Records(self.database) as records:
            self.starts = (records.counter("starts") or 0) + 1
            records.set_counter("starts", self.starts)
            if records.counter(self.cursor_name) is None:  # a new broker gets the items from now on
                records.set_counter(self.cursor_name, records.last_id())
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self.client.loop_start()
        for target, name in ((self._forward, "mqtt-items"), (self._telemetry, "mqtt-telemetry")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info("mqtt: publishing as %s to %s:%d%s", self.bin_id, self.config.host, self.config.port,
                    " (TLS)" if self.config.tls else "")
        return self

    def close(self) -> None:
        """Publish ``offline``, stop the threads and disconnect; safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._connected.is_set():
            info = self.client.publish(self.status_topic, self._status("offline"), qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- paho callbacks (paho's network thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._warn(f"mqtt: {self.config.host}:{self.config.port} refused the bin: {reason} (check "
                       "mqtt.username and the password file); retrying, sorting goes on")
            return
        self._warned = None
        logger.info("mqtt: connected to %s:%d", self.config.host, self.config.port)
        client.publish(self.status_topic, self._status("online"), qos=1, retain=True)
        client.subscribe(self.resend_topic, qos=1)
        if self.config.discovery:
            client.subscribe(f"{DISCOVERY}/status", qos=1)
            self._discovery()
        self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._warn(f"mqtt: cannot connect to {self.config.host}:{self.config.port} (broker down, wrong port or a TLS "
                   "mismatch); retrying, the items wait in the database")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._stop.is_set():  # a refused connect said why already
            self._warn(f"mqtt: lost the broker {self.config.host}:{self.config.port} ({reason}); reconnecting, "
                       "the items wait in the database")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == f"{DISCOVERY}/status" and message.payload == b"online":
            self._discovery()  # Home Assistant restarted: it forgets entities without retained configs
        elif message.topic == self.resend_topic:
            try:  # {"from": id} is a few bytes: anything longer is not parsed
                first = json.loads(message.payload)["from"] if len(message.payload) <= RESEND_MAX_BYTES else None
            except (ValueError, KeyError, TypeError):
                first = None
            if isinstance(first, int) and not isinstance(first, bool) and first >= 1:
                self._resend_from = first if self._resend_from is None else min(first, self._resend_from)
                self._wake.set()
            else:
                self._warn(f"mqtt: ignored a resend request that is not {{\"from\": id}}: {message.payload[:32]!r}")

    def _warn(self, text: str) -> None:
        if text != self._warned:
            logger.warning("%s", text)
            self._warned = text

    # --- publishing threads
    def _forward(self) -> None:
        """Publish every record after the cursor, in order, and move the cursor once the broker has them, until
        the stop. A database error (full, locked, damaged, gone) is one warning: the database is opened again
        and the items resent from the cursor every ``DATABASE_RETRY_S``."""
        while not self._stop.is_set():
            try:
                with Records(self.database) as records:
                    self._forward_from(records)
            except RecordError as exc:
                self._warn(f"mqtt: item messages wait: {exc}; retrying every {DATABASE_RETRY_S:g} s")
                self._stop.wait(DATABASE_RETRY_S)

    def _forward_from(self, records: Records) -> None:
        while not self._stop.is_set():
            cursor = records.counter(self.cursor_name) or 0
            self.pending_items = records.last_id() - cursor
            if not self._connected.wait(timeout=0.5):
                continue
            if self._resend_from is not None:
                first, self._resend_from = self._resend_from, None
                if first <= cursor:
                    logger.info("mqtt: a consumer missed items: resending from item %d", first)
                    cursor = first - 1
            rows = records.after(cursor, BATCH)
            if not rows:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            if self._publish_all(rows):
                records.set_counter(self.cursor_name, int(rows[-1]["id"]))
            else:
                self._stop.wait(0.5)  # not acknowledged (the broker went): resent from the cursor

    def _publish_all(self, rows: list[dict[str, Any]]) -> bool:
        """Publish the rows and wait for the broker; a row that is no message (a record damaged on disk) is one
        warning and skipped. Whether the broker has them all."""
        infos = []
        for row in rows:
            try:
                message = self._item(row)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                logger.warning("mqtt: item %s skipped: its record is not a message (%s: %s)", row.get("id"),
                               type(exc).__name__, exc)
                continue
            infos.append(self.client.publish(self.item_topic, message, qos=self.config.qos))
        deadline = time.monotonic() + ACK_TIMEOUT_S
        for info in infos:
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return False
            info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            if not info.is_published():
                return False
        return True

    def _telemetry(self) -> None:
        """Telemetry as soon as the broker is there, then every ``telemetry_s``."""
        while not self._stop.is_set():
            if not self._connected.wait(timeout=1.0):
                continue
            try:
                self.client.publish(self.telemetry_topic, json.dumps(self.telemetry()), qos=0, retain=True)
            except RecordError as exc:
                logger.warning("mqtt: telemetry skipped: %s", exc)
            self._stop.wait(self.config.telemetry_s)

    # --- payloads
    def _status(self, state: str) -> str:
        facts = {"schema": SCHEMA, "bin_id": self.bin_id, "state": state, "time": round(time.time(), 3),
                 "version": __version__}
        if state == "online":
            facts.update(since=round(self.started, 3), **self.summary)
        return json.dumps(facts)

    def _item(self, row: dict[str, Any]) -> str:
        latency = row.get("latency_ms")
        latency = latency if isinstance(latency, dict) else {}  # a record damaged on disk: no latency
        return json.dumps({
            "schema": SCHEMA, "bin_id": self.bin_id, "id": row["id"], "time": row["time"], "label": row["label"],
            "confidence": row["confidence"], "bin": row["bin"], "outcome": row["outcome"],
            "reason": row.get("reason"), "expected_cost": row.get("expected_cost"), "error": row["error"],
            "latency_ms": latency.get("total"), "since_line_ms": latency.get("since_line"), "truth": row["truth"],
            "model": row["model"], "model_sha256": row.get("model_sha256"),
        })

    def telemetry(self) -> dict[str, Any]:
        """The telemetry payload now. Raises RecordError."""
        counts = self.view.counts()
        recent = self.view.recent(1)
        error = self.view.last_error()
        fps = self.rate.fps()
        recent_error = error is not None and time.time() - error["time"] < 3600
        disk = disk_state(self.database.parent, self.settings.records.spill_file)
        full = f"disk full: {disk['held']} item records held in memory" if disk["full"] else None
        problem = full or ModelStore(self.database.parent).auto_rollback() or (
            ("error within the hour: " + str(error["error"])) if recent_error and error else
            ("no camera frames" if time.time() - self.started > 30 and fps == 0 else None))
        return {
            "schema": SCHEMA, "bin_id": self.bin_id, "time": round(time.time(), 3),
            "uptime_s": round(time.time() - self.started, 1), "starts": self.starts, "fps": round(fps, 2),
            "latency_ms": self.view.latency().get("total", {"items": 0}),
            "today": {key: counts[key] for key in ("total", "bins", "outcomes")},
            "cpu_temp_c": cpu_temperature(), "throttled": throttled(),
            "disk_free_mb": None if disk["free_mb"] is None else round(disk["free_mb"]),
            "disk_full": disk["full"], "records_held": disk["held"],
            "problem": problem,
            "last_item": {key: recent[0][key] for key in ("id", "time", "label", "bin", "outcome")} if recent else None,
            "last_error": error,
        }

    def _discovery(self) -> None:
        """Home Assistant MQTT discovery: today's count per bin, the total, the rejects, a problem sensor."""
        device = {"identifiers": [f"smartbin_{self.bin_id}"], "name": f"smartbin {self.bin_id}",
                  "manufacturer": "smartbin", "sw_version": __version__}
        common = {"state_topic": self.telemetry_topic, "availability_topic": self.status_topic,
                  "availability_template": "{{ value_json.state }}", "device": device}
        sensors = {f"{name}_today": (f"{name} today", f"{{{{ value_json.today.bins['{name}'] }}}}")
                   for name in self.settings.bins}
        sensors["total_today"] = ("items today", "{{ value_json.today.total }}")
        sensors["rejected_today"] = ("rejected today", "{{ value_json.today.outcomes.get('rejected', 0) }}")
        node = f"smartbin_{self.bin_id}"
        for key, (name, template) in sensors.items():
            config = {**common, "name": name, "unique_id": f"{node}_{key}", "value_template": template,
                      "unit_of_measurement": "items", "state_class": "measurement"}
            self.client.publish(f"{DISCOVERY}/sensor/{node}/{key}/config", json.dumps(config), qos=1, retain=True)
        problem = {**common, "name": "problem", "unique_id": f"{node}_problem", "device_class": "problem",
                   "value_template": "{{ 'ON' if value_json.problem else 'OFF' }}"}
        self.client.publish(f"{DISCOVERY}/binary_sensor/{node}/problem/config", json.dumps(problem), qos=1,
                            retain=True)


def cpu_temperature() -> float | None:
    """The SoC's temperature in °C where the kernel exposes it."""
    try:
        return round(int(THERMAL.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


def throttled() -> int | None:
    """The Raspberry Pi firmware's throttling bits (0 = never throttled), None elsewhere."""
    try:
        return int(THROTTLED.read_text().strip(), 16)
    except (OSError, ValueError):
        return None
