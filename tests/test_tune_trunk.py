"""Whole-trunk fine-tuning (``models.tune_trunk``): its epochs, its acceptance rule, and a real run that changes
nothing (learning rate 0), which must not replace the base."""

import itertools
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edge.config import BUNDLED_MODEL
from models import photo_pack, tune_trunk
from models.split import read_manifest, select, write_manifest
from tests.conftest import LABELS, PROJECT


def test_each_epoch_shows_every_photo_once_in_a_new_order():
    epochs = [tune_trunk.epoch_rows(400, epoch, seed=0, clean_share=0.25, photo_share=0.25) for epoch in range(2)]
    for rows in epochs:
        assert sorted(i for i, _ in rows) == list(range(400))
        kinds = Counter(kind for _, kind in rows)
        assert 70 < kinds["clean"] < 130 and 70 < kinds["photo"] < 130 and 160 < kinds["belt"] < 240
    assert [i for i, _ in epochs[0]] != [i for i, _ in epochs[1]]
    assert epochs[0] == tune_trunk.epoch_rows(400, 0, seed=0, clean_share=0.25, photo_share=0.25)


def test_the_learning_rate_warms_up_then_decays_to_a_hundredth():
    rates = [tune_trunk.learning_rate(1e-4, progress) for progress in np.linspace(0, 1, 101)]
    peak = int(np.argmax(rates))
    assert rates[0] == 0 and rates[peak] == pytest.approx(1e-4) and peak == round(100 * tune_trunk.WARMUP)
    assert all(a <= b for a, b in itertools.pairwise(rates[:peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(rates[peak:]))
    assert rates[-1] == pytest.approx(1e-6)


def test_unfreezing_trains_every_convolution_and_keeps_every_batch_norm_in_inference_mode():
    import keras

    from models.architecture import build_model

    model = build_model(None)
    tune_trunk.unfreeze(model)
    layers = model.get_layer("resnet50").layers + model.layers
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    convolutions = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)]
    assert len(norms) == 54 and not any(layer.trainable for layer in norms)
    assert len(convolutions) == 55 and all(layer.trainable for layer in convolutions)


@pytest.mark.parametrize(("after", "max_drop", "taken"), [
    ({"photos": 0.96, "belt": 0.85}, 0.003, True),   # better on the belt, photos as before
    ({"photos": 0.958, "belt": 0.85}, 0.003, True),  # photos within the allowed drop
    ({"photos": 0.95, "belt": 0.90}, 0.003, False),  # photos lost for the belt
    ({"photos": 0.97, "belt": 0.84}, 0.003, False),  # not better on the belt
    ({"photos": 0.97, "belt": 0.85, "p": 0.2}, 0.003, False),  # better on the belt, but by chance
])
def test_a_tuned_trunk_replaces_the_base_only_when_better_on_the_belt_without_losing_photos(after, max_drop, taken):
    def figures(photos: float, belt: float, p: float = 0.01) -> dict:
        return {"photos": {"top1": photos}, "belt": {"top1": belt, "p": p}}

    assert tune_trunk.accepted(figures(0.96, 0.84), figures(**after), max_drop, alpha=0.05) is taken


def test_the_belt_gain_is_weighed_against_chance_by_a_sign_test():
    truth = np.zeros(100, int)
    before = np.array([0] * 80 + [1] * 20)
    after = before.copy()
    after[80:90] = 0  # 10 views gained
    after[:2] = 1     # 2 lost
    figures = tune_trunk.paired(truth, before, after)
    assert figures["gained"] == 10 and figures["lost"] == 2
    assert figures["p"] == pytest.approx(sum(math.comb(12, k) for k in range(10, 13)) / 2 ** 12, abs=1e-4)  # 0.0193
    assert tune_trunk.paired(truth, before, before) == {"gained": 0, "lost": 0, "p": 1.0}
    coin = tune_trunk.paired(truth, before, np.array([1] * 6 + [0] * 74 + [0] * 6 + [1] * 14))
    assert (coin["gained"], coin["lost"]) == (6, 6) and coin["p"] > 0.5


def test_views_of_one_photo_on_several_belt_draws_are_one_toss():
    """Three draws of two photos: a photo right on more of its views after than before is one gain, not three."""
    truth = np.array([0, 1])
    before = np.array([1, 1, 1, 1, 1, 1])  # draw after draw: photo 0 wrong on every draw, photo 1 right
    after = np.array([0, 1, 0, 0, 0, 1])   # photo 0 right on all three, photo 1 wrong on the second only
    assert tune_trunk.paired(truth, before, after) == {"gained": 1, "lost": 1, "p": 0.75}
    figures = tune_trunk.val_figures({"belt": after}, truth, ["a", "b"])  # top-1 over the six views
    assert figures["belt"]["top1"] == pytest.approx(5 / 6, abs=1e-4)


def test_a_run_that_does_not_improve_the_model_leaves_nothing_behind(tmp_path, garbage12, caplog):
    entries = read_manifest(PROJECT / "models" / "split.csv")
    small = [next(e for e in select(entries, split) if e.label == label)
             for split in ("train", "val") for label in LABELS]  # one photo of each class in each
    write_manifest(small, tmp_path / "split.csv")
    out, metrics = tmp_path / "tuned.keras", tmp_path / "metrics.json"
    argv = ["--base", str(BUNDLED_MODEL), "--out", str(out), "--metrics", str(metrics), "--data", str(garbage12),
            "--manifest", str(tmp_path / "split.csv"), "--epochs", "1", "--batch", "6", "--lr", "0"]
    assert tune_trunk.main(argv) == 1
    assert "not better on val belt views" in caplog.text
    assert not out.exists() and not metrics.exists() and not list(Path(tmp_path).glob("*.npy"))


