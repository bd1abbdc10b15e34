"""Gates on gpiozero's real mock pins: the pin states a sort produces."""

import logging

import pytest
from gpiozero import AngularServo
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.errors import GateError
from edge.gates import GateBank
from edge.pins import board_model, make_pin_factory


def duty(angle: float, min_angle=-90.0, max_angle=90.0, min_pw=0.001, max_pw=0.002) -> float:
    """PWM duty cycle at 50 Hz for a servo angle."""
    pulse = min_pw + (angle - min_angle) / (max_angle - min_angle) * (max_pw - min_pw)
    return pulse * 50


def dying_pins(*names: str):
    """gpiozero's mock pins (PWM-capable), where the pins named (e.g. "GPIO18") raise ``OSError("I2C bus
    error")`` on every write once the returned ``die()`` is called: a servo board that died. (factory, die)"""

    class DyingPin(MockPWMPin):
        dead = False

        def _set_state(self, value):
            if DyingPin.dead and self.info.name in names:
                raise OSError("I2C bus error")
            super()._set_state(value)

    def die():
        DyingPin.dead = True

    return MockFactory(pin_class=DyingPin), die


@pytest.fixture
def factory():
    return MockFactory(pin_class=MockPWMPin)


def test_gates_start_safe_and_route_each_bin(settings, factory):
    with GateBank(settings, factory) as gates:
        flap, pusher = factory.pin(18), factory.pin(23)
        assert flap.state == pytest.approx(duty(0)) and pusher.state == 0
        assert gates.set_route("glass").describe() == "flap→-60°"
        assert flap.state == pytest.approx(duty(-60)) and pusher.state == 0
        gates.set_route("hazardous")
        assert flap.state == pytest.approx(duty(0)) and pusher.state == 1
        gates.set_route("residual")  # the default bin: every gate safe
        assert flap.state == pytest.approx(duty(0)) and pusher.state == 0


def test_apply_drives_one_gate_and_none_is_safe(settings, factory):
    with GateBank(settings, factory) as gates:
        gates.apply("flap", 90.0)
        gates.apply("pusher", True)
        assert factory.pin(18).state == pytest.approx(duty(90)) and factory.pin(23).state == 1
        gates.apply("flap", None)
        gates.apply("pusher", None)
        assert factory.pin(18).state == pytest.approx(duty(0)) and factory.pin(23).state == 0


def test_close_leaves_every_gate_safe_and_is_repeatable(settings, factory):
    gates = GateBank(settings, factory)
    gates.set_route("hazardous")
    pusher = factory.pin(23)
    gates.close()
    gates.close()
    assert [round(s.state, 3) for s in pusher.states][-2:] == [1.0, 0.0]


def test_pin_already_in_use_is_a_gate_error(settings, factory):
    holder = AngularServo(18, pin_factory=factory)
    try:
        with pytest.raises(GateError, match="gate setup failed"):
            GateBank(settings, factory)
        assert factory.pin(23).state == 0  # what was built before the failure was released safe
    finally:
        holder.close()


def test_auto_factory_is_mock_off_a_pi(monkeypatch, tmp_path):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    assert board_model(tmp_path / "no-model") is None
    (tmp_path / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert board_model(tmp_path / "model") == "Raspberry Pi 5 Model B Rev 1.0"
    if board_model() is None:
        assert isinstance(make_pin_factory("auto"), MockFactory)


def test_unavailable_factory_is_one_line(monkeypatch):
    with pytest.raises(GateError, match="'nosuch' unavailable"):
        make_pin_factory("nosuch")


def test_a_gate_that_dies_is_one_line_once_the_others_go_safe_and_close_never_raises(settings, caplog):
    pins, die = dying_pins("GPIO18", "GPIO23")
    gates = GateBank(settings, pins)
    gates.set_route("hazardous")  # the pusher on
    die()
    with caplog.at_level(logging.DEBUG, logger="edge.gates"):
        with pytest.raises(GateError, match=r"^gate flap failed: I2C bus error$"):
            gates.apply("flap", -60.0)  # the caller reports this one; the bank then finds the pusher stuck on
        gates.safe()
        gates.close()
        gates.close()
    assert gates.broken == {"flap": "I2C bus error", "pusher": "I2C bus error"}
    assert [(r.levelname, r.message, r.exc_info) for r in caplog.records] == [
        ("ERROR", "gate pusher could not return to its safe position: I2C bus error", None)]
