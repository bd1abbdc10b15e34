"""Assembling a sorter from settings: model → gates → records → camera, closed in reverse order."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

from edge.classifier import Classifier
from edge.config import Settings
from edge.decision import Decider
from edge.gates import GateBank
from edge.loop import Observer, SortingLoop
from edge.pins import make_pin_factory
from edge.records import Records
from edge.sources import FrameSource, FrameStream, open_source


class Sorter:
    """Everything a running bin holds. Build with ``Sorter(settings)``, use as a context manager.

    Start-up order fails fast on what is cheapest to check: the model and its card, labels against bins,
    the gates (to their safe position), the record database, and the camera last. ``close()`` returns the
    gates to safe, releases the camera and closes the database, whatever failed.
    """

    def __init__(
        self, settings: Settings, source: FrameSource | None = None, observers: Sequence[Observer] = ()
    ) -> None:
        self.settings = settings
        self._stack = ExitStack()
        try:
            self.classifier = self._stack.enter_context(
                Classifier(settings.model.path, threads=settings.model.threads or None)
            )
            settings.check_labels(self.classifier.labels)
            self.gates = self._stack.enter_context(GateBank(settings, make_pin_factory(settings.gpio.pin_factory)))
            self.records = self._stack.enter_context(Records(settings.records.database))
            self.source = source or open_source(settings.camera, frames_per_item=settings.sorting.votes)
            self._stack.enter_context(self.source)
            self.stream = FrameStream(self.source, settings.camera.stall_timeout_s, settings.camera.fps)
            self._stack.callback(self.stream.stop)
            self._stack.callback(self.gates.safe)  # runs first on close
        except BaseException:
            self.close()
            raise
        self.loop = SortingLoop(
            self.stream.start(),
            self.classifier,
            Decider(settings.bin_of(), settings.sorting.threshold, settings.sorting.reject_bin),
            self.gates,
            self.records,
            default_bin=settings.default_bin,
            roi=settings.camera.region,
            votes=settings.sorting.votes,
            observers=observers,
        )

    def close(self) -> None:
        """Stop the camera, gates to safe, close the database; safe to call twice."""
        self._stack.close()

    def __enter__(self) -> Sorter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
