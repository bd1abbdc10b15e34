"""Belt scenes: items cut out of their photos, belts, the camera's blur, and the frames training sees."""

from dataclasses import replace

import numpy as np

from edge.belt import BeltConfig, belt_frame, belt_texture, cut_out, motion_blur, transformed
from edge.images import read_rgb
from edge.preprocess import locate_item


def test_an_item_on_a_plain_background_is_cut_out_by_its_outline():
    photo = np.full((200, 200, 3), 245, np.uint8)
    photo[50:150, 70:130] = (30, 90, 200)
    item = cut_out(photo)
    assert item.segmented
    assert abs(item.rgb.shape[0] - 100) <= 12 and abs(item.rgb.shape[1] - 60) <= 12  # cropped to the item
    assert item.alpha[item.alpha.shape[0] // 2, item.alpha.shape[1] // 2] > 0.99
    assert item.alpha[0, 0] < 0.5  # the photo's white background is left behind


def test_a_photo_the_item_fills_is_used_whole_in_a_soft_ellipse():
    photo = np.random.default_rng(1).integers(0, 256, (120, 120, 3), dtype=np.uint8)  # no plain border
    item = cut_out(photo)
    assert not item.segmented and item.rgb.shape == photo.shape
    assert item.alpha[60, 60] > 0.99 and item.alpha[0, 0] < 0.05


def test_transformed_item_has_the_asked_size_and_an_alpha_of_the_same_shape():
    item = cut_out(np.pad(np.full((80, 40, 3), 200, np.uint8), ((20, 20), (20, 20), (0, 0))))
    rgb, alpha = transformed(item, 160, 90.0)
    assert rgb.shape[:2] == alpha.shape and max(alpha.shape) >= 160
    ys, xs = np.nonzero(alpha > 0.5)
    assert np.ptp(xs) > np.ptp(ys)  # turned by 90°: the tall item now lies across


def test_motion_blur_spreads_an_edge_along_the_belt_only():
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, 20:] = 255
    blurred = motion_blur(image, 9.0)
    assert 0 < blurred[10, 18, 0] < 255 and 0 < blurred[10, 22, 0] < 255  # across the edge: a ramp
    assert (blurred[:, 30] == 255).all() and (blurred[:, 5] == 0).all()
    assert motion_blur(image, 0.5) is image


def test_belts_are_textured_dark_or_light_and_seeded():
    dark = belt_texture(np.random.default_rng(3), 320, 240, light=False)
    light = belt_texture(np.random.default_rng(3), 320, 240, light=True)
    assert dark.mean() < 110 < light.mean() and dark.std() > 2
    assert np.array_equal(dark, belt_texture(np.random.default_rng(3), 320, 240, light=False))


def test_a_belt_frame_of_a_real_photo_has_an_item_the_crop_can_find(garbage12):
    photo = read_rgb(sorted((garbage12 / "battery").iterdir())[0])
    found = 0
    for seed in range(10):
        frame = belt_frame(photo, np.random.default_rng(seed))
        assert frame.shape == (BeltConfig().height, BeltConfig().width, 3)
        found += locate_item(frame) is not None
    assert found >= 8
    assert np.array_equal(belt_frame(photo, np.random.default_rng(4)), belt_frame(photo, np.random.default_rng(4)))


def _bar_photo() -> np.ndarray:
    """A tall dark bar on a white photo: an item whose orientation shows."""
    photo = np.full((200, 200, 3), 245, np.uint8)
    photo[30:170, 85:115] = (40, 40, 160)
    return photo


def test_a_belt_frames_ranges_set_the_belts_kind_the_items_turn_and_the_cameras_effects():
    cfg = BeltConfig(item_side=(0.3, 0.3), out_of_frame=0.0, blur_px=(0.0, 0.0))
    for seed in range(6):
        light = belt_frame(_bar_photo(), np.random.default_rng(seed), replace(cfg, light_belt_share=1.0))
        dark = belt_frame(_bar_photo(), np.random.default_rng(seed), replace(cfg, light_belt_share=0.0))
        assert np.median(dark) < 110 < np.median(light)
        x0, y0, x1, y1 = locate_item(belt_frame(_bar_photo(), np.random.default_rng(seed),
                                                replace(cfg, rotation_deg=(0.0, 0.0), light_belt_share=1.0)))
        assert y1 - y0 > 2 * (x1 - x0)  # upright: the bar stands as in its photo
        rng = np.random.default_rng(seed)  # the frame's first draws: the belt's kind, then its texture
        belt = belt_texture(rng, cfg.width, cfg.height, light=bool(rng.random() < cfg.light_belt_share))
        plain = belt_frame(_bar_photo(), np.random.default_rng(seed), replace(cfg, camera_effects=False))
        seen = belt_frame(_bar_photo(), np.random.default_rng(seed), cfg)
        assert (plain == belt).all(axis=2).mean() > 0.8  # only the item changed the belt's pixels
        assert (seen == belt).all(axis=2).mean() < 0.2  # light, white balance, noise: every pixel moves
