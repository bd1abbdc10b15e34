"""The model lifecycle end to end: frames kept by a replay run → exported → labelled from the truths →
fine-tuned (``models.finetune``, a small fast configuration, the real ResNet-50 and converter) → installed →
used by the next run → rolled back. And the fine-tune's base rebuilt from the shipped int8 model."""

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from edge.config import BUNDLED_MODEL, load_settings
from edge.model_card import read_card, sha256_of
from edge.preprocess import prepare
from models import finetune
from models.site_frames import write_site_frames
from tests.conftest import LABELS, PROJECT, TINY_MODEL


@pytest.fixture(scope="module")
def site(tmp_path_factory, garbage12):
    """Frames of one simulated site (``models.site_frames``): 3 val photos of each class, labelled."""
    out = tmp_path_factory.mktemp("site")
    write_site_frames(garbage12, PROJECT / "models" / "split.csv", "val", out, seed=5, every=50)
    return out


def kept_and_labelled(config: Path, site: Path, tmp_path: Path) -> Path:
    """Replay the site's frames keeping every item's frame, export them, label them from the records' truths."""
    text = config.read_text().replace("[retrain]\n", "[retrain]\nkeep_below = 1.0\nmin_free_mb = 0\n", 1)
    config.write_text(text)
    assert main(["run", "--config", str(config), "--source", str(site)]) == 0
    template = tmp_path / "to-label"
    assert main(["frames", str(template), "--config", str(config)]) == 0
    kept = load_settings(config).retrain_folder
    truths = {json.loads(p.read_text())["id"]: json.loads(p.read_text())["truth"] for p in kept.glob("*.json")}
    rows = list(csv.DictReader((template / "labels.csv").open()))
    assert rows and {int(r["id"]) for r in rows} == set(truths)
    with (template / "labels.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "guess", "confidence", "label"])
        writer.writeheader()
        writer.writerows(r | {"label": truths[int(r["id"])]} for r in rows)
    labelled = tmp_path / "labelled"
    assert main(["frames", str(labelled), "--labels", str(template / "labels.csv"), "--config", str(config)]) == 0
    return labelled


def fast(frames: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    """A small, fast fine-tune: few original photos, one epoch, a short calibration."""
    return ["--frames", str(frames), "--base", str(BUNDLED_MODEL), "--current", str(BUNDLED_MODEL),
            "--out", str(out), "--cache", str(cache), "--train-photos", "36",
            "--test-photos", "24", "--epochs", "1", "--calibration-count", "24", "--max-drop", "100",
            "--data", str(PROJECT.parent / "shared" / "data" / "garbage12"),
            "--manifest", str(PROJECT / "models" / "split.csv"), *extra]


def report_counts(out: Path) -> dict[str, dict[str, int]]:
    return json.loads(out.with_suffix(".finetune.json").read_text())["site_frames"]


def test_kept_frames_fine_tuned_installed_used_and_rolled_back(tmp_path, config, site, capsys):
    labelled = kept_and_labelled(config, site, tmp_path)
    exported = sorted(labelled.glob("*/*.jpg"))
    assert len(exported) >= 24 and {p.parent.name for p in exported} <= set(LABELS)

    out = tmp_path / "ft" / "site.tflite"
    assert finetune.main(fast(labelled, out, tmp_path / "cache")) == 0
    printed = capsys.readouterr().out
    assert "held-out site frames, int8:" in printed and "install with `smartbin model install" in printed
    held = sorted(p.relative_to(out.parent / "site.held_out") for p in (out.parent / "site.held_out").glob("*/*"))
    assert held and len(held) == sum(report_counts(out)["held_out"].values())
    card = read_card(out)
    assert card.labels == LABELS
    report = json.loads(out.with_suffix(".finetune.json").read_text())
    assert report == card.extra["fine_tune"]
    counts = report["site_frames"]
    assert sum(counts["train"].values()) + sum(counts["held_out"].values()) == len(exported)
    assert report["int8_test"]["images"] == 24 and report["recipe"]["train_photos"] == 36
    assert 0 <= report["int8_site_held_out"]["after"]["top1"] <= 1

    before = sha256_of(BUNDLED_MODEL)
    assert main(["model", "install", str(out), "--frames", str(out.parent / "site.held_out"), "--max-drop", "5",
                 "--config", str(config)]) == 0
    assert "installed as version" in capsys.readouterr().out
    assert main(["run", "--config", str(config), "--source", str(site), "--max-items", "3"]) == 0
    db = sqlite3.connect(load_settings(config).records.path)
    newest = [row[0] for row in db.execute("SELECT model_sha256 FROM items ORDER BY id DESC LIMIT 3")]
    assert newest == [sha256_of(out)] * 3 and sha256_of(out) != before

    broken = tmp_path / "ft" / "broken.tflite"
    broken.write_bytes(out.read_bytes()[: 1 << 20])
    out.with_suffix(".json").replace(broken.with_suffix(".json"))
    capsys.readouterr()
    assert main(["model", "install", str(broken), "--config", str(config)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("smartbin: refused broken.tflite: ") and len(error.splitlines()) == 1
    assert sha256_of(load_settings(config).model.path) == sha256_of(out)  # the fine-tuned one still runs

    assert main(["model", "rollback", "--config", str(config)]) == 0
    assert main(["run", "--config", str(config), "--source", str(site), "--max-items", "1"]) == 0
    assert db.execute("SELECT model_sha256 FROM items ORDER BY id DESC LIMIT 1").fetchone()[0] == before


def test_the_base_rebuilt_from_the_shipped_int8_model_predicts_as_it_does(garbage12):
    from edge.classifier import Classifier
    from edge.images import read_rgb
    from models.architecture import preprocess
    from models.from_tflite import keras_from_int8

    model = keras_from_int8(BUNDLED_MODEL)
    photos = [sorted((garbage12 / label).iterdir())[0] for label in LABELS]
    pixels = np.stack([prepare(read_rgb(p), (224, 224)) for p in photos])
    recovered = np.asarray(model.predict(preprocess(pixels), verbose=0))
    with Classifier(BUNDLED_MODEL, threads=None) as classifier:
        shipped = np.stack([classifier.classify(p).probabilities for p in pixels])
    assert (recovered.argmax(1) == shipped.argmax(1)).mean() >= 11 / 12
    assert np.abs(recovered - shipped).mean() < 0.02


@pytest.mark.parametrize(("layout", "message"), [
    ({"batteries": 3}, "batteries not among the model's labels"),
    ({"battery": 1}, "too few to train on and hold out"),
    ({}, "frames folder not found"),
])
def test_bad_site_frames_are_one_line(tmp_path, site, capsys, layout, message):
    frames = tmp_path / "frames"
    for label, n in layout.items():
        (frames / label).mkdir(parents=True)
        for source in sorted(site.glob("*/*.jpg"))[:n]:
            (frames / label / source.name).write_bytes(source.read_bytes())
    assert finetune.main(["--frames", str(frames), "--base", str(BUNDLED_MODEL)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("models.finetune: ") and message in error and len(error.splitlines()) == 1


@pytest.mark.parametrize(("base", "message"), [
    ("base.onnx", "--base must be a .keras or an int8 .tflite"),
    ("tiny12.tflite", "not this recipe's model"),  # the 12 labels, but not a ResNet-50
])
def test_a_base_that_is_not_the_recipes_model_is_one_line(tmp_path, site, capsys, base, message):
    (tmp_path / "base.onnx").write_bytes(b"not a model")
    for suffix in (".tflite", ".json"):
        (tmp_path / f"tiny12{suffix}").write_bytes(TINY_MODEL.with_suffix(suffix).read_bytes())
    argv = ["--frames", str(site), "--base", str(tmp_path / base)]
    assert finetune.main(argv) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("models.finetune: ") and message in error and len(error.splitlines()) == 1


def test_each_epoch_has_every_site_frame_once_and_fresh_original_photos():
    site = [np.arange(10, dtype=np.float16).reshape(10, 1) + 100 * v for v in range(2)]  # value = 100·view + row
    original = [np.arange(50, dtype=np.float16).reshape(50, 1) + 1000]
    dataset = finetune.mixed_epochs(site, np.arange(10) % 3, original, np.arange(50) % 3, mix=2.0, batch=7, seed=1)
    epochs = []
    for _ in range(2):
        values = np.concatenate([dataset[i][0][:, 0] for i in range(len(dataset))])
        assert len(values) == 10 + 20 and len(dataset) == 5
        assert sorted(v % 100 for v in values if v < 1000) == list(range(10))  # each site frame once, either view
        epochs.append(sorted(v - 1000 for v in values if v >= 1000))
        dataset.on_epoch_end()
    assert len(set(epochs[0])) == 20 and epochs[0] != epochs[1]  # 20 distinct originals, drawn anew


def test_the_recipe_shows_each_photo_once_an_epoch_in_one_of_its_views():
    from models.train import make_views_dataset

    views = [np.arange(40, dtype=np.float16).reshape(40, 1) + 100 * v for v in range(3)]
    dataset = make_views_dataset(views, np.arange(40) % 4, np.ones(4, np.float32), batch=16, seed=0, clean_share=0.5)
    x = np.concatenate([dataset[i][0][:, 0] for i in range(len(dataset))])
    assert sorted(x % 100) == list(range(40)) and 10 < (x < 100).sum() < 30  # about half clean


def test_the_default_base_is_the_recipes_keras_only_when_the_bins_model_came_from_it(tmp_path):
    current = tmp_path / "current.tflite"
    current.write_bytes(BUNDLED_MODEL.read_bytes())
    card = json.loads(BUNDLED_MODEL.with_suffix(".json").read_text())
    recipe = tmp_path / "garbage12_resnet50.keras"
    recipe.write_bytes(b"a .keras left by another rebuild")
    current.with_suffix(".json").write_text(json.dumps(card))
    assert finetune.default_base(current, recipe) == current  # stale: not what the bin's model came from
    card["source"]["sha256"] = sha256_of(recipe)
    current.with_suffix(".json").write_text(json.dumps(card))
    assert finetune.default_base(current, recipe) == recipe
    recipe.unlink()
    assert finetune.default_base(current, recipe) == current
