"""``smartbin run`` as a service: the sorter with its observers (systemd watchdog, metrics, web page, the trial
of a newly installed model), retention of old records, signals that stop it after the item in hand, READY /
STOPPING for systemd, and the tally."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from gpiozero import Factory

from edge.app import Sorter
from edge.config import Settings
from edge.loop import Observer
from edge.service import stacks
from edge.service.model_trial import ModelTrial
from edge.service.notify import Notifier, ServiceWatch
from edge.service.retention import Retention
from edge.sources import FrameSource

logger = logging.getLogger("smartbin")


def serve(settings: Settings, max_items: int | None = None, pin_factory: Factory | None = None,
          source: FrameSource | None = None, camera_wait_s: float = 0.0,
          reload: Callable[[], Settings] | None = None) -> int:
    """Sort until SIGTERM / SIGINT (the item in hand is finished) or ``max_items``; 0 when it ends so.
    ``pin_factory``, ``source``: instead of the settings' (tests and the fault soak: gpiozero's
    ``MockFactory``, a camera that fails on cue); ``camera_wait_s``: see ``Sorter``. A model change made on the
    page (staged, installed, rolled back) restarts the sorter in this process with ``reload()``'s settings
    (the config read again: it names the model store's current model and the staged shadow)."""
    stop = threading.Event()
    notifier = Notifier()
    if notifier.watchdog_s:
        stacks.install()  # before any thread starts: the watchdog's SIGABRT logs every stack, safely
    sorted_items = 0
    with stop_on_signals(stop) as signals:
        while True:
            restart = Restart(stop)
            left = None if max_items is None else max_items - sorted_items
            sorted_items += serve_once(settings, left, pin_factory, source, camera_wait_s, notifier, stop,
                                       restart if reload is not None else None)
            if restart.why is None or signals.received or (max_items is not None and sorted_items >= max_items):
                return 0
            logger.info("restarting the sorter: %s", restart.why)
            stop.clear()
            assert reload is not None
            settings = reload()


class Restart:
    """Asks the running sorter to stop after the item in hand and start again (``why`` says for what)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.why: str | None = None

    def __call__(self, why: str) -> None:
        self.why = why
        self.stop.set()


def serve_once(settings: Settings, max_items: int | None, pin_factory: Factory | None, source: FrameSource | None,
               camera_wait_s: float, notifier: Notifier, stop: threading.Event, restart: Restart | None) -> int:
    """One sorter with its observers, until ``stop``; the items it sorted."""
    observers: list[Observer] = [ServiceWatch(notifier)]
    with ExitStack() as stack:
        metrics = None
        if settings.metrics.enabled:
            from edge.service.metrics import Metrics

            metrics = stack.enter_context(Metrics(settings))
            observers.append(metrics)
        if settings.web.enabled:
            from edge.web import LiveState, WebServer

            live = LiveState(settings.camera.region, settings.camera.source, crop=settings.camera.crop)
            observers.append(live)
            stack.enter_context(WebServer(settings, live, restart))
        publisher = None
        if settings.mqtt.enabled:
            from edge.service.mqtt import MqttPublisher

            publisher = stack.enter_context(MqttPublisher(settings))
            observers.append(publisher)
            if metrics is not None:
                metrics.watch_mqtt(publisher.connected, lambda: publisher.pending_items)
        sorter = stack.enter_context(Sorter(settings, source=source, observers=observers, pin_factory=pin_factory,
                                            camera_wait_s=camera_wait_s))
        if metrics is not None:
            metrics.watch_held(sorter.loop.held)
        trial = ModelTrial.start(settings, sorter.classifier, sorter.records, stop)
        if trial is not None:
            sorter.loop.observers.append(trial)
        if publisher is not None:
            publisher.start(summary(settings, sorter))
        records = settings.records
        stack.callback(Retention(sorter.records.path, records.keep_days, records.max_mb).start().stop)
        card = sorter.classifier.card
        logger.info(
            "sorting from %s with %s (%d classes, %dx%d, %s); decisions: %s; records: %s",
            sorter.source.name, sorter.classifier.path.name, len(card.labels), card.input.width,
            card.input.height, sorter.classifier.runtime, sorter.loop.decider.mode, sorter.records.path,
        )
        if notifier.backend != "none":
            logger.info("systemd: notify through %s, watchdog %s", notifier.backend,
                        f"every {notifier.watchdog_s / 3:g} s" if notifier.watchdog_s else "off")
        notifier.ready(f"sorting from {sorter.source.name}")
        try:
            tally = sorter.loop.run(max_items=max_items, stop=stop)
        finally:
            if restart is not None and restart.why is not None:
                notifier.status(f"restarting the sorter: {restart.why}")  # the watchdog keeps being fed
            else:
                notifier.stopping("stopping: gates to safe, closing the camera and the records")
        if trial is not None:
            trial.check()
    logger.info("done: %s", tally.summary())
    return tally.items




def summary(settings: Settings, sorter: Sorter) -> dict[str, Any]:
    """What the bin's MQTT status says of it: the model, the decision rule, bins, gates, belt speed."""
    classifier = sorter.classifier
    integrity = classifier.card.extra.get("integrity") or {}
    return {"model": {"file": classifier.path.name, "sha256": integrity.get("tflite_sha256"),
                      "runtime": classifier.runtime, "labels": len(classifier.labels)},
            "config": {"rule": sorter.loop.decider.mode, "bins": list(settings.bins), "gates": list(settings.gates),
                       "belt_speed_m_s": settings.conveyor.belt_speed_m_s, "source": sorter.source.name}}


class stop_on_signals:
    """Context manager: SIGTERM and SIGINT set ``stop`` (the loop finishes the item in hand), then restore."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        logger.info("%s: stopping after the item in hand", signal.Signals(signum).name)
        self.received = True
        self.stop.set()

    def __enter__(self) -> stop_on_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
