"""Models as versions on the bin (``smartbin model install | list | rollback``): checked with the real runtime,
compared on labelled frames, switched atomically, rolled back; every record names its model's sha256."""

import json
import shutil
import sqlite3

import pytest

from edge.cli import main
from edge.config import BUNDLED_MODEL, load_settings, parse_settings
from edge.errors import SmartbinError
from edge.model_card import sha256_of
from edge.model_store import ModelStore
from edge.service import model_install
from edge.service.model_install import Refused
from tests.conftest import TINY_MODEL


@pytest.fixture
def frames(tmp_path, garbage12):
    """Labelled frames as `smartbin frames --labels` writes them: two photos of each of four classes."""
    out = tmp_path / "frames"
    for label in ("battery", "cardboard", "clothes", "shoes"):
        (out / label).mkdir(parents=True)
        for photo in sorted((garbage12 / label).iterdir())[:2]:
            (out / label / photo.name).symlink_to(photo)
    return out


def candidate(tmp_path, name="tiny12"):
    folder = tmp_path / "candidates"
    folder.mkdir(exist_ok=True)
    for suffix in (".tflite", ".json"):
        shutil.copy(TINY_MODEL.with_suffix(suffix), folder / f"{name}{suffix}")
    return folder / f"{name}.tflite"


