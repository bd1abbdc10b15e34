"""``smartbin fleet collect``: every bin's items from the broker into one PostgreSQL database.

Subscribes to ``PREFIX/+/item`` (QoS 1, a persistent session under a fixed client id, so the broker keeps what
arrives while the collector is away) and to the retained ``status`` and ``telemetry`` topics. Each item is
inserted once: the primary key is ``(bin_id, id)`` and a repeat (a bin resends after a reconnect) is ignored, so
the collector is idempotent and several may run. A gap in a bin's ids (a broker that crashed before it stored
what it had acknowledged) is asked for again (``edge.fleet.gaps``). psycopg 3 (``pip install 'smartbin[fleet]'``).

    smartbin fleet collect --broker HOST[:PORT] --db postgresql://user@host/fleet
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt

from edge.config import MqttSettings
from edge.errors import SmartbinError
from edge.fleet.gaps import GapTracker
from edge.fleet.status import connect
from edge.service.mqtt import broker_client

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_items (
    bin_id        TEXT             NOT NULL,
    id            BIGINT           NOT NULL,
    time          DOUBLE PRECISION NOT NULL,
    label         TEXT,
    confidence    REAL,
    bin           TEXT             NOT NULL,
    outcome       TEXT             NOT NULL,
    reason        TEXT,
    expected_cost REAL,
    error         TEXT,
    latency_ms    REAL,
    since_line_ms REAL,
    truth         TEXT,
    received      TIMESTAMPTZ      NOT NULL DEFAULT now(),
    PRIMARY KEY (bin_id, id)
);
ALTER TABLE fleet_items ADD COLUMN IF NOT EXISTS model TEXT;
ALTER TABLE fleet_items ADD COLUMN IF NOT EXISTS model_sha256 TEXT;
CREATE INDEX IF NOT EXISTS fleet_items_time ON fleet_items (time);
CREATE TABLE IF NOT EXISTS fleet_bins (
    bin_id    TEXT PRIMARY KEY,
    status    JSONB,
    telemetry JSONB,
    updated   TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""
ITEM_COLUMNS = ("bin_id", "id", "time", "label", "confidence", "bin", "outcome", "reason", "expected_cost", "error",
                "latency_ms", "since_line_ms", "truth", "model", "model_sha256")
INSERT = (f"INSERT INTO fleet_items ({', '.join(ITEM_COLUMNS)}) VALUES ({', '.join(['%s'] * len(ITEM_COLUMNS))}) "
          "ON CONFLICT (bin_id, id) DO NOTHING")


class Collector:
    """Writes the broker's item, status and telemetry messages into PostgreSQL at ``dsn``."""

    def __init__(self, config: MqttSettings, host: str, port: int, dsn: str, client_id: str = "smartbin-collector"
                 ) -> None:
        try:
            import psycopg
        except ImportError:
            raise SmartbinError("the collector needs psycopg 3: pip install 'smartbin[fleet]'") from None
        try:
            self.db = psycopg.connect(dsn, autocommit=True)
            self.db.execute(SCHEMA)
        except psycopg.Error as exc:
            raise SmartbinError(f"--db: cannot use {dsn.split('@')[-1]}: {str(exc).strip().splitlines()[0]}") \
                from None
        self.config, self.host, self.port = config, host, port
        self.inserted = self.repeated = 0
        self.gaps = GapTracker()
        self.lock = threading.Lock()
        self.client = broker_client(config, client_id, clean=False)  # the broker keeps our messages meanwhile
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            logger.warning("collector: the broker refused us: %s", reason)
            return
        prefix = self.config.prefix
        client.subscribe([(f"{prefix}/+/item", 1), (f"{prefix}/+/status", 1), (f"{prefix}/+/telemetry", 0)])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        kind = message.topic.rsplit("/", 1)[-1]
        try:
            payload = json.loads(message.payload)
            with self.lock:
                bin_id = str(payload["bin_id"])
                if bin_id not in self.gaps.expected:  # first sight: expect one past what the database holds
                    held = self.db.execute("SELECT max(id) FROM fleet_items WHERE bin_id = %s", (bin_id,)).fetchone()
                    if held and held[0] is not None:
                        self.gaps.start(bin_id, int(held[0]) + 1)
                if kind == "item":
                    cursor = self.db.execute(INSERT, [payload.get(column) for column in ITEM_COLUMNS])
                    if cursor.rowcount:
                        self.inserted += 1
                    else:
                        self.repeated += 1
                    self._resend(bin_id, self.gaps.seen(bin_id, int(payload["id"])))
                else:
                    if kind == "telemetry" and payload.get("last_item"):
                        self._resend(bin_id, self.gaps.latest(bin_id, int(payload["last_item"]["id"])))
                    self.db.execute(
                        f"INSERT INTO fleet_bins (bin_id, {kind}) VALUES (%s, %s) ON CONFLICT (bin_id) DO UPDATE "
                        f"SET {kind} = excluded.{kind}, updated = now()", (payload["bin_id"], json.dumps(payload)))
        except Exception as exc:  # a malformed message or a database hiccup must not stop the collector
            logger.warning("collector: %s: message skipped: %s", message.topic, str(exc).splitlines()[0])

    def _resend(self, bin_id: str, first: int | None) -> None:
        if first is not None:
            logger.info("collector: items of %s missing from %d on: asked for them again", bin_id, first)
            self.client.publish(f"{self.config.prefix}/{bin_id}/resend", json.dumps({"from": first}), qos=1)

    def run(self, stop: threading.Event) -> None:
        """Collect until ``stop`` is set."""
        connect(self.client, self.host, self.port)
        self.client.loop_start()
        try:
            stop.wait()
        finally:
            self.client.loop_stop()
            self.client.disconnect()
            self.db.close()
