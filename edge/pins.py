"""Choosing gpiozero's pin factory: the real one on a Raspberry Pi, gpiozero's own mock pins elsewhere."""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path

from gpiozero import Device, Factory
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.errors import GateError

MODEL_FILE = Path("/proc/device-tree/model")


def board_model(model_file: Path = MODEL_FILE) -> str | None:
    """The board's model string (e.g. 'Raspberry Pi 5 Model B Rev 1.0'), or None off a Raspberry Pi."""
    try:
        model = model_file.read_bytes().rstrip(b"\x00").decode(errors="replace").strip()
    except OSError:
        return None
    return model if model.startswith("Raspberry Pi") else None


def uses_mock_pins(kind: str = "auto") -> bool:
    """Whether ``kind`` gives mock pins: 'mock', or 'auto' off a Raspberry Pi without ``GPIOZERO_PIN_FACTORY``."""
    return kind == "mock" or (kind == "auto" and board_model() is None and "GPIOZERO_PIN_FACTORY" not in os.environ)


def make_pin_factory(kind: str = "auto") -> Factory:
    """A pin factory for ``kind``: 'mock' (MockFactory with PWM-capable MockPWMPin), a gpiozero factory name
    ('lgpio', 'rpigpio', 'pigpio', 'native'), or 'auto': gpiozero's own choice (honouring
    ``GPIOZERO_PIN_FACTORY``) on a Raspberry Pi, mock pins elsewhere."""
    if uses_mock_pins(kind):
        return MockFactory(pin_class=MockPWMPin)
    name = os.environ.get("GPIOZERO_PIN_FACTORY") if kind == "auto" else kind
    try:
        if name:
            (entry,) = entry_points(group="gpiozero_pin_factories", name=name.lower()) or (None,)
            if entry is None:
                raise LookupError(f"no gpiozero pin factory named {name!r}")
            return entry.load()()
        Device.ensure_pin_factory()  # gpiozero's own fallback chain: lgpio, rpigpio, pigpio, native
        return Device.pin_factory
    except Exception as exc:
        hint = "" if name == "lgpio" else " (a Pi 5 needs lgpio: sudo apt install python3-lgpio)"
        raise GateError(f"GPIO pin factory {name or 'default'!r} unavailable: {exc}{hint}") from None
