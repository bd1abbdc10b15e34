"""The sorting loop: frames → item → preprocess → classify → decide → plan the gates → record.

Reads top to bottom as the data flows. Detection runs on every frame in the loop's thread; finished items go
to a sorting thread (classify, decide, plan, record), so a slow classifier never makes the tracker miss an
item: each physical item gets exactly one record, committed in order. The gates are moved later, at the
item's arrival, by the scheduler thread that executes the planner's bookings. If more than ``backlog`` items
wait for the classifier, a live camera's newest items are recorded ``late`` without classifying (their frames
are dropped), while a replay waits. If the sorting thread is stuck on one item for ``stuck_s``, observers stop
hearing of frames, so that the service's watchdog (which pings on frames) restarts a hung sorter.

Each stage catches its own errors and records them against the item in hand (outcome ``error``, the stage and
the error named); only a record that cannot be written stops the sorting thread. A gate that fails marks the
records of the items still on their way past the gates ``error`` too, naming the gate. The sorting thread owns
what it uses until it ends: ``release`` closes the classifier and the records only once it has.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from edge.actuate import GateFault
from edge.classifier import ImageClassifier
from edge.decision import Decider, Decision
from edge.errors import DeadFrame, GateError, ModelError, RecordError
from edge.held import HeldRecords
from edge.plan import Plan, Planner
from edge.preprocess import CropMode, Roi
from edge.records import ItemRecord, Outcome, Records
from edge.retrain import FrameKeeper
from edge.shadow import Shadow
from edge.sources import Frame, FrameStream, is_dead
from edge.trigger import Item, ItemTracker
from edge.votes import vote_inputs

logger = logging.getLogger("smartbin.items")

BACKLOG = 8  # items waiting for the classifier before a live camera's newest are recorded late
WORKER_JOIN_S = 20.0  # the sorting thread's time to finish the items in hand at the end of a run (< TimeoutStopSec)


class Observer(Protocol):
    """Something that watches the loop (watchdog, metrics, web page). Keep the calls quick."""

    def on_frame(self, frame: Frame) -> None:
        """A frame arrived from the camera (called in the loop's thread)."""

    def on_item(self, item_id: int, record: ItemRecord) -> None:
        """An item's record was committed (called in the sorting thread)."""


@runtime_checkable
class FrameObserver(Observer, Protocol):
    """An observer that also wants the frame each item was classified on (the web page's live view)."""

    def on_item_frame(self, item_id: int, frame: Frame) -> None:
        """The item's best-centred frame, just before ``on_item`` for the same item (sorting thread)."""


@runtime_checkable
class GateFaultObserver(Observer, Protocol):
    """An observer that wants to hear of a gate failure (the web page's health)."""

    def on_gate_fault(self, fault: GateFault, items: list[int]) -> None:
        """A gate failed; ``items``: the records marked ``error`` for it (sorting thread, at the end of the run)."""


@dataclass
class Tally:
    """Items per (bin, outcome): a loop's tally counts every item since the loop was built, over all its runs."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def items(self) -> int:
        return sum(self.counts.values())

    def add(self, record: ItemRecord) -> None:
        self.counts[(record.bin, record.outcome)] += 1

    def amend(self, old: ItemRecord, new: ItemRecord) -> None:
        """Count ``old`` (counted before) as ``new`` instead."""
        self.counts[(old.bin, old.outcome)] -= 1
        self.add(new)

    def summary(self) -> str:
        outcomes, bins = Counter[str](), Counter[str]()
        for (bin_name, outcome), n in self.counts.items():
            outcomes[outcome] += n
            bins[bin_name] += n
        return (f"{self.items} items: " + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
                + " | " + ", ".join(f"{b} {n}" for b, n in sorted(bins.items())))


class SortingLoop:
    """Sorts items until the stream ends, ``max_items`` are recorded, or ``stop`` is set (then the item in hand
    is finished and recorded).

    An item that fails (dead frame, model error, any error of a stage) is recorded with outcome ``error`` and
    rides to the default bin. Records the database refuses for a while (disk full, locked) are held (``held``)
    and written later, or spilled at the end of the run where ``held`` has a spill file; any other failure to
    write a record stops the loop (the records not written are logged as JSON so the journal keeps them).
    ``join_s``: how long the end of a run waits for the sorting thread to finish the items in hand.
    """

    def __init__(
        self,
        stream: FrameStream,
        tracker: ItemTracker,
        classifier: ImageClassifier,
        decider: Decider,
        planner: Planner,
        records: Records,
        roi: Roi | None = None,
        crop: CropMode = "roi",
        votes: int = 1,
        observers: Sequence[Observer] = (),
        keeper: FrameKeeper | None = None,
        backlog: int = BACKLOG,
        stuck_s: float = 20.0,
        gate_failure: Callable[[], GateFault | None] = lambda: None,
        shadow: Shadow | None = None,
        held: HeldRecords | None = None,
    ) -> None:
        self.stream = stream
        self.tracker = tracker
        self.classifier = classifier
        self.decider = decider
        self.planner = planner
        self.records = records
        self.held = held or HeldRecords(records)
        self.roi = roi
        self.crop = crop
        self.votes = votes
        self.observers = list(observers)
        self.keeper = keeper
        self.backlog = backlog
        self.stuck_s = stuck_s
        self.gate_failure = gate_failure
        self.shadow = shadow
        self._pending: queue.Queue[Item | None] | None = None
        self._busy_since: float | None = None  # when the sorting thread took its current item
        self._reported_stuck: float | None = None
        self.model_name = classifier.path.name
        self.model_sha256 = classifier.sha256
        self.tally = Tally()
        self._numbers = itertools.count()
        self._dead_frames = 0
        self.join_s = WORKER_JOIN_S
        self._in_flight: dict[int, tuple[float, ItemRecord]] = {}  # id → (its tail past its gate, record)
        self._fault_marked: GateFault | None = None  # the gate failure whose items are marked (once)
        self._failed_observers: set[int] = set()  # observers that raised (logged once each)
        self._worker: threading.Thread | None = None  # the sorting thread while it runs
        self._worker_lock = threading.Lock()
        self._after_worker: list[Callable[[], None]] = []  # closers it runs as it ends (``release``)

    def run(self, max_items: int | None = None, stop: threading.Event | None = None) -> Tally:
        """Sort items; returns the loop's tally (every item since it was built). Raises what stopped the sorting
        thread (RecordError) or the loop (GateError: a gate failed; the items in hand are recorded ``error`` to the
        default bin)."""
        stop = stop or threading.Event()
        live = self.stream.source.live
        pending: queue.Queue[Item | None] = queue.Queue(maxsize=0 if live else self.backlog)
        self._pending = pending
        failure: list[BaseException] = []
        worker = threading.Thread(target=self._sort_items, args=(pending, failure), name="sorting", daemon=True)
        with self._worker_lock:
            self._worker = worker
        worker.start()
        found = 0
        try:
            frames = iter(self.stream)
            while (max_items is None or found < max_items) and not stop.is_set() and not failure:
                if self.gate_failure() is not None:
                    break
                frame = next(frames, None)
                if frame is None:
                    break
                if not self._stuck():
                    for observer in self.observers:
                        observer.on_frame(frame)
                if self.tracker.trigger is not None and self._is_dead(frame):
                    continue
                item = self.tracker.update(frame)
                if item is not None:
                    found += 1
                    item = item.trimmed(self.votes)  # only the frames sorting reads wait for the classifier
                    pending.put(self._shed(item, pending.qsize()) if live else item)
            item = self.tracker.flush()  # the item in hand when the stream ended or a stop was asked for
            if item is not None and (max_items is None or found < max_items):
                pending.put(item)
        finally:
            pending.put(None)
            worker.join(timeout=self.join_s)
            if worker.is_alive():  # classifying or writing hangs: the records it holds cannot be saved from here
                logger.error("sorting thread still busy %g s after the end of the run; leaving it", self.join_s)
            elif not failure:
                self._flush_held(failure)
        if failure:
            raise failure[0]
        if (broken := self.gate_failure()) is not None:
            raise GateError(f"gate failure: {broken}")
        return self.tally

    def release(self, close: Callable[[], None]) -> bool:
        """Close what the sorting thread uses (``close``): now if no sorting thread runs (True), else as that
        thread ends (False), so that nothing is closed under it."""
        with self._worker_lock:
            if self._worker is not None:
                self._after_worker.append(close)
                return False
        close()
        return True

    def busy(self) -> bool:
        """Whether an item is in hand or waiting for the sorting thread (a shadow model waits for neither)."""
        pending = self._pending
        return self._busy_since is not None or (pending is not None and not pending.empty())

    def _stuck(self) -> bool:
        busy_since = self._busy_since
        if busy_since is None or time.monotonic() - busy_since < self.stuck_s:
            return False
        if busy_since != self._reported_stuck:
            self._reported_stuck = busy_since
            logger.error("sorting stuck on one item for %.0f s: frames no longer reported", self.stuck_s)
        return True

    def _shed(self, item: Item, waiting: int) -> Item:
        if waiting < self.backlog:
            return item
        logger.warning("classifier backlog of %d items: item at frame %d will be late", waiting, item.first.number)
        return Item([item.first], item.t_line, [0.0], shed=True, passing_s=item.passing_s)

    def _sort_items(self, pending: queue.Queue[Item | None], failure: list[BaseException]) -> None:
        try:
            while (item := pending.get()) is not None:
                if failure:  # the loop is stopping for a failure: the item rides to the default bin
                    record = self._unsorted(item, f"not sorted: {stopped_by(failure[0])}")
                    logger.error("unsaved record: %s", record.to_json())
                    continue
                self._busy_since = time.monotonic()
                try:
                    self._sort_one(item)
                except BaseException as exc:
                    failure.append(exc)
                    if not isinstance(exc, RecordError):  # not a stage's error: a fault of the loop itself
                        logger.error("sorting stopped at the item of frame %d: %s", item.first.number,
                                     stopped_by(exc))
                finally:
                    self._busy_since = None
            if (fault := self.gate_failure()) is not None and fault is not self._fault_marked:
                self._fault_marked = fault
                self._gate_failed(fault)
        finally:
            with self._worker_lock:
                self._worker, closers, self._after_worker = None, self._after_worker, []
            for close in closers:
                close()

    def _sort_one(self, item: Item) -> None:
        """Sort one item, write its record, keep its frame and offer it to the shadow model."""
        record, plan = self.sort(item)
        best = item.best(1)[0]
        item_id = self._commit(record, best)
        if item_id is None:
            return
        if record.bin != self.planner.default_bin:  # a gate must move for it: in flight until its tail passed
            tail = plan.hold.end if plan.hold is not None else plan.arrival + self.planner.passing(item.passing_s) / 2
            now = time.monotonic()
            self._in_flight = {i: f for i, f in self._in_flight.items() if f[0] > now}
            self._in_flight[item_id] = (tail, record)
        if self.keeper is not None and not item.shed:
            self.keeper.keep(item_id, best, record)
        if self.shadow is not None and record.label is not None:
            self.shadow.offer(item_id, item.best(self.votes), record.label)

    def _gate_failed(self, fault: GateFault) -> None:
        """Mark ``error`` the records of the items that were still on their way past the gates when ``fault``
        happened (every gate is safe since: they ride to the default bin, or wherever the failed gate is stuck)."""
        hit = sorted(i for i, (tail, _) in self._in_flight.items() if tail > fault.at)
        for item_id in hit:
            record = self._in_flight.pop(item_id)[1]
            error = f"gate failure: {fault} (on its way to {record.bin})"
            amended = replace(record, outcome="error", error=error)
            try:
                self.records.amend(item_id, "error", error)
            except RecordError as exc:
                logger.error("unsaved record: %s (%s)", amended.to_json(), exc)
                continue
            self.tally.amend(record, amended)
        if hit:
            logger.error("gate %s failed with %d item(s) on their way: item %s recorded error", fault.gate,
                         len(hit), ", ".join(map(str, hit)))
        for observer in self.observers:
            if isinstance(observer, GateFaultObserver):
                self._tell(observer, observer.on_gate_fault, fault, hit)

    def _unsorted(self, item: Item, error: str) -> ItemRecord:
        """The ``error`` record of an item that is not classified (the records failed): the default bin."""
        plan = self.planner.pass_through(next(self._numbers), item.t_line, time.monotonic(), "error", item.passing_s)
        return self._record(item, [], {}, None, plan, error)

    def _is_dead(self, frame: Frame) -> bool:
        if not is_dead(frame.rgb):
            self._dead_frames = 0
            return False
        if self._dead_frames == 0:
            logger.warning("dead frame %d from %s (no picture); skipping dead frames", frame.number,
                           self.stream.source.name)
        self._dead_frames += 1
        return True

    def sort(self, item: Item) -> tuple[ItemRecord, Plan]:
        """Classify, decide and book the gates for one item; returns its record (not yet written) and its plan.
        A stage that fails makes the record ``error`` (``"classify failed: ValueError: …"``), never raises."""
        frames = item.best(self.votes)
        latency: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            latency[stage] = (now - clock) * 1000
            clock = now

        decision: Decision | None = None
        error: str | None = None
        if item.shed:
            plan = self.planner.pass_through(next(self._numbers), item.t_line, time.monotonic(),
                                             passing_s=item.passing_s)
            return self._record(item, [], {"since_line": (time.monotonic() - item.t_line) * 1000}, None, plan,
                                None), plan
        if (fault := self.gate_failure()) is not None:  # the gates are safe and stay so: nothing booked
            plan = Plan("error", self.planner.default_bin, item.t_line)
            return self._record(item, [], {}, None, plan, f"gate failure: {fault}"), plan
        stage = "preprocess"
        try:
            if any(is_dead(f.rgb) for f in frames):
                raise DeadFrame("dead frame (no picture from the camera)")
            pixels = vote_inputs(frames, self.classifier.input_size, self.roi, self.crop)
            lap(stage)
            stage = "classify"
            predictions = [self.classifier.classify(p) for p in pixels]
            lap(stage)
            stage = "decide"
            decision = self.decider.decide(predictions)
            lap(stage)
            stage = "plan"
            plan = self.planner.plan(next(self._numbers), decision.bin, item.t_line, time.monotonic(),
                                     item.passing_s)
        except (DeadFrame, ModelError) as exc:
            error = str(exc)
        except Exception as exc:  # any other error of a stage: this item's, recorded against it
            error = f"{stage} failed: {type(exc).__name__}: {exc}"
        if error is not None:
            plan = self.planner.pass_through(next(self._numbers), item.t_line, time.monotonic(), "error",
                                             item.passing_s)
        lap("plan")
        latency["total"] = sum(latency.values())
        latency["since_line"] = (time.monotonic() - item.t_line) * 1000
        return self._record(item, frames, latency, decision, plan, error), plan

    def _record(self, item: Item, frames: list[Frame], latency: dict[str, float], decision: Decision | None,
                plan: Plan, error: str | None) -> ItemRecord:
        first = item.first
        outcome: Outcome
        if error is not None or plan.outcome == "error":
            outcome = "error"
        elif item.shed:
            outcome = "late"
        elif plan.outcome == "planned":
            outcome = "rejected" if decision is not None and decision.rejected else "sorted"
        else:
            outcome = plan.outcome
        return ItemRecord(
            time=first.timestamp,
            frame=first.number,
            source=self.stream.source.name,
            bin=plan.bin,
            gate_action=plan.gate_action,
            outcome=outcome,
            model=self.model_name,
            model_sha256=self.model_sha256,
            label=decision.label if decision else None,
            confidence=decision.confidence if decision else None,
            top_k=decision.top if decision else (),
            reason=decision.reason if decision else None,
            expected_cost=decision.expected_cost if decision else None,
            passing_s=item.passing_s,
            error=error,
            latency_ms={k: round(v, 3) for k, v in latency.items()},
            frames=len(frames),
            truth=first.truth,
        )

    def _commit(self, record: ItemRecord, frame: Frame) -> int | None:
        """Write the record (after any held ones) and tell the observers; its id, or None while it is held."""
        try:
            written = self.held.add(record)
        except RecordError:
            self._log_unsaved()
            raise
        self.tally.add(record)
        item_id = written[-1][0] if written and written[-1][1] is record else None
        if item_id is None:
            logger.info("%s", describe(None, record))
        for written_id, done in written:
            self._written(written_id, done, frame if done is record else None)
        return item_id

    def _written(self, item_id: int, record: ItemRecord, frame: Frame | None) -> None:
        if frame is not None:
            logger.info("%s", describe(item_id, record))
        for observer in self.observers:
            if frame is not None and isinstance(observer, FrameObserver):
                self._tell(observer, observer.on_item_frame, item_id, frame)
            self._tell(observer, observer.on_item, item_id, record)

    def _tell(self, observer: Observer, call: Callable[..., None], *args: object) -> None:
        """Call an observer; one that raises is logged once (its error is not the item's) and told on."""
        try:
            call(*args)
        except Exception as exc:
            if id(observer) not in self._failed_observers:
                self._failed_observers.add(id(observer))
                logger.error("observer %s raised in %s: %s: %s (not logged again)", type(observer).__name__,
                             call.__name__, type(exc).__name__, exc)

    def _flush_held(self, failure: list[BaseException]) -> None:
        """At the end of a run: write what is held, else spill it, else log it and fail the run."""
        try:
            for item_id, record in self.held.flush():
                self._written(item_id, record, None)
        except RecordError as exc:
            failure.append(exc)
        if self.held.held and not failure and self.held.spill_held():
            return
        if self.held.held:
            failure.append(RecordError(f"{self.held.held} item records could not be written"))
            self._log_unsaved()

    def _log_unsaved(self) -> None:
        """The held records of a run that fails: to the spill file, else one JSON line each in the log."""
        if self.held.spill_held():
            return
        for unsaved in self.held.unsaved():
            logger.error("unsaved record: %s", unsaved.to_json())


def stopped_by(exc: BaseException) -> str:
    """Why the sorting thread stopped, as the records of the items after it say."""
    if isinstance(exc, RecordError):
        return "the item records could not be written"
    return f"the sorting thread failed: {type(exc).__name__}: {exc}"


def describe(item_id: int | None, record: ItemRecord) -> str:
    """One line per item, e.g. 'item 7 frame 12: green-glass 0.93 → glass [sorted] flap→-60° 41 ms', with the
    reason where the bin is not simply the top class's: 'paper 0.90 → hazardous [sorted: quarantine] …';
    'item (held)' for one whose record waits for the database."""
    truth = f" (truth {record.truth})" if record.truth else ""
    error = f" error: {record.error}" if record.error else ""
    why = f": {record.reason}" if record.reason not in (None, "top") else ""
    return (
        f"item {'(held)' if item_id is None else item_id} frame {record.frame}: {record.seen}{truth} → "
        f"{record.bin} [{record.outcome}{why}] {record.gate_action} {record.latency_ms.get('total', 0):.0f} ms{error}"
    )