def test_a_worse_model_is_refused_with_the_figures_and_nothing_changes(tmp_path, config, frames, capsys):
    assert main(["model", "install", str(candidate(tmp_path)), "--frames", str(frames), "--config", str(config)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("smartbin: refused tiny12.tflite: ") and "on 8 labelled frames" in error
    assert "--max-drop 1 pp" in error and len(error.splitlines()) == 1
    assert load_settings(config).model.path == BUNDLED_MODEL
    assert ModelStore(tmp_path / "state").current() is None


def test_install_switches_the_next_run_and_rollback_restores_the_previous_sha256(tmp_path, config, frames, capsys):
    settings = load_settings(config)
    lines = model_install.install(settings, candidate(tmp_path), frames, force=True)
    assert "installed as version" in lines[-2] and lines[-1].startswith("the service is not running")
    assert "candidate top-1" in lines[1]
    installed = load_settings(config).model.path
    assert installed.parent.parent == tmp_path / "state" / "models" and sha256_of(installed) == sha256_of(TINY_MODEL)
    assert main(["run", "--config", str(config), "--max-items", "2"]) == 0  # the next run uses it
    db = sqlite3.connect(tmp_path / "state" / "items.db")
    assert {row for row in db.execute("SELECT model, model_sha256 FROM items")} == {
        ("tiny12.tflite", sha256_of(TINY_MODEL))}
    capsys.readouterr()
    assert main(["model", "list", "--config", str(config)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[1].startswith("* ") and "tiny12.tflite" in listed[1] and "forced" in listed[1]

    assert model_install.rollback(load_settings(config))[0].endswith("to the configured (bundled) model")
    assert load_settings(config).model.path == BUNDLED_MODEL
    assert main(["run", "--config", str(config), "--max-items", "1"]) == 0
    last = db.execute("SELECT model_sha256 FROM items ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert last == sha256_of(BUNDLED_MODEL)
    with pytest.raises(SmartbinError, match="nothing to roll back"):
        model_install.rollback(load_settings(config))
    history = [json.loads(line) for line in (tmp_path / "state" / "models" / "history.jsonl").read_text().splitlines()]
    assert [h["action"] for h in history] == ["install", "kept", "rollback"]  # kept: nothing to compare with


def test_a_second_install_rolls_back_to_the_first(tmp_path, config):
    first = model_install.install(load_settings(config), candidate(tmp_path, "one"), None)
    assert first[1].startswith("not compared")
    with pytest.raises(Refused, match="current version already"):
        model_install.install(load_settings(config), candidate(tmp_path, "one"), None)
    other = candidate(tmp_path, "two")
    card = json.loads(other.with_suffix(".json").read_text())
    data = bytearray(other.read_bytes())
    data += b"\0" * 16  # another file (trailing bytes the runtime ignores), sealed as such
    other.write_bytes(bytes(data))
    card["integrity"]["tflite_bytes"], card["integrity"]["tflite_sha256"] = len(data), sha256_of(other)
    other.with_suffix(".json").write_text(json.dumps(card))
    model_install.install(load_settings(config), other, None)
    assert load_settings(config).model.path.name == "two.tflite"
    assert "version" in model_install.rollback(load_settings(config))[0]
    assert load_settings(config).model.path.name == "one.tflite"


@pytest.mark.parametrize("damage", ["corrupt", "swapped labels", "no card", "labels without a bin"])
def test_a_broken_or_unfitting_model_is_refused_in_one_line_and_the_current_one_stays(tmp_path, config, damage):
    model = candidate(tmp_path)
    card_file = model.with_suffix(".json")
    card = json.loads(card_file.read_text())
    settings = load_settings(config)
    if damage == "corrupt":
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model.write_bytes(bytes(data))
    elif damage == "swapped labels":
        card["labels"][0], card["labels"][1] = card["labels"][1], card["labels"][0]
        card_file.write_text(json.dumps(card))
    elif damage == "no card":
        card_file.unlink()
    else:
        data = settings.model_dump(mode="json")
        data["bins"]["hazardous"]["classes"] = []  # battery: no bin
        settings = parse_settings(data)
    with pytest.raises(Refused) as refused:
        model_install.install(settings, model, None)
    assert str(refused.value).startswith("refused tiny12.tflite: ") and "\n" not in str(refused.value)
    assert load_settings(config).model.path == BUNDLED_MODEL


def trial_config(config, reject_cost):
    """The config with a 4-item trial, and a reject cost that makes every item rejected (0) or none (default)."""
    text = config.read_text().replace("[model]\n", "[model]\ntrial_items = 4\n", 1)
    if reject_cost is not None:
        text = text.replace("[costs]\n", f"[costs]\nreject = {reject_cost}\n", 1)
    config.write_text(text)
    return config


def earlier_items(tmp_path, outcome, n=30):
    """Records of the model that ran before the install, all with ``outcome``."""
    from edge.records import ItemRecord, Records

    with Records(tmp_path / "state" / "items.db") as records:
        for i in range(n):
            records.add(ItemRecord(time=1000.0 + i, frame=i, source="test", bin="residual", gate_action="none",
                                   outcome=outcome, model="old.tflite", model_sha256="0" * 64))


def test_a_new_model_that_rejects_far_more_is_rolled_back_by_itself(tmp_path, config, capsys):
    config = trial_config(config, reject_cost=0)  # the new model's items: all rejected
    earlier_items(tmp_path, "sorted")  # the previous model's: none rejected
    model_install.install(load_settings(config), candidate(tmp_path), None)
    assert main(["run", "--config", str(config), "--max-items", "8"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "rolled back automatically to the configured (bundled) model after 4 items: rejected " in error
    assert "% vs 0.0% (more than 5% above the previous model)" in error
    assert load_settings(config).model.path == BUNDLED_MODEL
    history = ModelStore(tmp_path / "state").history()
    assert history[-1]["action"] == "rollback" and history[-1]["auto"] is True
    assert main(["status", "--config", str(config)]) == 0
    assert any(line.startswith("model      model ") and "rolled back automatically" in line
               for line in capsys.readouterr().out.splitlines())


def test_a_new_model_that_does_as_well_is_kept_after_its_trial(tmp_path, config):
    config = trial_config(config, reject_cost=0)
    earlier_items(tmp_path, "rejected")  # the previous model rejected as much
    model_install.install(load_settings(config), candidate(tmp_path), None)
    assert main(["run", "--config", str(config), "--max-items", "5"]) == 0
    history = ModelStore(tmp_path / "state").history()
    assert [h["action"] for h in history] == ["install", "kept"] and history[-1]["items"] == 4
    assert load_settings(config).model.path.name == "tiny12.tflite"
    assert main(["run", "--config", str(config), "--max-items", "5"]) == 0  # no second trial
    assert len(ModelStore(tmp_path / "state").history()) == 2
