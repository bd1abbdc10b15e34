"""`smartbin safe` (the service's ExecStopPost) drives every gate it can find to safe, also with a broken config."""

import json

import pytest
from gpiozero import OutputDevice
from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge.cli import main
from edge.config import DEFAULT_CONFIG, load_settings
from edge.service.safe import LAST_GOOD, drive_safe, gates_despite
from tests.test_gates import duty
from tests.test_loop import write_config

BROKEN = ("pin = 18", 'pin = "18"')  # what an operator's half-finished edit may look like


def test_drive_safe_turns_a_relay_off_and_a_servo_to_its_safe_angle():
    factory = MockFactory(pin_class=MockPWMPin)
    pusher = OutputDevice(23, pin_factory=factory)
    pusher.on()  # left pushing by a killed run
    pusher.close()
    assert drive_safe(load_settings().gates, factory) == []
    assert factory.pin(23).states[-1].state == 0
    assert [s.state for s in factory.pin(18).states if s.state][-1] == pytest.approx(duty(0))


def test_safe_with_a_broken_config_uses_the_gates_the_service_last_ran_with(tmp_path, tiny_model, capsys):
    config = write_config(tmp_path, tiny_model)
    assert main(["run", "--config", str(config), "--max-items", "1"]) == 0
    kept = json.loads((tmp_path / LAST_GOOD).read_text())
    assert set(kept["gates"]) == {"flap", "pusher"} and kept["pin_factory"] == "mock"
    config.write_text(config.read_text().replace(*BROKEN).replace("pin = 23", "pin = 24"))  # pusher moved too
    capsys.readouterr()
    assert main(["safe", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "gates.flap.pin: Input should be a valid integer" in err
    assert (f"gates safe: flap, pusher, pusher (broken config) (from the last good config ({tmp_path / LAST_GOOD})"
            " and 1 gate(s) of the broken config)") in out


def test_without_a_kept_config_safe_takes_the_gates_of_the_broken_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "empty-state"))
    broken = tmp_path / "smartbin.toml"
    text = DEFAULT_CONFIG.read_text().replace(*BROKEN)
    broken.write_text(text.replace("[gpio]", '[gpio]\npin_factory = "mock"'))
    _pin_factory, gates, found_in = gates_despite(broken)
    assert set(gates) == {"flap", "pusher"} and gates["flap"].pin == 18 and found_in == "2 gate(s) of the broken config"
    assert main(["safe", "--config", str(broken)]) == 0
    broken.write_text("this is not TOML [")
    assert main(["safe", "--config", str(broken)]) == 2  # nothing found anywhere: the config error stands
