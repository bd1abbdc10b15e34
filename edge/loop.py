"""The sorting loop: frames → preprocess → classify → decide → actuate → record, one item at a time."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edge.classifier import Classifier
from edge.decision import Decider, Decision
from edge.errors import GateError, ModelError, RecordError
from edge.gates import GateBank
from edge.preprocess import Roi, prepare
from edge.records import ItemRecord, Records
from edge.sources import Frame, FrameStream, is_dead

logger = logging.getLogger("smartbin.items")


class Observer(Protocol):
    """Something that watches the loop (watchdog, metrics, web page). Called in the loop's thread: keep it quick."""

    def on_frame(self, frame: Frame) -> None:
        """A frame arrived from the camera."""

    def on_item(self, item_id: int, record: ItemRecord) -> None:
        """An item's record was committed."""


@dataclass
class Tally:
    """Items per (bin, outcome) of one run."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def items(self) -> int:
        return sum(self.counts.values())

    def add(self, record: ItemRecord) -> None:
        self.counts[(record.bin, record.outcome)] += 1

    def summary(self) -> str:
        by_outcome = Counter[str]()
        for (_, outcome), n in self.counts.items():
            by_outcome[outcome] += n
        bins = Counter[str]()
        for (bin_name, _), n in self.counts.items():
            bins[bin_name] += n
        return (
            f"{self.items} items: "
            + ", ".join(f"{n} {outcome}" for outcome, n in sorted(by_outcome.items()))
            + " | "
            + ", ".join(f"{name} {n}" for name, n in sorted(bins.items()))
        )


class SortingLoop:
    """Sorts items from a frame stream until it ends, ``max_items`` are done, or ``stop`` is set.

    Every item gets exactly one record, committed before the next item starts. An item that fails (dead frame,
    model error, gate error) is recorded with outcome ``error`` and falls to the default bin with every gate
    safe; a failure to write a record stops the loop (the record is logged as JSON so the journal keeps it).
    """

    def __init__(
        self,
        stream: FrameStream,
        classifier: Classifier,
        decider: Decider,
        gates: GateBank,
        records: Records,
        default_bin: str,
        roi: Roi | None = None,
        votes: int = 1,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.stream = stream
        self.classifier = classifier
        self.decider = decider
        self.gates = gates
        self.records = records
        self.default_bin = default_bin
        self.roi = roi
        self.votes = votes
        self.observers = list(observers)
        self.model_name = classifier.path.name
        self.tally = Tally()

    def run(self, max_items: int | None = None, stop: threading.Event | None = None) -> Tally:
        """Sort items; returns the tally of this run."""
        stop = stop or threading.Event()
        frames = iter(self.stream)
        while not stop.is_set() and (max_items is None or self.tally.items < max_items):
            started = time.perf_counter()
            item = self._next_item(frames)
            if item is None:
                break
            record = self.sort(item, capture_ms=(time.perf_counter() - started) * 1000)
            self._commit(record)
        return self.tally

    def _next_item(self, frames: Iterator[Frame]) -> list[Frame] | None:
        item: list[Frame] = []
        for frame in frames:
            self.gates.release_due()
            for observer in self.observers:
                observer.on_frame(frame)
            item.append(frame)
            if len(item) == self.votes:
                return item
        return None

    def sort(self, frames: list[Frame], capture_ms: float = 0.0) -> ItemRecord:
        """Classify, decide and actuate for one item seen in ``frames``; returns its record (not yet written)."""
        first = frames[0]
        latency = {"capture": capture_ms}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            latency[stage] = (now - clock) * 1000
            clock = now

        decision: Decision | None = None
        try:
            if any(is_dead(f.rgb) for f in frames):
                raise ValueError("dead frame (no picture from the camera)")
            pixels = [prepare(f.rgb, self.classifier.input_size, self.roi) for f in frames]
            lap("preprocess")
            predictions = [self.classifier.classify(p) for p in pixels]
            lap("classify")
            decision = self.decider.decide(predictions)
            lap("decide")
            route = self.gates.route(decision.bin)
            lap("actuate")
        except (ValueError, ModelError, GateError) as exc:
            self.gates.safe()
            return self._record(first, frames, latency, decision, error=str(exc))
        outcome = "rejected" if decision.rejected else "sorted"
        return self._record(first, frames, latency, decision, outcome=outcome, gate_action=route.describe())

    def _record(
        self,
        first: Frame,
        frames: list[Frame],
        latency: dict[str, float],
        decision: Decision | None,
        outcome: str = "error",
        gate_action: str = "none",
        error: str | None = None,
    ) -> ItemRecord:
        latency["total"] = sum(latency.values())
        return ItemRecord(
            time=first.timestamp,
            frame=first.number,
            source=self.stream.source.name,
            bin=decision.bin if decision and not error else self.default_bin,
            gate_action=gate_action,
            outcome=outcome,  # type: ignore[arg-type]
            model=self.model_name,
            label=decision.label if decision else None,
            confidence=decision.confidence if decision else None,
            top_k=decision.top if decision else (),
            error=error,
            latency_ms={k: round(v, 3) for k, v in latency.items()},
            frames=len(frames),
            truth=first.truth,
        )

    def _commit(self, record: ItemRecord) -> None:
        try:
            item_id = self.records.add(record)
        except RecordError:
            self.gates.safe()
            logger.error("unsaved record: %s", record.to_json())
            raise
        self.tally.add(record)
        logger.info("%s", describe(item_id, record))
        for observer in self.observers:
            observer.on_item(item_id, record)


def describe(item_id: int, record: ItemRecord) -> str:
    """One line per item, e.g. 'item 7 frame 12: green-glass 0.93 → glass [sorted] flap→-60° 41 ms'."""
    seen = f"{record.label} {record.confidence:.2f}" if record.label is not None else "?"
    truth = f" (truth {record.truth})" if record.truth else ""
    error = f" error: {record.error}" if record.error else ""
    return (
        f"item {item_id} frame {record.frame}: {seen}{truth} → {record.bin} [{record.outcome}] "
        f"{record.gate_action} {record.latency_ms.get('total', 0):.0f} ms{error}"
    )
