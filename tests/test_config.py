import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import DEFAULT_CONFIG, Settings, load_settings, parse_settings
from edge.errors import ConfigError
from tests.conftest import LABELS


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "smartbin.toml"
    path.write_text(text)
    return path


def default_text() -> str:
    return DEFAULT_CONFIG.read_text()


def test_embedded_default_is_valid_and_maps_every_class():
    settings = load_settings()
    settings.check_labels(LABELS)
    assert settings.default_bin == "residual"
    assert settings.bin_of()["green-glass"] == "glass"


def test_documented_defaults_are_the_real_defaults(tmp_path):
    """Uncommenting every `# key = value` line of the example must not change the settings (except examples
    that are marked as such: paths, roi and items are unset by default)."""
    examples = ("path", "spill", "shadow", "roi", "lores", "items", "delay_s", "beam_pin", "folder", "ca_file",
                "cert_file", "key_file", "password_file")  # shown as examples: unset by default
    documented = re.sub(r"^# ((\w+) = .+)$", lambda m: m[0] if m[2] in examples else m[1], default_text(),
                        flags=re.M)
    assert load_settings(write(tmp_path, documented)) == load_settings()
    keys = set(re.findall(r"^# (\w+) = ", default_text(), flags=re.M))
    for section in ("model", "camera", "sorting", "gpio", "records", "conveyor", "simulator", "retrain",
                    "metrics", "web", "costs", "mqtt"):
        annotation = Settings.model_fields[section].annotation
        model = next(a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None))
        fields = set(model.model_fields) - {"overrides"}  # overrides are written as CLASS.BIN = cost
        assert fields <= keys, f"[{section}] keys not documented: {fields - keys}"


@pytest.mark.parametrize(
    "patch, key",
    [
        (("[sorting]", "[sorting]\nthresold = 0.5"), "sorting.thresold: unknown key"),
        (("[sorting]", "[sorting]\nthreshold = 1.5"), "sorting.threshold"),
        (("[camera]", "[camera]\nfps = 'fast'"), "camera.fps"),
        (("pin = 23", "pin = 18"), "gates.pusher.pin: GPIO18 is already used by gates.flap"),
        (('classes = ["trash"]', 'classes = ["trash", "paper"]'), "bins.residual.classes: 'paper'"),
        (('angle = 60.0', 'angle = 120.0'), "bins.organic.angle"),
        (('gate = "pusher"', 'gate = "pushr"'), "bins.hazardous.gate: no gate named 'pushr'"),
        (("[sorting]", '[sorting]\nreject_bin = "nowhere"'), "sorting.reject_bin"),
        (("[camera]", "[camera]\nroi = [0.5, 0, 0.6, 1]"), "camera: roi"),
        (('classes = ["battery"]\ngate = "pusher"', 'classes = ["battery"]'), "exactly one bin must have no gate"),
    ],
)
def test_bad_config_names_the_key(tmp_path, patch, key):
    old, new = patch
    assert old in default_text()
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, default_text().replace(old, new, 1)))
    assert key in str(info.value) and "\n" not in str(info.value)


def test_class_without_bin_is_a_config_error():
    settings = load_settings()
    bins = settings.model_dump()["bins"]
    bins["packaging"]["classes"] = ["plastic"]
    with pytest.raises(ConfigError, match="class 'metal' of the model has no bin"):
        parse_settings({**settings.model_dump(), "bins": bins}).check_labels(LABELS)


def test_unknown_class_in_config_is_a_config_error():
    with pytest.raises(ConfigError, match="'trash' is not a label of the model"):
        load_settings().check_labels(tuple(label for label in LABELS if label != "trash"))


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    path = write(tmp_path, default_text().replace("[records]", '[records]\npath = "state/items.db"'))
    assert load_settings(path).records.database == tmp_path / "state" / "items.db"


