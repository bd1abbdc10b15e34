"""Simulated camera frames of the test photos (``models.belt_frames``), as ``smartbin classify --frame`` reads them."""

import numpy as np
import pytest

from edge.belt import BeltConfig
from edge.images import read_rgb
from edge.preprocess import locate_item
from models.belt_frames import between_rails, score, write_frames
from tests.conftest import PROJECT


def test_a_frame_between_rails_has_steel_rows_above_and_below_the_belt(garbage12):
    photo = read_rgb(sorted((garbage12 / "battery").iterdir())[0])
    cfg = BeltConfig(width=640, height=360, item_side=(0.2, 0.4), out_of_frame=0.0)
    frame = between_rails(photo, np.random.default_rng(3), cfg, 60)
    assert frame.shape == (360, 640, 3)
    rails = np.concatenate([frame[:55], frame[-55:]]).astype(float)
    assert rails.mean() > 90 and rails.std(axis=1).mean() < 8  # bright steel, the same all along the belt
    assert (frame[55:60] == 15).all() and (frame[300:305] == 15).all()  # the dark gap at the belt's edges
    x0, y0, x1, y1 = locate_item(frame)
    assert 60 <= y0 < y1 <= 300 and max(x1 - x0, y1 - y0) >= 0.2 * 360 * 0.8  # on the belt, at its size
    with pytest.raises(ValueError, match="no belt"):
        between_rails(photo, np.random.default_rng(3), cfg, 180)


def test_frames_are_written_under_their_labels_and_scored_by_folder(garbage12, tmp_path):
    cfg = BeltConfig(width=320, height=180, item_side=(0.2, 0.4), out_of_frame=0.0)
    manifest = PROJECT / "models" / "split.csv"
    written = write_frames(garbage12, manifest, "test", tmp_path, cfg, seed=5, every=400, rail_px=30)
    frames = sorted(tmp_path.glob("*/*.jpg"))
    assert written == len(frames) >= 3 and read_rgb(frames[0]).shape == (180, 320, 3)
    lines = [f'{{"path": "{frames[0]}", "label": "{frames[0].parent.name}"}}',
             f'{{"path": "{frames[1]}", "label": "not-{frames[1].parent.name}"}}']
    assert score(lines) == (1, 2)
