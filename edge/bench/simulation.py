"""Where simulated items really went: the mock gate pins' history over each item's passage of each gate.

This is the physical check of the conveyor simulator: it does not ask the sorter what it meant to do, it
replays what the pins did. An item passes a gate from its front's arrival to its tail's; the gate must stand
still over all of that time, settled (its last move at least ``settle_s`` before the front arrives). An item is
diverted by the first gate out of its safe position; one that meets every gate safe reaches the default bin;
one that meets a gate moving reaches no known bin (``MOVING``).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpiozero import AngularServo

from edge.app import Sorter
from edge.classifier import ImageClassifier
from edge.config import ServoGate, Settings
from edge.gates import GateBank
from edge.sources.conveyor import BeltSimulator, SimItem, simulator_for


@dataclass
class PinHistory:
    """(monotonic time, state) of one gate's pin since the recorder started."""

    times: list[float]
    states: list[float]

    def at(self, t: float) -> float:
        return self.states[max(0, bisect.bisect_right(self.times, t) - 1)]

    def moved(self, start: float, end: float) -> bool:
        """Whether the pin changed in (start, end]."""
        return bisect.bisect_right(self.times, end) > bisect.bisect_right(self.times, start)


class GateRecorder:
    """Starts recording the gates' mock pins now; ``reached_bin`` reads what they did."""

    def __init__(self, gates: GateBank, settings: Settings) -> None:
        self.settings = settings
        self._pins = {}
        self._since: dict[str, float] = {}
        for name, device in gates.devices.items():
            pin = device.pwm_device.pin if isinstance(device, AngularServo) else device.pin
            self._since[name] = time.monotonic()
            pin.clear_states()
            self._pins[name] = pin

    def history(self, gate: str) -> PinHistory:
        t = self._since[gate]
        times, states = [], []
        for change in self._pins[gate].states:
            t += change.timestamp
            times.append(t)
            states.append(float(change.state))
        return PinHistory(times, states)

    def reached_bin(self, item: SimItem) -> str:
        """The bin ``item`` fell into, from the gates' real positions while it passed each of them."""
        ahead_m, behind_m = item.extent_m
        speed = self.settings.conveyor.belt_speed_m_s
        return reached_bin(self.settings, {gate: self.history(gate) for gate in self._pins}, item.t_line,
                           ahead_m / speed, behind_m / speed)


MOVING = "gate moving"  # what an item reached that met a gate moving, or moving under it: anyone's guess


def reached_bin(settings: Settings, histories: Mapping[str, PinHistory], t_line: float, ahead_s: float = 0.0,
                behind_s: float = 0.0, *, settled: bool = True) -> str:
    """The bin of an item whose centre crossed the camera line at ``t_line`` (its front ``ahead_s`` before, its
    tail ``behind_s`` after), from each gate's pin history: the first gate out of its safe position while the
    item passes diverts it; past every gate, the default bin. A gate that moved less than its settle time
    before the item's front, or while the item passed it: ``MOVING``. ``settled=False``: each gate as commanded
    at the instant the item's centre reaches it (the fault soak, whose pin log has no item lengths)."""
    speed = settings.conveyor.belt_speed_m_s
    for gate_name, gate in sorted(settings.gates.items(), key=lambda g: g[1].delay(speed)):
        front, tail = t_line + gate.delay(speed) - ahead_s, t_line + gate.delay(speed) + behind_s
        if settled and histories[gate_name].moved(front - gate.settle_s, tail):
            return MOVING
        state = histories[gate_name].at(front)
        if isinstance(gate, ServoGate):
            angle = servo_angle(gate, state)
            if abs(angle - gate.safe_angle) > 2:
                return next((b for b, spec in settings.bins.items()
                             if spec.gate == gate_name and abs((spec.angle or 0) - angle) <= 2), "unknown")
        elif bool(state) == gate.active_high:
            return next(b for b, spec in settings.bins.items() if spec.gate == gate_name)
    return settings.default_bin


def servo_angle(gate: ServoGate, duty: float, frequency: float = 50.0) -> float:
    """The angle a servo PWM duty cycle stands for."""
    pulse = duty / frequency
    share = (pulse - gate.min_pulse_width) / (gate.max_pulse_width - gate.min_pulse_width)
    return gate.min_angle + share * (gate.max_angle - gate.min_angle)


def servo_duty(gate: ServoGate, angle: float, frequency: float = 50.0) -> float:
    """The PWM duty cycle that turns a servo to ``angle`` (``servo_angle``'s inverse)."""
    share = (angle - gate.min_angle) / (gate.max_angle - gate.min_angle)
    return (gate.min_pulse_width + share * (gate.max_pulse_width - gate.min_pulse_width)) * frequency


@dataclass
class SimulatedItem:
    """One item of a simulated run: its record (``None``: the sorter never saw it), the truth, the bin it
    should reach and the bin it reached."""

    record: dict[str, Any] | None
    truth: str | None
    wanted: str | None
    reached: str


@dataclass
class SimulatedRun:
    """The items that came past the camera, in belt order, and what else happened."""

    items: list[SimulatedItem]
    seconds: float  # time the sorting took
    extra_records: int  # records of no item, or a second record of one item (an item seen as two)


def simulate(settings: Settings, items: int, timeout_s: float = 600.0,
             classifier: ImageClassifier | None = None) -> SimulatedRun:
    """Sort ``items`` items on the belt simulator and wait until every item up to the last one recorded has
    passed every gate.

    Records are paired with the simulator's items by identity: a record names its first frame, and the
    simulator knows which item each frame showed. Items the sorter missed are kept, with no record.
    ``classifier``: instead of the settings' model (e.g. a slow ``edge.fakes.FakeClassifier``).
    """
    with Sorter(settings, source=simulator_for(settings, tally=True), classifier=classifier) as sorter:
        recorder = GateRecorder(sorter.gates, settings)
        started = time.monotonic()
        sorter.loop.run(max_items=items)
        elapsed = time.monotonic() - started
        simulator = sorter.source
        assert isinstance(simulator, BeltSimulator)
        records = sorter.records.in_order()
        record_of: dict[int, dict[str, Any]] = {}
        extra = 0
        for record in records:
            item = simulator.item_in(record["frame"])
            if item is None or item.index in record_of:
                extra += 1
            else:
                record_of[item.index] = record
        belt = simulator.items[: max(record_of, default=-1) + 1]
        deadline = time.monotonic() + timeout_s
        while len(simulator.passed(settings)) < len(belt) and time.monotonic() < deadline:
            time.sleep(0.1)
        reached = [recorder.reached_bin(item) for item in belt]
    bin_of = settings.bin_of()
    return SimulatedRun(
        [SimulatedItem(record_of.get(item.index), item.truth, bin_of.get(item.truth or ""), bin_name)
         for item, bin_name in zip(belt, reached, strict=True)],
        elapsed,
        extra,
    )
