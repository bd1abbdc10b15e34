"""Actuating the plan: a thread that drives each gate into the planner's wanted state at every boundary."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.plan import Planner, State

logger = logging.getLogger(__name__)


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
        self.failure: Exception | None = None  # what stopped the thread: a gate that could not be driven
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
            self.failure = exc
            logger.error("gate failure, no more items into gates: %s", exc)
            self._all_safe()

    def _drive(self) -> None:
        while not self._stop.is_set():
            now = self.clock()
            for gate, state in self.planner.state_at(now).items():
                if state != self._applied[gate]:
                    self.apply(gate, state)
                    self._applied[gate] = state
                    self.actuations += state is not None
            upcoming = self.planner.next_change(now)
            with self.planner.changed:
                if not self._stop.is_set():
                    wait = 0.5 if upcoming is None else min(0.5, max(0.0, upcoming - self.clock()))
                    self.planner.changed.wait(wait)

    def stop(self) -> None:
        """Stop the thread (bounded wait) and leave every gate safe; safe to call twice."""
        self._stop.set()
        with self.planner.changed:
            self.planner.changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self._all_safe()

    def _all_safe(self) -> None:
        for gate in self._applied:
            try:
                self.apply(gate, None)
                self._applied[gate] = None
            except Exception as exc:
                logger.error("gate %s could not be driven safe: %s", gate, exc)
