"""Actuating the plan: a thread that drives each gate into the planner's wanted state at every boundary."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.plan import Planner, State

logger = logging.getLogger(__name__)

FINISH_S = 6.0  # at most this long at a stop for items on their way to pass their gates (< TimeoutStopSec - 20 s)


@dataclass(frozen=True)
class GateFault:
    """A gate that could not be driven: its name, what it said, and when (``time.monotonic()`` and Unix time)."""

    gate: str
    error: str
    at: float
    time: float

    def __str__(self) -> str:
        return self.error


class GateScheduler:
    """A thread that puts each gate into the planner's wanted state at every hold boundary.

    ``apply(gate, state)`` drives one gate (state None = safe). On ``stop()`` every gate is driven safe.
    """

    def __init__(self, planner: Planner, apply: Callable[[str, State | None], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.planner = planner
        self.apply = apply
        self.clock = clock
        self.actuations = 0
        self.failure: GateFault | None = None  # what stopped the thread: a gate that could not be driven
        self._driving: str | None = None  # the gate being driven now
        self._unsafe: set[str] = set()  # gates already reported as not driven safe
        self._applied: dict[str, State | None] = dict.fromkeys(planner.places)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gate-scheduler", daemon=True)

    def start(self) -> GateScheduler:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._drive()
        except Exception as exc:  # a gate driver failed: nothing is driven any more, every gate safe
            self.failure = GateFault(self._driving or "?", str(exc), time.monotonic(), time.time())
            self._unsafe.add(self.failure.gate)  # this line says it: no second one for its way back to safe
            logger.error("gate failure, no more items into gates: %s", exc)
            self._all_safe()

    def _drive(self) -> None:
        while not self._stop.is_set():
            now = self.clock()
            for gate, state in self.planner.state_at(now).items():
                if state != self._applied[gate]:
                    self._driving = gate
                    self.apply(gate, state)
                    self._applied[gate] = state
                    self.actuations += state is not None
            upcoming = self.planner.next_change(now)
            with self.planner.changed:
                if not self._stop.is_set():
                    wait = 0.5 if upcoming is None else min(0.5, max(0.0, upcoming - self.clock()))
                    self.planner.changed.wait(wait)

    def finish(self, timeout_s: float = FINISH_S) -> None:
        """Wait, at most ``timeout_s``, until the holds already booked are over, so that the items on their way
        pass their gates before ``stop`` drives them safe. No wait where the gate thread failed or never ran."""
        if self.failure is not None or not self._thread.is_alive():
            return
        with self.planner.lock:
            wait = max((h.returns for h in self.planner.holds), default=0.0) - self.clock()
        if wait > timeout_s:
            logger.warning("stopping: items on their way to their gates for %.1f s more; gates safe in %g s", wait,
                           timeout_s)
        if wait > 0:
            time.sleep(min(wait, timeout_s))

    def stop(self) -> None:
        """Stop the thread (bounded wait) and leave every gate safe; safe to call twice."""
        self._stop.set()
        with self.planner.changed:
            self.planner.changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
            if self._thread.is_alive():  # a gate driver that hangs: the gates are driven safe from here anyway
                logger.error("gate thread still driving %s after 2 s; driving every gate safe beside it",
                             self._driving)
        self._all_safe()

    def _all_safe(self) -> None:
        """Every gate safe; a gate that cannot be is logged in one line, once."""
        for gate in self._applied:
            try:
                self.apply(gate, None)
                self._applied[gate] = None
            except Exception as exc:
                if gate not in self._unsafe:
                    logger.error("gate %s could not be driven safe: %s", gate, exc)
                self._unsafe.add(gate)
