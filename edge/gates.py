"""Gates: the gpiozero devices that route an item into its bin, and their safe position.

A servo flap (``AngularServo``) turns to its bin's angle; a relay (``OutputDevice``) drives a solenoid or pusher
while its bin is chosen. When to move is decided by ``edge.plan`` and done by ``edge.actuate``; this module only
drives the devices. The safe position (servo at ``safe_angle``, relay off) leads to the default bin; every
error path and ``close()`` return there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gpiozero import AngularServo, Factory, OutputDevice

from edge.config import RelayGate, ServoGate, Settings
from edge.errors import GateError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """How a bin is reached: which gate, and at which angle (servos) or on (relays). No gate: default bin."""

    gate: str | None
    angle: float | None = None

    def describe(self) -> str:
        if self.gate is None:
            return "none"
        return f"{self.gate}→{self.angle:g}°" if self.angle is not None else f"{self.gate}→on"


def build_gate(gate: ServoGate | RelayGate, factory: Factory) -> AngularServo | OutputDevice:
    """The gpiozero device of one gate, built in its safe position."""
    if isinstance(gate, ServoGate):
        return AngularServo(
            gate.pin,
            initial_angle=gate.safe_angle,
            min_angle=gate.min_angle,
            max_angle=gate.max_angle,
            min_pulse_width=gate.min_pulse_width,
            max_pulse_width=gate.max_pulse_width,
            pin_factory=factory,
        )
    return OutputDevice(gate.pin, active_high=gate.active_high, initial_value=False, pin_factory=factory)


class GateBank:
    """All gates of the bin, built from the config on one pin factory."""

    def __init__(self, settings: Settings, pin_factory: Factory) -> None:
        self.routes = {name: Route(spec.gate, spec.angle) for name, spec in settings.bins.items()}
        self._devices: dict[str, AngularServo | OutputDevice] = {}
        self._safe_angles: dict[str, float] = {}
        self.broken: dict[str, str] = {}  # gate → the first error it gave (a failed gate stays listed)
        try:
            for name, gate in settings.gates.items():
                self._devices[name] = self._build(name, gate, pin_factory)
        except Exception as exc:
            self.close()
            raise GateError(f"gate setup failed: {exc}") from None

    def _build(self, name: str, gate: ServoGate | RelayGate, factory: Factory) -> AngularServo | OutputDevice:
        if isinstance(gate, ServoGate):
            self._safe_angles[name] = gate.safe_angle
        return build_gate(gate, factory)

    @property
    def devices(self) -> dict[str, AngularServo | OutputDevice]:
        """The gpiozero devices by gate name (read-only use: tests, status)."""
        return dict(self._devices)

    def apply(self, gate: str, state: float | bool | None) -> None:
        """Drive one gate: a servo to an angle, a relay on (True), or either to safe (None / False). Once the
        bank is closed its gates are safe and released: safe is then a no-op, any other state a GateError."""
        device = self._devices.get(gate)
        if device is None:
            if state is None or state is False:
                return
            raise GateError(f"gate {gate}: the gates are closed")
        try:
            if state is None or state is False:
                self._set_safe(gate, device)
            elif isinstance(device, AngularServo):
                device.angle = float(state)
            else:
                device.on()
        except Exception as exc:
            self.broken.setdefault(gate, str(exc))
            self.safe()
            raise GateError(f"gate {gate} failed: {exc}") from None

    def set_route(self, bin_name: str) -> Route:
        """Set the gates at once so that an item now would reach ``bin_name`` (for ``smartbin gate``)."""
        route = self.routes[bin_name]
        for name in self._devices:
            if name != route.gate:
                self.apply(name, None)
        if route.gate is not None:
            self.apply(route.gate, route.angle if route.angle is not None else True)
        return route

    def safe(self) -> None:
        """Every gate to its safe position; never raises (it is what error paths call). A gate that fails is
        logged in one line, once: it is tried again at every call, quietly."""
        for name, device in self._devices.items():
            try:
                self._set_safe(name, device)
            except Exception as exc:
                self._broke(name, exc, "could not return to its safe position")

    def _set_safe(self, name: str, device: AngularServo | OutputDevice) -> None:
        if isinstance(device, AngularServo):
            device.angle = self._safe_angles[name]
        else:
            device.off()

    def _broke(self, name: str, exc: Exception, what: str) -> None:
        if name not in self.broken:
            logger.error("gate %s %s: %s", name, what, exc)
        self.broken.setdefault(name, str(exc))

    def close(self) -> None:
        """Safe position, then release the pins (a broken gate's pin too, as far as it goes); safe to call twice,
        never raises."""
        self.safe()
        devices, self._devices = self._devices, {}
        for name, device in devices.items():
            try:
                device.close()
            except Exception as exc:
                self._broke(name, exc, "could not be released")

    def __enter__(self) -> GateBank:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
