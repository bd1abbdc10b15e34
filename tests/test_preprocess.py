import cv2
import numpy as np
import pytest

from edge.preprocess import Roi, center_square, crop_box, prepare


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
