import cv2
import numpy as np
import pytest

from edge.belt import belt_texture, camera
from edge.preprocess import (
    ITEM_MARGIN,
    Roi,
    center_square,
    crop_box,
    item_square,
    locate_item,
    model_box,
    prepare,
    refine,
    still_input,
)


def gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)


def test_center_square_of_landscape_and_portrait_frames():
    assert center_square(1280, 720) == (280, 0, 1000, 720)
    assert center_square(300, 500) == (0, 100, 300, 400)
    assert center_square(255, 255) == (0, 0, 255, 255)


def test_prepare_is_centre_crop_then_inter_area_resize():
    frame = gradient(720, 1280)
    out = prepare(frame, (224, 224))
    expected = cv2.resize(frame[:, 280:1000], (224, 224), interpolation=cv2.INTER_AREA)
    assert out.dtype == np.uint8 and out.shape == (224, 224, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


def test_prepare_with_roi_and_non_square_size():
    frame = gradient(400, 800)
    roi = Roi(0.25, 0.5, 0.5, 0.5)
    assert crop_box(frame, roi) == (200, 200, 600, 400)
    out = prepare(frame, (96, 64), roi)
    assert out.shape == (64, 96, 3)
    np.testing.assert_array_equal(out, cv2.resize(frame[200:400, 200:600], (96, 64), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((10, 10, 4), np.uint8)])
def test_prepare_rejects_non_rgb_uint8(bad):
    with pytest.raises(ValueError):
        prepare(bad, (8, 8))


@pytest.mark.parametrize("values", [(-0.1, 0, 1, 1), (0, 0, 0, 1), (0.5, 0, 0.6, 1), (0, 0.2, 1, 0.9)])
def test_roi_must_lie_within_the_frame(values):
    with pytest.raises(ValueError):
        Roi(*values)


def belt_with_item(left: int, top: int, side: int, width: int = 640, height: int = 360) -> np.ndarray:
    """A dark grainy belt with one bright square item at (left, top)."""
    rng = np.random.default_rng(0)
    frame = np.clip(60 + rng.normal(0, 4, (height, width, 3)), 0, 255).astype(np.uint8)
    frame[top : top + side, left : left + side] = (200, 150, 40)
    return frame


def test_locate_item_finds_an_off_centre_item_against_the_belt():
    frame = belt_with_item(left=450, top=40, side=120)
    x0, y0, x1, y1 = locate_item(frame)
    assert abs(x0 - 450) <= 6 and abs(y0 - 40) <= 6 and abs(x1 - 570) <= 6 and abs(y1 - 160) <= 6
    assert locate_item(np.full((360, 640, 3), 60, np.uint8)) is None  # an empty belt: nothing stands out


def with_rails(frame: np.ndarray, rail: int = 50) -> np.ndarray:
    """The frame with the belt's side rails in view along its top and bottom (bright steel, a dark gap)."""
    out = frame.copy()
    out[:rail], out[-rail:] = (170, 172, 178), (150, 152, 160)
    out[rail - 6 : rail], out[-rail : -rail + 6] = 15, 15
    return out


def test_an_item_is_found_when_the_belt_s_rails_are_in_view():
    frame = with_rails(belt_with_item(left=450, top=150, side=100))
    assert locate_item(frame, tight=True) is None  # the border is rail, not belt: nothing stands out
    x0, y0, x1, y1 = locate_item(frame)  # against the rest of each row instead
    assert abs(x0 - 450) <= 6 and abs(y0 - 150) <= 6 and abs(x1 - 550) <= 6 and abs(y1 - 250) <= 6
    assert (np.abs(still_input(frame, (64, 64))[32, 32].astype(int) - (200, 150, 40)) < 10).all()  # a still
    assert locate_item(with_rails(np.full((360, 640, 3), 60, np.uint8))) is None  # an empty belt between rails


def test_a_small_item_is_found_by_a_closer_look():
    frame = belt_with_item(left=700, top=300, side=30, width=960, height=540)  # 0.2 % of the frame
    assert locate_item(frame, tight=True) is None  # seen 128 pixels across: a speck
    x0, y0, x1, y1 = locate_item(frame)
    assert abs(x0 - 700) <= 4 and abs(y0 - 300) <= 4 and abs(x1 - 730) <= 4 and abs(y1 - 330) <= 4
    assert locate_item(belt_with_item(left=700, top=300, side=12, width=960, height=540)) is None  # a speck
    for seed in range(6):  # textured belts with seams and dirt, through the camera: nothing there
        rng = np.random.default_rng(seed)
        assert locate_item(camera(belt_texture(rng, 960, 540), rng, 8.0)) is None


def test_what_stands_out_from_its_rows_is_not_taken_when_it_spans_half_the_frame():
    wide = with_rails(belt_with_item(left=100, top=120, side=0))
    wide[120:240, 100:540] = (200, 150, 40)  # 440 of 640 columns: a row's median is the item, not the belt
    assert locate_item(wide) is None
    noise = np.random.default_rng(1).integers(0, 256, (360, 480, 3), dtype=np.uint8)  # no belt at all
    assert locate_item(noise) is None


def test_item_crop_is_a_square_around_the_item_with_a_margin_not_the_centre():
    frame = belt_with_item(left=340, top=40, side=120)  # inside the centre square (140..500), off its centre
    x0, y0, x1, y1 = model_box(frame, crop="item")
    assert abs((x1 - x0) - round(120 * (1 + 2 * ITEM_MARGIN))) <= 16 and x1 - x0 == y1 - y0  # located ±a few px
    assert x0 <= 340 and x1 >= 460 and y0 <= 40 and y1 >= 160
    assert model_box(frame, crop="item", box=(340, 40, 460, 160)) == item_square((340, 40, 460, 160), 640, 360)
    out = prepare(frame, (64, 64), crop="item")
    assert (np.abs(out[32, 32].astype(int) - (200, 150, 40)) < 10).all()  # the item is in the middle
    assert (np.abs(prepare(frame, (64, 64))[32, 12].astype(int) - 60) < 20).all()  # centre square: belt there


def test_item_crop_pads_with_the_belt_colour_where_the_square_leaves_the_frame():
    frame = belt_with_item(left=6, top=100, side=150, width=400, height=300)  # item near the frame's left edge
    x0, _, x1, _ = model_box(frame, Roi(0, 0, 1, 1), crop="item")
    assert x0 == 0 and abs(x1 - round(150 * (1 + 2 * ITEM_MARGIN))) <= 16  # moved inside where it fits
    tall = belt_with_item(left=30, top=8, side=344, width=400, height=360)  # its square is taller than the frame
    _, y0, _, y1 = model_box(tall, crop="item")
    assert y0 < 0 and y1 > 360
    out = prepare(tall, (100, 100), crop="item")
    assert (np.abs(out[1, 50].astype(int) - 60) < 12).all()  # padding: the belt's colour, not black


def test_item_crop_falls_back_to_the_roi_when_nothing_stands_out():
    flat = np.full((300, 400, 3), 90, np.uint8)
    assert model_box(flat, crop="item") == center_square(400, 300)
    roi = Roi(0.5, 0.0, 0.5, 1.0)
    assert model_box(flat, roi, crop="item") == crop_box(flat, roi)


def test_a_rough_box_from_the_trigger_is_refined_against_the_belt():
    frame = belt_with_item(left=450, top=40, side=120)
    x0, y0, x1, y1 = refine(frame, (470, 60, 520, 150))  # coarse and clipped, as the trigger's can be
    assert abs(x0 - 450) <= 6 and abs(x1 - 570) <= 6 and abs(y0 - 40) <= 6 and abs(y1 - 160) <= 6
    assert refine(frame, None) is None
