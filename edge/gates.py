"""Gates: the gpiozero devices that route an item into its bin, and their safe position.

A servo flap (``AngularServo``) turns to its bin's angle; a relay (``OutputDevice``) drives a solenoid or pusher
while its bin is chosen. After ``hold_s`` every gate returns to its safe position (servo at ``safe_angle``,
relay off), which leads to the default bin; every error path and ``close()`` return there too.
"""

from __future__ import annotations

import logging
import time
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
        return f"{self.gate}→{self.angle:g}°" if self.angle is not None else f"{self.gate} on"


class GateBank:
    """All gates of the bin, built from the config on one pin factory."""

    def __init__(self, settings: Settings, pin_factory: Factory) -> None:
        self.hold_s = settings.sorting.hold_s
        self.routes = {name: Route(spec.gate, spec.angle) for name, spec in settings.bins.items()}
        self._devices: dict[str, AngularServo | OutputDevice] = {}
        self._safe_angles: dict[str, float] = {}
        self._release_at: float | None = None
        try:
            for name, gate in settings.gates.items():
                self._devices[name] = self._build(name, gate, pin_factory)
        except Exception as exc:
            self.close()
            raise GateError(f"gate setup failed: {exc}") from None

    def _build(self, name: str, gate: ServoGate | RelayGate, factory: Factory) -> AngularServo | OutputDevice:
        if isinstance(gate, ServoGate):
            self._safe_angles[name] = gate.safe_angle
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

    @property
    def devices(self) -> dict[str, AngularServo | OutputDevice]:
        """The gpiozero devices by gate name (read-only use: tests, status)."""
        return dict(self._devices)

    def route(self, bin_name: str, now: float | None = None) -> Route:
        """Set the gates so that the next item reaches ``bin_name``; they return to safe after ``hold_s``."""
        route = self.routes[bin_name]
        try:
            for name, device in self._devices.items():
                if name != route.gate:
                    self._set_safe(name, device)
            if route.gate is not None:
                device = self._devices[route.gate]
                if isinstance(device, AngularServo):
                    device.angle = route.angle
                else:
                    device.on()
        except Exception as exc:
            self.safe()
            raise GateError(f"gate {route.gate} failed: {exc}") from None
        self._release_at = (time.monotonic() if now is None else now) + self.hold_s
        return route

    def release_due(self, now: float | None = None) -> None:
        """Return the gates to safe once the held item has passed (call regularly, e.g. once per frame)."""
        if self._release_at is not None and (time.monotonic() if now is None else now) >= self._release_at:
            self.safe()

    def safe(self) -> None:
        """Every gate to its safe position; never raises (it is what error paths call)."""
        self._release_at = None
        for name, device in self._devices.items():
            try:
                self._set_safe(name, device)
            except Exception:
                logger.exception("gate %s could not return to its safe position", name)

    def _set_safe(self, name: str, device: AngularServo | OutputDevice) -> None:
        if isinstance(device, AngularServo):
            device.angle = self._safe_angles[name]
        else:
            device.off()

    def close(self) -> None:
        """Safe position, then release the pins; safe to call twice."""
        self.safe()
        devices, self._devices = self._devices, {}
        for device in devices.values():
            device.close()

    def __enter__(self) -> GateBank:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
