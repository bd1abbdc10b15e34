"""Whole-trunk fine-tuning (``models.tune_trunk``): its epochs, its acceptance rule, and a real run that changes
nothing (learning rate 0), which must not replace the base."""

from pathlib import Path

import pytest

from edge.config import BUNDLED_MODEL
from models import tune_trunk
from models.split import read_manifest, select, write_manifest
from tests.conftest import LABELS, PROJECT


def test_each_epoch_shows_every_photo_once_in_a_new_order():
    epochs = [tune_trunk.epoch_rows(200, epoch, seed=0, clean_share=0.5) for epoch in range(2)]
    for rows in epochs:
        assert sorted(i for i, _ in rows) == list(range(200))
        assert 70 < sum(clean for _, clean in rows) < 130
    assert [i for i, _ in epochs[0]] != [i for i, _ in epochs[1]]
    assert epochs[0] == tune_trunk.epoch_rows(200, 0, seed=0, clean_share=0.5)


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
])
def test_a_tuned_trunk_replaces_the_base_only_when_better_on_the_belt_without_losing_photos(after, max_drop, taken):
    figures = lambda photos, belt: {"photos": {"top1": photos}, "belt": {"top1": belt}}  # noqa: E731
    assert tune_trunk.accepted(figures(0.96, 0.84), figures(**after), max_drop) is taken


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
