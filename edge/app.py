"""Assembling a sorter from settings: model → gates → records → camera → trigger, closed in reverse order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack

from gpiozero import Factory

from edge.actuate import GateScheduler
from edge.classifier import Classifier, ImageClassifier
from edge.config import Settings
from edge.decision import decider_for
from edge.errors import ConfigError
from edge.gates import GateBank
from edge.held import HeldRecords
from edge.integrity import check_probe
from edge.loop import Observer, SortingLoop
from edge.pins import make_pin_factory
from edge.plan import GatePlace, Planner
from edge.records import Records
from edge.retrain import FrameKeeper
from edge.service.safe import remember_gates
from edge.shadow import Shadow
from edge.sources import FrameSource, FrameStream, open_source, open_waiting
from edge.sources.folder import FolderSource
from edge.trigger import BeamTrigger, ItemTracker, Trigger, VisionTrigger

logger = logging.getLogger(__name__)


class Sorter:
    """Everything a running bin holds. Build with ``Sorter(settings)``, use as a context manager.

    Start-up order fails fast on what is cheapest to check: the model and its card, labels against bins,
    the gates (to their safe position), the record database, the camera, the item trigger. ``close()`` lets the
    items on their way pass their gates (up to 6 s), puts the gates safe, then releases the camera, and closes
    the classifier and the database once no sorting thread uses them, whatever failed. ``source``,
    ``pin_factory`` and ``classifier`` replace what the settings would build (tests, benchmarks: a replay
    source, gpiozero's ``MockFactory``, ``edge.fakes.FakeClassifier``). ``camera_wait_s``: how long a live
    camera that is not there at start is waited for (the service: a camera that comes back after a restart).
    """

    def __init__(
        self,
        settings: Settings,
        source: FrameSource | None = None,
        observers: Sequence[Observer] = (),
        pin_factory: Factory | None = None,
        classifier: ImageClassifier | None = None,
        camera_wait_s: float = 0.0,
    ) -> None:
        self.settings = settings
        self._stack = ExitStack()  # the gates, the camera, the trigger, the threads that drive them
        self._used = ExitStack()  # what the sorting thread uses: the classifier, the records, the shadow model
        try:
            self.classifier: ImageClassifier = classifier or self._used.enter_context(
                Classifier(settings.model.path, settings.model.threads or None, settings.model.allow_unsealed)
            )
            settings.check_labels(self.classifier.labels)
            logger.debug("%s: %s", self.classifier.path.name, check_probe(self.classifier))
            self.pin_factory = pin_factory or make_pin_factory(settings.gpio.pin_factory)
            self.gates = self._stack.enter_context(GateBank(settings, self.pin_factory))
            self.records = self._used.enter_context(Records(settings.records.database))
            remember_gates(settings)
            keeper = self._keeper()
            shadow = None
            if settings.model.shadow is not None:  # a candidate beside the live model: fails here if broken
                shadow = Shadow(settings.model.shadow, settings.records.database, self._busy,
                                settings.camera.region, settings.camera.crop)
                self._used.callback(shadow.close)
                logger.info("shadow model %s beside the live one, while the sorter is idle",
                            shadow.classifier.path.name)
            self.source = source or open_source(settings)
            open_waiting(self.source, camera_wait_s)
            self._stack.callback(self.source.close)
            trigger = self._trigger()
            votes = 1 if trigger is None and self.source.photo_items else settings.sorting.votes
            if trigger is not None:
                self._stack.callback(trigger.close)
            self.stream = FrameStream(self.source, settings.camera.stall_timeout_s, frame_rate(settings, self.source))
            self._stack.callback(self.stream.stop)
            self.planner = planner_for(settings, self.gates)
            self.scheduler = GateScheduler(self.planner, self.gates.apply)
            self._stack.callback(self.scheduler.stop)  # every gate safe, once
            self._stack.callback(self.scheduler.finish)  # runs first on close: the items on their way pass
            self.loop = SortingLoop(
                self.stream.start(),
                ItemTracker(trigger, votes, settings.conveyor.absent_frames),
                self.classifier,
                decider_for(settings, self.classifier.labels, self.classifier.card.temperature),
                self.planner,
                self.records,
                roi=settings.camera.region,
                crop=settings.camera.crop,
                votes=votes,
                observers=observers,
                keeper=keeper,
                gate_failure=lambda: self.scheduler.failure,
                shadow=shadow,
                held=self._held(keeper),
            )
            self.scheduler.start()
        except BaseException:
            self.close()
            raise

    def _keeper(self) -> FrameKeeper | None:
        retrain = self.settings.retrain
        if not retrain.enabled:
            return None
        folder = self.settings.retrain_folder
        try:
            return FrameKeeper(folder, retrain.keep_below, retrain.max_mb, self.settings.camera.region,
                               retrain.min_free_mb, self.settings.camera.crop, retrain.sample_share,
                               lambda: {row["item_id"] for row in self.records.labels()})
        except OSError as exc:
            raise ConfigError(f"retrain.folder: cannot use {folder}: {exc.strerror or exc}") from None

    def _held(self, keeper: FrameKeeper | None) -> HeldRecords:
        """The records' hold: spilled where the settings say, taken back now; kept frames give way on a full disk
        where they share the database's file system."""
        database = self.records.path.parent
        same_disk = keeper is not None and keeper.folder.stat().st_dev == database.stat().st_dev
        held = HeldRecords(self.records, spill=self.settings.records.spill_file,
                           make_space=keeper.give_way if keeper is not None and same_disk else None)
        held.take_back()
        return held

    def _trigger(self) -> Trigger | None:
        conveyor = self.settings.conveyor
        kind = conveyor.trigger
        if kind == "auto":
            kind = "frames" if isinstance(self.source, FolderSource) else "vision"
        if kind == "vision":
            return vision_trigger(self.settings)
        if kind == "beam":
            assert conveyor.beam_pin is not None
            return BeamTrigger(conveyor.beam_pin, conveyor.beam_bounce_s, self.pin_factory)
        return None

    def _busy(self) -> bool:
        loop: SortingLoop | None = getattr(self, "loop", None)  # None while starting
        return loop is not None and loop.busy()

    def close(self) -> None:
        """Gates safe, stop the camera; then the classifier and the database are closed, at once, or by a sorting
        thread still busy with an item as it ends (never under it); safe to call twice."""
        self._stack.close()
        used, self._used = self._used, ExitStack()
        loop: SortingLoop | None = getattr(self, "loop", None)  # None: it failed to start
        if loop is None:
            used.close()
        elif not loop.release(used.close):
            logger.error("the sorting thread is still busy with an item: the classifier and the records are "
                         "closed when it ends")

    def __enter__(self) -> Sorter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_rate(settings: Settings, source: FrameSource) -> float:
    """How fast to read the source: ``camera.fps``, and for photos of one item each (a folder) no faster than
    the belt would bring items (``simulator.spacing_m`` / belt speed apart), so that the gates keep up."""
    fps = settings.camera.fps
    if not source.photo_items:
        return fps
    items_per_s = settings.conveyor.belt_speed_m_s / settings.simulator.spacing_m
    return min(fps, items_per_s) if fps > 0 else items_per_s


def vision_trigger(settings: Settings) -> VisionTrigger:
    """The vision trigger as the settings describe it."""
    conveyor = settings.conveyor
    return VisionTrigger(settings.camera.region, conveyor.min_area, conveyor.diff_threshold,
                         conveyor.background_alpha, conveyor.band)


def planner_for(settings: Settings, gates: GateBank) -> Planner:
    """The gate planner for the settings' belt speed and gate places."""
    speed = settings.conveyor.belt_speed_m_s
    places = {name: GatePlace(g.delay(speed), g.settle_s) for name, g in settings.gates.items()}
    conveyor = settings.conveyor
    return Planner(gates.routes, places, settings.default_bin, conveyor.item_pass_s,
                   conveyor.pass_margin_m / speed, conveyor.pass_slack_m / speed)
