"""``smartbin fleet status``: every bin seen on the broker, from its retained status and telemetry topics."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from edge.config import MqttSettings
from edge.errors import SmartbinError
from edge.service.mqtt import broker_client
from edge.service.status import clock as local_time

COLUMNS = ("bin", "state", "since", "items today", "rejected", "last item", "model", "problem / last error")


def connect(client: mqtt.Client, host: str, port: int) -> None:
    """Connect, or one-line SmartbinError."""
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ValueError) as exc:
        raise SmartbinError(f"cannot reach the broker {host}:{port}: {getattr(exc, 'strerror', None) or exc}") \
            from None


def collect(config: MqttSettings, host: str, port: int, wait_s: float) -> dict[str, dict[str, Any]]:
    """Per bin id: its last ``status`` and ``telemetry`` payloads, gathered for ``wait_s`` seconds."""
    bins: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    refused: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            return
        client.subscribe([(f"{config.prefix}/+/status", 1), (f"{config.prefix}/+/telemetry", 0)])

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        _, bin_id, kind = message.topic.rsplit("/", 2)
        try:
            payload = json.loads(message.payload)
        except ValueError:
            return
        with lock:
            bins.setdefault(bin_id, {})[kind] = payload

    client = broker_client(config, f"smartbin-fleet-{time.monotonic_ns()}")
    client.on_connect = on_connect
    client.on_message = on_message
    connect(client, host, port)
    client.loop_start()
    time.sleep(wait_s)
    client.loop_stop()
    client.disconnect()
    if refused:
        raise SmartbinError(f"the broker {host}:{port} refused us: {refused[0]} (mqtt.username, password_file)")
    return bins


def table(bins: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per bin, sorted by id."""
    rows = []
    for bin_id in sorted(bins):
        status, telemetry = bins[bin_id].get("status", {}), bins[bin_id].get("telemetry", {})
        today = telemetry.get("today", {})
        last = telemetry.get("last_item")
        error = telemetry.get("last_error")
        rows.append([
            bin_id, status.get("state", "?"), clock(status.get("since") or status.get("time")),
            str(today.get("total", "–")), str(today.get("outcomes", {}).get("rejected", 0) if today else "–"),
            f"{clock(last['time'])} {last['label']} → {last['bin']}" if last else "–",
            (status.get("model") or {}).get("file", "–"),
            telemetry.get("problem") or (f"{clock(error['time'])} {error['error']}" if error else "–"),
        ])
    return rows


def clock(t: float | None) -> str:
    """Local date and time of a Unix time, '–' when unknown."""
    return local_time(t) if t else "–"


def render(rows: list[list[str]]) -> str:
    """The table aligned in columns."""
    grid = [list(COLUMNS), *rows]
    widths = [max(len(row[i]) for row in grid) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in grid)