def test_state_directory_from_systemd(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    assert load_settings().records.database == tmp_path / "items.db"


@pytest.mark.parametrize("text, message", [("[sorting\n", "not valid TOML"), ("[bins]\n", "at least one bin")])
def test_cli_reports_bad_config_in_one_line_with_exit_code_2(tmp_path, text, message):
    path = write(tmp_path, text)
    result = subprocess.run([sys.executable, "-m", "edge.cli", "check", "--config", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config not found"):
        load_settings(tmp_path / "nope.toml")


def test_item_crop_is_the_default_and_item_sizes_are_a_range(tmp_path):
    settings = load_settings()
    assert settings.camera.crop == "item" and settings.simulator.item_m == (0.08, 0.25)
    path = tmp_path / "c.toml"
    path.write_text(DEFAULT_CONFIG.read_text().replace("\n[simulator]\n", "\n[simulator]\nitem_m = 0.2\n"))
    assert load_settings(path).simulator.item_m == (0.2, 0.2)  # one size: the old form still works
    path.write_text(DEFAULT_CONFIG.read_text().replace("\n[camera]\n", '\n[camera]\ncrop = "box"\n'))
    with pytest.raises(ConfigError, match=r"camera\.crop"):
        load_settings(path)


def test_a_gate_named_like_a_gate_kind_keeps_its_name_and_further_errors_are_counted(tmp_path):
    path = tmp_path / "c.toml"
    text = DEFAULT_CONFIG.read_text().replace("[gates.flap]", "[gates.servo_flap]").replace(
        'gate = "flap"', 'gate = "servo_flap"').replace("pin = 18", 'pin = "x"')
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"^c.toml: gates.servo_flap.pin: Input should be a valid integer"):
        load_settings(path)
    path.write_text(text.replace("pin = 23", "pin = -1"))
    with pytest.raises(ConfigError, match=r"\(and 1 more error\)$"):
        load_settings(path)


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("camera", "stall_timeout_s = 1e308", "camera.stall_timeout_s"),
        ("camera", "fps = 1e-300", "camera: fps"),
        ("camera", "width = 18.0", "camera.width: Input should be a valid integer"),
        ("camera", "width = 8192", "camera.width: Input should be less than or equal to 4656"),
        ("camera", "lores = [1920, 1080]", "camera: lores: 1920x1080 is larger than the main stream 1280x720"),
        ("conveyor", "belt_speed_m_s = 1e-300", "conveyor.belt_speed_m_s"),
        ("conveyor", "belt_speed_m_s = inf", "conveyor.belt_speed_m_s: Input should be a finite number"),
        ("conveyor", "item_pass_s = nan", "conveyor.item_pass_s: Input should be a finite number"),
        ("conveyor", "item_pass_s = 1979-05-27", "conveyor.item_pass_s: Input should be a valid number"),
        ("model", "threads = 100000", "model.threads"),
        ("model", 'allow_unsealed = "true"', "model.allow_unsealed: Input should be a valid boolean"),
        ("model", "allow_unsealed = 1", "model.allow_unsealed: Input should be a valid boolean"),
        ("retrain", "max_mb = 1e308", "retrain.max_mb"),
        ("retrain", 'enabled = "yes"', "retrain.enabled: Input should be a valid boolean"),
        ("web", "max_upload_mb = 1e308", "web.max_upload_mb"),
        ("simulator", "item_m = [0.1, 1e9]", "simulator: item_m"),
        ("simulator", "seed = -1", "simulator.seed"),
    ],
)
def test_numbers_have_physical_bounds_and_types_are_strict(tmp_path, section, line, key):
    text = default_text().replace(f"\n[{section}]\n", f"\n[{section}]\n{line}\n", 1)
    assert line in text
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert key in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("value", ['"18"', "18.0", "true"])
def test_a_pin_must_be_an_integer(tmp_path, value):
    with pytest.raises(ConfigError, match=r"gates\.flap\.pin: Input should be a valid integer"):
        load_settings(write(tmp_path, default_text().replace("pin = 18", f"pin = {value}")))


def test_a_servo_range_must_hold_its_safe_angle(tmp_path):
    text = default_text().replace("[gates.flap]\n", "[gates.flap]\nmin_angle = 10.0\n")
    with pytest.raises(ConfigError, match=r"gates\.flap: min_angle < max_angle, and safe_angle between them"):
        load_settings(write(tmp_path, text))