def test_a_run_elsewhere_from_a_pack_comes_back_as_a_change_and_is_judged_here(tmp_path, garbage12, caplog):
    """Training from a photo pack in processes (``--pack --workers --delta``), then ``--apply`` here: at learning
    rate 0 the change is zero, the rebuilt model is the base, and it is not taken."""
    entries = read_manifest(PROJECT / "models" / "split.csv")
    small = [next(e for e in select(entries, split) if e.label == label)
             for split in ("train", "val") for label in LABELS]
    write_manifest(small, tmp_path / "split.csv")
    pack, delta, out = tmp_path / "train.npz", tmp_path / "delta", tmp_path / "tuned.keras"
    photo_pack.main(["--data", str(garbage12), "--manifest", str(tmp_path / "split.csv"), "--out", str(pack)])
    assert tune_trunk.main(["--base", str(BUNDLED_MODEL), "--pack", str(pack), "--delta", str(delta),
                            "--workers", "2", "--epochs", "1", "--batch", "6", "--lr", "0"]) == 0
    run = json.loads((delta / "run.json").read_text())["run"]  # the recipe and machine of the run travel with it
    assert run["steps"] == 2 and run["recipe"]["batch"] == 6 and run["machine"]["keras_backend"] == "tensorflow"
    assert all(not np.abs(np.load(part)[name]).any() for part in delta.glob("delta-*.npz")
               for name in np.load(part).files)
    argv = ["--base", str(BUNDLED_MODEL), "--apply", str(delta), "--out", str(out), "--data", str(garbage12),
            "--manifest", str(tmp_path / "split.csv"), "--metrics", str(tmp_path / "metrics.json")]
    assert tune_trunk.main(argv) == 1
    assert "not better on val belt views" in caplog.text and not out.exists()


def test_the_card_says_whether_and_how_the_trunk_was_tuned():
    from models.report import trunk_tuning

    assert "none" in trunk_tuning(None) and "none" in trunk_tuning([])
    recipe = {"clean_share": 0.25, "photo_share": 0.25, "lr": 3e-5, "batch": 64, "label_smoothing": 0.1,
              "class_weight_power": 0.5}
    judged = {"recipe": {**recipe, "lr": 2e-5, "batch": 32}, "machine": {"cpu": "EPYC", "cores": 2},  # --apply's
              "before": {"photos": {"top1": 0.9668}, "belt": {"top1": 0.8373}},
              "after": {"photos": {"top1": 0.9687}, "belt": {"top1": 0.866, "gained": 90, "lost": 45, "p": 7e-5}}}
    there = {"cpu": "Xeon", "cores": 16, "keras_backend": "jax"}
    line = trunk_tuning([{**judged, "run": {"epochs": 29.36, "seconds": 420, "recipe": recipe, "machine": there}}])
    assert line.startswith("- **Whole-trunk tuning** (`python -m models.tune_trunk`, on the model above)")
    assert "29.36 epochs" in line and "on Xeon (16 cores, Keras on jax)" in line and "Adam 3e-05" in line
    assert "batch 64" in line and "photos 0.9668 → 0.9687, belt views 0.8373 → 0.8660; 90 gained, 45 lost" in line
    assert "sign test p 7e-05" in line
    assert "on an H200" in trunk_tuning([{**judged, "run": {"epochs": 29.36, "seconds": 420, "recipe": recipe,
                                                            "machine": "an H200"}}])
    assert "no run record" in trunk_tuning([{**judged, "run": None}])
    assert "belt views (3 draws of belts) 0.8373 → 0.8660" in trunk_tuning([{**judged, "run": None, "belt_draws": 3}])
    two = trunk_tuning([{**judged, "run": None}, {**judged, "run": {"epochs": 6.3, "seconds": 4200,
                                                                    "recipe": recipe, "machine": "EPYC"}}])
    first, second = two.splitlines()
    assert "stage 1 of 2" in first and "on the model above" in first
    assert "stage 2 of 2" in second and "on stage 1's model" in second and "6.3 epochs" in second


def test_a_stage_follows_the_one_whose_model_it_started_from(tmp_path):
    keras_file, tflite = tmp_path / "tuned.keras", tmp_path / "tuned_int8.tflite"
    keras_file.write_bytes(b"tuned weights")
    tflite.write_bytes(b"int8 model")
    digest = tune_trunk.sha256_of(keras_file)
    assert tune_trunk.base_digest(keras_file) == digest
    assert tune_trunk.base_digest(tflite) == tune_trunk.sha256_of(tflite)  # no card: the model itself
    tflite.with_suffix(".json").write_text(json.dumps({"source": {"file": "tuned.keras", "sha256": digest}}))
    assert tune_trunk.base_digest(tflite) == digest  # converted from the tuned .keras: follows it

    first = {"base_sha256": "recipe", "sha256": digest}
    second = {"base_sha256": digest, "sha256": "next"}
    assert tune_trunk.chained([], first) == [first]
    assert tune_trunk.chained([first], second) == [first, second]
    assert tune_trunk.chained([first, second], {**first, "sha256": "other"}) == [{**first, "sha256": "other"}]
