"""Photo packs (``models.photo_pack``) and weight changes (``models.weight_delta``): what travels to and from a
training machine."""

import cv2
import numpy as np
import pytest

from edge.images import read_rgb
from models import photo_pack, weight_delta
from models.split import read_manifest, select
from tests.conftest import PROJECT


def test_a_pack_holds_each_photo_at_the_models_size_with_its_label(tmp_path, garbage12):
    entries = select(read_manifest(PROJECT / "models" / "split.csv"), "val")[:24]
    labels = sorted({e.label for e in read_manifest(PROJECT / "models" / "split.csv")})
    photo_pack.write(garbage12, entries, labels, tmp_path / "val.npz")
    pack = photo_pack.PhotoPack(tmp_path / "val.npz")
    assert len(pack) == 24 and pack.label_names == labels
    for index, entry in enumerate(entries):
        original = read_rgb(garbage12 / entry.path)
        photo = pack.photo(index)
        assert min(photo.shape[:2]) == min(224, *original.shape[:2]) and pack.labels[index] == labels.index(entry.label)
        resized = cv2.resize(original, photo.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert np.abs(photo.astype(int) - resized).mean() < 6  # WebP at quality 75


def test_a_change_saved_in_parts_gives_back_the_tuned_weights(tmp_path):
    rng = np.random.default_rng(0)
    base = [rng.normal(size=shape).astype(np.float32) for shape in ((3, 3, 64, 64), (64,), (2048, 12), (12,))]
    tuned = [w + rng.normal(scale=1e-3, size=w.shape).astype(np.float32) for w in base]
    paths = weight_delta.save(tuned, base, tmp_path, max_part=100_000)
    assert len(paths) == 2 and all(p.stat().st_size < 100_000 + 1_000 for p in paths)
    back = weight_delta.apply(base, tmp_path)
    for b, t, w in zip(back, tuned, base, strict=True):  # float16 rounds the change, not the weights
        assert np.abs(b - t).max() <= 1e-3 * np.abs(t - w).max() < np.abs(t.astype(np.float16) - t).max()


def test_a_change_for_another_model_is_refused(tmp_path):
    base = [np.zeros((4, 4), np.float32), np.zeros(4, np.float32)]
    weight_delta.save(base, base, tmp_path)
    with pytest.raises(ValueError, match="2 changed weights for a base of 3"):
        weight_delta.apply([*base, np.zeros(2, np.float32)], tmp_path)
    with pytest.raises(ValueError, match=r"weight 0 is \(4, 4\), the base's \(4, 5\)"):
        weight_delta.apply([np.zeros((4, 5), np.float32), base[1]], tmp_path)
