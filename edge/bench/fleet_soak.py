"""Fleet soak: many bins through one Mosquitto that is killed and restarted during the run; nothing may be lost.

    .venv/bin/python -m edge.bench.fleet_soak [--bins 20] [--items 500] [--rate 5] [--kills 2]

Starts a Mosquitto of its own (Debian's ``/usr/sbin/mosquitto``, persistence on, saved on every change) on a
free loopback port, and ``--bins`` bins in this process, each an ``MqttPublisher`` over its own item database,
each recording ``--items`` items at ``--rate`` items per second. A consumer with a persistent session (as
``smartbin fleet collect`` has) receives ``PREFIX/+/item``. During the run the broker is killed (SIGKILL)
``--kills`` times, each time for ``--down`` seconds; the consumer asks a bin again for the ids it finds missing
(``edge.fleet.gaps``), as the collector does. At the end (once every bin's cursor has reached its last
item, or a time-out) it prints the items recorded, delivered, lost (must be 0), delivered more than once,
the end-to-end lag (record written → consumer received) p50 / p99 and the broker's message rate.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import load_settings, parse_settings
from edge.fleet.gaps import GapTracker
from edge.records import ItemRecord, Records
from edge.service.mqtt import MqttPublisher

MOSQUITTO = Path("/usr/sbin/mosquitto")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Broker:
    """Debian's Mosquitto on 127.0.0.1 and a free port, with ``extra`` config lines (``persistent``: stored in
    ``folder``, saved on every change); ``stop()``, ``kill()`` (SIGKILL) and ``start()`` again on the same port.
    The fleet soak's broker, and the tests'."""

    def __init__(self, folder: Path, extra: str = "allow_anonymous true\n", persistent: bool = False) -> None:
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        stored = (f"persistence true\npersistence_location {folder}/\nautosave_interval 1\nautosave_on_changes true\n"
                  if persistent else "persistence false\n")
        self.config.write_text(f"listener {self.port} 127.0.0.1\n{stored}max_queued_messages 100000\n{extra}")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([str(MOSQUITTO), "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.send_signal(sig)
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class Consumer:
    """A persistent-session subscriber to every bin's items, noting when each arrived."""

    def __init__(self, port: int, prefix: str) -> None:
        self.arrivals: list[tuple[str, int, float, float]] = []  # bin, id, item time, received
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="soak-consumer", clean_session=False)
        self.prefix = prefix
        self.gaps = GapTracker(every_s=1.0)
        self.resends = 0
        self.client.on_connect = lambda c, *_: c.subscribe([(f"{prefix}/+/item", 1), (f"{prefix}/+/telemetry", 0)])
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        payload = json.loads(message.payload)
        bin_id = payload["bin_id"]
        with self.lock:
            if bin_id not in self.gaps.expected:
                self.gaps.start(bin_id, 1)  # every bin starts with a fresh database
            if message.topic.endswith("/telemetry"):
                first = self.gaps.latest(bin_id, payload["last_item"]["id"]) if payload.get("last_item") else None
            else:
                self.arrivals.append((bin_id, payload["id"], payload["time"], time.time()))
                first = self.gaps.seen(bin_id, payload["id"])
            if first is not None:
                self.resends += 1
                client.publish(f"{self.prefix}/{bin_id}/resend", json.dumps({"from": first}), qos=1)


def bin_settings(folder: Path, name: str, port: int) -> Any:
    data = load_settings().model_dump()
    data["records"] = {"path": folder / name / "items.db", "keep_days": 0, "max_mb": 0}
    data["mqtt"] = {**data["mqtt"], "enabled": True, "host": "127.0.0.1", "port": port, "bin_id": name,
                    "keepalive_s": 5, "telemetry_s": 2.0, "discovery": False}
    return parse_settings(data)


def record_items(database: Path, publisher: MqttPublisher, count: int, rate: float) -> None:
    with Records(database) as records:
        for n in range(count):
            item_id = records.add(ItemRecord(time=time.time(), frame=n, source="soak", bin="glass",
                                             gate_action="flap→-60°", outcome="sorted", model="m.tflite",
                                             label="green-glass", confidence=0.9, reason="top"))
            publisher.on_item(item_id, None)  # type: ignore[arg-type]
            time.sleep(1 / rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bins", type=int, default=20)
    parser.add_argument("--items", type=int, default=500, help="items per bin")
    parser.add_argument("--rate", type=float, default=5.0, help="items per second per bin")
    parser.add_argument("--kills", type=int, default=2, help="times the broker is killed")
    parser.add_argument("--down", type=float, default=5.0, help="seconds the broker stays down each time")
    args = parser.parse_args()
    if not MOSQUITTO.exists():
        raise SystemExit("needs Debian's mosquitto (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker = Broker(folder, persistent=True)
        consumer = Consumer(broker.port, "smartbin")
        time.sleep(0.5)
        names = [f"bin-{i:02d}" for i in range(args.bins)]
        publishers = {}
        for name in names:
            settings = bin_settings(folder, name, broker.port)
            settings.records.database.parent.mkdir(parents=True)
            publishers[name] = MqttPublisher(settings).start({})
        started = time.time()
        writers = [threading.Thread(target=record_items, args=(publishers[n].database, publishers[n], args.items,
                                                               args.rate)) for n in names]
        for writer in writers:
            writer.start()
        run_s = args.items / args.rate
        for _ in range(args.kills):
            time.sleep(run_s / (args.kills + 1))
            broker.kill()
            print(f"broker killed at {time.time() - started:.1f} s, down for {args.down:g} s", flush=True)
            time.sleep(args.down)
            broker.start()
        for writer in writers:
            writer.join()
        deadline = time.time() + 120
        while time.time() < deadline and len({(b, i) for b, i, *_ in consumer.arrivals}) < args.bins * args.items:
            time.sleep(0.5)
        elapsed = time.time() - started
        for publisher in publishers.values():
            publisher.close()
        consumer.client.loop_stop()
        broker.kill()
    with consumer.lock:
        arrivals = list(consumer.arrivals)
    unique = {(b, i): received - sent for b, i, sent, received in arrivals}
    expected = {(name, i) for name in names for i in range(1, args.items + 1)}
    lag = np.array(list(unique.values())) * 1000
    print(f"{args.bins} bins x {args.items} items, broker killed {args.kills} times for {args.down:g} s, "
          f"{elapsed:.0f} s in all")
    print(f"recorded {len(expected)}, delivered {len(expected & set(unique))}, lost {len(expected - set(unique))}, "
          f"delivered more than once {len(arrivals) - len(unique)}; resends asked for {consumer.resends}")
    if lag.size:
        print(f"lag record -> consumer: p50 {np.percentile(lag, 50):.0f} ms, p99 {np.percentile(lag, 99):.0f} ms, "
              f"max {lag.max():.0f} ms; broker message rate {len(arrivals) / elapsed:.0f} items/s "
              f"(peak second {max(np.bincount(np.array([r for *_, r in arrivals]).astype(int) - int(started))):d})")


if __name__ == "__main__":
    main()
