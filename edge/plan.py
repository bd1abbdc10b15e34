"""Planning gates for items in flight: when each gate must hold which position (``edge.actuate`` drives them).

An item crosses the camera line at ``t_line`` and reaches gate G at ``t_line + delay(G)``. It is diverted by the
first gate that is out of its safe position while it passes; an item that meets every gate safe lands in the
default bin. So an item routed to G needs G in its bin's position while it passes G, and every gate before G
safe while it passes them. The planner books these needs on a timeline per gate:

- a *hold*: gate G at state S over [arrival − pass/2 − settle, arrival + pass/2] (settle: travel time), busy
  until its end + settle while it moves back;
- a *passage*: gate H safe over [arrival − pass/2, arrival + pass/2].

``pass`` is the item's own passing time as its trigger measured it (its length / belt speed) plus a margin on
either side, or, where it was not measured, ``pass_s`` (the longest item's).

Those are firm: a new item is booked only where it fits them. Around them a hold takes *slack* where nothing
else needs its gate: the gate leaves up to ``slack_s`` earlier and stays up to ``slack_s`` longer, at most half
the free time to the gate's neighbouring needs on either side (the other half is the neighbour's). An item the
trigger measured short still finds its gate in place when there is time to spare; slack never costs a booking,
since each booking gives back whatever slack the gate has not yet used.

Two holds of one gate at different states may follow each other as soon as the first ends: the gate moves
straight from one position to the next (the earlier hold is stretched to the next one's start, so the gate
does not head for safe in between) when the gap is too short for a return to safe; two at the same state are
joined when the gap is too short for a return to safe and back and no item passes in it. A new item whose
hold would start in the past is ``late``; one whose needs clash with items already booked is ``too_close``.
Either goes to the default bin when its passages can all be kept safe; if even that clashes (it rides through
another item's hold), it is booked into the bin it will really reach, and recorded so: an item is never sent
to a wrong bin silently. Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from edge.gates import Route

logger = logging.getLogger(__name__)

State = float | bool  # a servo angle, or True for a relay that is on


@dataclass(frozen=True)
class GatePlace:
    """Where a gate is: seconds from the camera line at belt speed, and how long it takes to move."""

    delay_s: float
    settle_s: float


@dataclass(frozen=True)
class Hold:
    """Gate ``gate`` out of its safe position, at ``state``, from ``start`` to ``end`` (then back to safe)."""

    gate: str
    state: State
    start: float
    end: float
    settle_s: float
    item: int
    lead: float = 0.0  # slack: the gate leaves this much before ``start``
    trail: float = 0.0  # and stays this much after ``end``

    @property
    def busy_until(self) -> float:
        return self.end + self.settle_s

    @property
    def span(self) -> tuple[float, float]:
        """From leaving safe to being back (firm times): no item may pass the gate in it."""
        return self.start, self.busy_until

    @property
    def leaves(self) -> float:
        """When the gate heads for ``state``, slack included."""
        return self.start - self.lead

    @property
    def returns(self) -> float:
        """When the gate heads back to safe, slack included."""
        return self.end + self.trail

    def committed(self, now: float) -> Hold:
        """The hold with as much of its slack as the gate has used by ``now`` (that part cannot be given back)
        made firm, and the rest dropped."""
        lead = self.lead if self.leaves <= now else 0.0
        trail = min(self.trail, max(0.0, now - self.end))
        return replace(self, start=self.start - lead, end=self.end + trail, lead=0.0, trail=0.0)


@dataclass(frozen=True)
class Passage:
    """An item passing gate ``gate`` from ``start`` to ``end``, which must find it safe."""

    gate: str
    start: float
    end: float
    item: int


PlanOutcome = Literal["planned", "late", "too_close", "error"]


@dataclass(frozen=True)
class Plan:
    """Where an item will go and why: ``planned`` (its bin), ``late`` or ``too_close`` (the default bin, or the
    bin another item's hold sends it to), ``error`` (no decision: the default bin)."""

    outcome: PlanOutcome
    bin: str
    arrival: float
    hold: Hold | None = None

    @property
    def gate_action(self) -> str:
        if self.hold is None:
            return "none"
        angle = None if isinstance(self.hold.state, bool) else self.hold.state
        return Route(self.hold.gate, angle).describe()


def overlaps(a0: float, a1: float, b0: float, b1: float) -> bool:
    return a0 < b1 and b0 < a1


class Planner:
    """Books holds and passages for items in flight. Thread-safe: the loop plans, the scheduler reads."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        places: Mapping[str, GatePlace],
        default_bin: str,
        pass_s: float,
        margin_s: float = 0.0,
        slack_s: float = 0.0,
    ) -> None:
        self.routes = dict(routes)
        self.places = dict(places)
        self.order = sorted(places, key=lambda g: places[g].delay_s)  # gates in the order an item meets them
        self.default_bin = default_bin
        self.pass_s = pass_s
        self.margin_s = margin_s
        self.slack_s = slack_s
        self.holds: list[Hold] = []
        self.passages: list[Passage] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def passing(self, passing_s: float | None) -> float:
        """How long a gate is kept for an item that takes ``passing_s`` to pass (None: not measured)."""
        return self.pass_s if passing_s is None else passing_s + 2 * self.margin_s

    def plan(self, item: int, bin_name: str, t_line: float, now: float, passing_s: float | None = None) -> Plan:
        """Book ``item`` (crossed the camera line at ``t_line``, takes ``passing_s`` to pass a point if measured)
        for ``bin_name``; returns what will happen."""
        with self.lock:
            self._forget(now)
            route = self.routes[bin_name]
            pass_s = self.passing(passing_s)
            if route.gate is not None:
                hold, passages = self._needs(item, route, t_line, pass_s)
                if hold.start < now:
                    return self._fallback(item, t_line, pass_s, now, "late")
                if not self._clashes(hold, passages, now):
                    self._book(hold, passages, now)
                    return Plan("planned", bin_name, t_line + self.places[route.gate].delay_s, hold)
                return self._fallback(item, t_line, pass_s, now, "too_close")
            return self._fallback(item, t_line, pass_s, now, "planned", wanted=bin_name)

    def pass_through(self, item: int, t_line: float, now: float, outcome: PlanOutcome = "late",
                     passing_s: float | None = None) -> Plan:
        """Book an item that gets no decision in time through every gate safe (the default bin)."""
        with self.lock:
            self._forget(now)
            return self._fallback(item, t_line, self.passing(passing_s), now, outcome)

    def _fallback(self, item: int, t_line: float, pass_s: float, now: float, outcome: PlanOutcome,
                  wanted: str | None = None) -> Plan:
        """Send the item through every gate safe (the default bin), or, where it would pass a gate that a booked
        hold has out of safe or on its way back (an item before it), book it into that hold's bin: the hold is
        kept until the item has passed, so that the gate does not move under it."""
        passages = [self._passage(item, gate, t_line, pass_s) for gate in self.order]
        for passage in passages:
            hold = next((h for h in self.holds if h.gate == passage.gate
                         and overlaps(*h.committed(now).span, passage.start, passage.end)), None)
            if hold is None:
                continue
            used = hold.committed(now)
            kept = replace(used, end=max(used.end, passage.end))
            if any(h.gate == hold.gate and hold.start < h.start < kept.busy_until for h in self.holds):
                continue  # booked again after it (never for items planned in belt order): it cannot wait
            self.holds = [kept if h is hold else h for h in self.holds]
            earlier = [p for p in passages if self.places[p.gate].delay_s < self.places[hold.gate].delay_s]
            self._book(None, earlier, now)
            return Plan("too_close", self._bin_of(hold), passage.start + pass_s / 2)
        self._book(None, passages, now)
        end = t_line + (self.places[self.order[-1]].delay_s if self.order else 0.0)
        return Plan(outcome, wanted or self.default_bin, end)

    def _needs(self, item: int, route: Route, t_line: float, pass_s: float) -> tuple[Hold, list[Passage]]:
        assert route.gate is not None
        place = self.places[route.gate]
        arrival = t_line + place.delay_s
        state: State = route.angle if route.angle is not None else True
        hold = Hold(route.gate, state, arrival - pass_s / 2 - place.settle_s, arrival + pass_s / 2,
                    place.settle_s, item)
        before = [self._passage(item, g, t_line, pass_s) for g in self.order if self.places[g].delay_s < place.delay_s]
        return hold, before

    def _passage(self, item: int, gate: str, t_line: float, pass_s: float) -> Passage:
        arrival = t_line + self.places[gate].delay_s
        return Passage(gate, arrival - pass_s / 2, arrival + pass_s / 2, item)

    def _clashes(self, hold: Hold, passages: list[Passage], now: float) -> bool:
        booked = [h.committed(now) for h in self.holds]
        for other in booked:
            if other.gate == hold.gate and other.state != hold.state and overlaps(
                other.start, other.end, hold.start, hold.end
            ):
                return True
        for passage in self.passages:
            if passage.gate == hold.gate and overlaps(*hold.span, passage.start, passage.end):
                return True
        return any(
            other.gate == p.gate and overlaps(*other.span, p.start, p.end)
            for p in passages
            for other in booked
        )

    def _book(self, hold: Hold | None, passages: list[Passage], now: float) -> None:
        if hold is not None:
            self.holds = self._chained(hold)
        self.passages.extend(passages)
        if self.slack_s:
            self.holds = [self._slackened(h, now) for h in self.holds]
        self.changed.notify_all()

    def _slackened(self, hold: Hold, now: float) -> Hold:
        """``hold`` with the slack it may take now: up to ``slack_s`` either side, at most half the free time to
        its gate's nearest need on that side, and never less than the gate has already used."""
        before, after = [self.slack_s], [self.slack_s]
        for other in self.holds:
            if other.gate != hold.gate or other is hold:
                continue
            if other.end <= hold.start:
                before.append((hold.start - other.end) / 2)
            elif other.start >= hold.end:
                after.append((other.start - hold.end) / 2)
            elif other.state != hold.state:
                before.append(0.0)
                after.append(0.0)
        for passage in self.passages:
            if passage.gate != hold.gate:
                continue
            if passage.end <= hold.start:
                before.append((hold.start - passage.end) / 2)
            else:
                after.append(max(0.0, passage.start - hold.busy_until) / 2)
        used = hold.committed(now)
        return replace(hold, lead=max(min(before), hold.start - used.start), trail=max(min(after), used.end - hold.end))

    def _chained(self, new: Hold) -> list[Hold]:
        """The holds with ``new`` added, each hold of its gate that ends less than a return to safe before the
        next one starts stretched to that start: the gate then moves straight from one position to the next. Two
        holds at one position less than a return to safe and back apart, with no item passing in between, are
        joined too: the gate stays where it is instead of leaving and coming straight back."""
        same = sorted([h for h in self.holds if h.gate == new.gate] + [new], key=lambda h: h.start)
        for i, (a, b) in enumerate(itertools.pairwise(same)):
            straight = a.end <= b.start < a.busy_until
            stay = a.state == b.state and a.end <= b.start < a.busy_until + b.settle_s and not any(
                p.gate == a.gate and overlaps(a.end, b.start, p.start, p.end) for p in self.passages)
            if straight or stay:
                same[i] = replace(a, end=b.start)
        return [h for h in self.holds if h.gate != new.gate] + same

    def _bin_of(self, hold: Hold) -> str:
        for name, route in self.routes.items():
            if route.gate == hold.gate and (route.angle == hold.state or route.angle is None):
                return name
        return self.default_bin

    def _forget(self, now: float) -> None:
        self.holds = [h for h in self.holds if h.returns + h.settle_s > now - 1.0]
        self.passages = [p for p in self.passages if p.end > now - 1.0]

    def state_at(self, t: float) -> dict[str, State | None]:
        """Each gate's wanted state at time ``t``: a hold's state, or None for safe."""
        with self.lock:
            wanted: dict[str, State | None] = dict.fromkeys(self.places)
            for hold in self.holds:
                if hold.leaves <= t < hold.returns:
                    wanted[hold.gate] = hold.state
            return wanted

    def next_change(self, after: float) -> float | None:
        """The first hold boundary later than ``after``, if any."""
        with self.lock:
            times = [t for h in self.holds for t in (h.leaves, h.returns) if t > after]
            return min(times, default=None)
