"""Prometheus metrics of a running bin (``[metrics]``, off by default): items per bin and outcome, confidence,
per-stage latency, camera frame rate, gate moves, errors, records held on a full disk. A loop observer on its own
registry, served over HTTP by prometheus-client (localhost unless configured)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, start_http_server

from edge.config import Settings
from edge.errors import PortError
from edge.frame_rate import FrameRate
from edge.held import HeldRecords
from edge.records import ItemRecord, Outcome
from edge.sources import Frame

logger = logging.getLogger(__name__)

CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Loop observer that counts into a Prometheus registry; ``serve()`` starts the endpoint, ``close()`` stops it.

    Every (bin, outcome) and gate series exists from the start at 0, so rates work from the first scrape.
    Counters have no ``_created`` series (turned off process-wide: they only double the scrape).
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.host, self.port = settings.metrics.host, settings.metrics.port
        disable_created_metrics()
        self.registry = CollectorRegistry()
        self.gate_of = {name: spec.gate for name, spec in settings.bins.items()}
        self.items = Counter("smartbin_items", "Items recorded, by bin and outcome", ["bin", "outcome"],
                             registry=self.registry)
        self.confidence = Histogram("smartbin_confidence", "Top-class confidence of classified items",
                                    buckets=CONFIDENCE_BUCKETS, registry=self.registry)
        self.latency = Histogram("smartbin_stage_latency_seconds", "Time per item and stage (since_line: from the "
                                 "camera line to the record)", ["stage"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.frames = Counter("smartbin_frames", "Frames received from the camera", registry=self.registry)
        self.rate = FrameRate(clock=clock)
        self.fps = Gauge("smartbin_camera_fps", f"Camera frame rate over the last {self.rate.window_s:g} s",
                         registry=self.registry)
        self.gate_moves = Counter("smartbin_gate_actuations", "Gate moves booked for items, by gate", ["gate"],
                                  registry=self.registry)
        self.errors = Counter("smartbin_errors", "Items that failed (dead frame, model error): outcome 'error'",
                              registry=self.registry)
        for bin_name in settings.bins:
            for outcome in get_args(Outcome):
                self.items.labels(bin_name, outcome)
        for gate in settings.gates:
            self.gate_moves.labels(gate)
        self.fps.set_function(self.rate.fps)
        self._server: WSGIServer | None = None

    def on_frame(self, frame: Frame) -> None:
        self.frames.inc()
        self.rate.tick()

    def on_item(self, item_id: int, record: ItemRecord) -> None:
        self.items.labels(record.bin, record.outcome).inc()
        if record.confidence is not None:
            self.confidence.observe(record.confidence)
        for stage, ms in record.latency_ms.items():
            self.latency.labels(stage).observe(ms / 1000)
        gate = self.gate_of.get(record.bin)
        if gate is not None:
            self.gate_moves.labels(gate).inc()
        if record.outcome == "error":
            self.errors.inc()

    def watch_mqtt(self, connected: Callable[[], bool], pending: Callable[[], int]) -> None:
        """Gauges of the MQTT publisher: connected to the broker (1/0), items recorded but not yet delivered."""
        Gauge("smartbin_mqtt_connected", "1 while the MQTT broker is connected", registry=self.registry
              ).set_function(lambda: float(connected()))
        Gauge("smartbin_mqtt_pending_items", "Items recorded but not yet acknowledged by the MQTT broker",
              registry=self.registry).set_function(lambda: float(pending()))

    def watch_held(self, held: HeldRecords) -> None:
        """Gauges of the records' hold: records held in memory for the database, the disk full (1/0)."""
        Gauge("smartbin_records_held", "Item records held in memory while the database refuses them (disk full, "
              "locked)", registry=self.registry).set_function(lambda: float(held.held))
        Gauge("smartbin_disk_full", "1 while the item database refuses records because its disk is full",
              registry=self.registry).set_function(lambda: float(held.disk_full))

    def serve(self) -> Metrics:
        """Start the HTTP endpoint in a daemon thread; logs its address."""
        try:
            self._server, _thread = start_http_server(self.port, self.host, self.registry)
        except OSError as exc:
            raise PortError(f"metrics: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        logger.info("metrics at http://%s:%d/metrics", *self.address)
        return self

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) served; the real port when port 0 was asked for."""
        assert self._server is not None, "not serving"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop the endpoint; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Metrics:
        return self.serve()

    def __exit__(self, *exc: object) -> None:
        self.close()
