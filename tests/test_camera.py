"""The Pi camera for a moving belt: controls, locking on the empty belt, released requests, calibration and the
blur budget; the same contract run against the shipped Picamera2 fake and, where it is importable, the real one."""

import importlib.util
import time

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError
from edge.fakes import FakePicamera2
from edge.service.camera_calibrate import calibrate
from edge.service.checks import blur_budget
from edge.sources import camera_controls
from edge.sources.picamera import CameraControls, PicameraSource
from tests.conftest import make_settings
from tests.test_config import write

REAL = importlib.util.find_spec("picamera2") is not None


MAKERS = [pytest.param(lambda: FakePicamera2(), id="fake"),
          pytest.param(None, id="picamera2", marks=pytest.mark.skipif(
              not REAL, reason="picamera2 not importable (no Raspberry Pi OS here)"))]


@pytest.mark.parametrize("make", MAKERS)
def test_contract_frames_are_rgb_every_request_is_released_and_controls_lock_once(make):
    made = []

    def camera():
        made.append((make or __import__("picamera2").Picamera2)())
        return made[-1]

    source = PicameraSource(320, 240, 10.0, CameraControls(lock_after_s=0.2), camera=camera)
    with source:
        frame = source.read()
        assert frame.rgb.shape == (240, 320, 3) and frame.rgb.dtype.name == "uint8"
        assert source.locked is None
        time.sleep(0.25)
        source.read()
        source.read()
        locked = source.locked
        metadata = source.metadata()
    assert set(locked) == {"AeEnable", "ExposureTime", "AnalogueGain", "AwbEnable", "ColourGains"}
    assert locked["AeEnable"] is False and locked["AwbEnable"] is False
    assert metadata["ExposureTime"] == locked["ExposureTime"]  # fixed from then on
    if isinstance(made[0], FakePicamera2):
        assert made[0].open_requests == 0 and made[0].closed
        assert locked["ExposureTime"] == 8000 and locked["ColourGains"] == (1.8, 1.5)


def test_fixed_controls_are_configured_at_start_and_nothing_is_left_to_lock():
    controls = CameraControls(exposure_us=1500, analogue_gain=4.0, awb=(1.6, 1.9), lock_after_s=3)
    assert controls.at_start(30.0) == {"FrameRate": 30.0, "ExposureTime": 1500, "AnalogueGain": 4.0,
                                       "AeEnable": False, "AwbEnable": False, "ColourGains": (1.6, 1.9)}
    assert not controls.locks
    camera = FakePicamera2()
    with PicameraSource(64, 48, 30.0, controls, camera=lambda: camera) as source:
        assert source.metadata() == {"ExposureTime": 1500, "AnalogueGain": 4.0, "ColourGains": (1.6, 1.9)}
    auto = CameraControls(awb="auto")
    assert auto.locks and set(auto.to_lock(FakePicamera2.auto_metadata)) == {"AeEnable", "ExposureTime",
                                                                             "AnalogueGain"}


def test_the_config_reaches_the_camera(tmp_path):
    settings = make_settings(tmp_path, camera={"exposure_us": 2000, "analogue_gain": 3.0, "awb": [1.5, 1.7],
                                               "lock_after_s": 0.0})
    assert camera_controls(settings) == CameraControls(2000, 3.0, (1.5, 1.7), 0.0)


@pytest.mark.parametrize("line, key", [
    ('awb = "on"', "camera.awb"),
    ("awb = [0.0, 1.0]", "camera.awb"),
    ("analogue_gain = -1.0", "camera.analogue_gain"),
    ("view_m = 0.0", "camera.view_m"),
    ("exposure_us = 2000000", "camera.exposure_us"),
    ("lores = [640]", "camera.lores"),
    ("exposure = 100", "camera.exposure: unknown key"),
])
def test_bad_camera_controls_are_one_line(tmp_path, line, key):
    from edge.config import load_settings

    with pytest.raises(ConfigError, match=rf"^smartbin.toml: {key}"):
        load_settings(write(tmp_path, f"[camera]\n{line}\n"))


def test_calibrate_prints_lines_to_paste_saves_a_frame_and_names_a_shorter_exposure_when_blurred(tmp_path):
    settings = make_settings(tmp_path, camera={"source": "picamera2", "width": 1280, "height": 720},
                             conveyor={"belt_speed_m_s": 0.4})
    out = tmp_path / "calibration.jpg"
    lines = calibrate(settings, 0.1, out, camera=lambda: FakePicamera2())
    assert lines[1:5] == ["[camera]", "exposure_us = 8000", "analogue_gain = 2.00", "awb = [1.800, 1.500]"]
    assert "motion blur at 0.4 m/s: 8.2 px" in lines[5]  # 0.4 m/s × 8 ms × 2560 px/m
    assert lines[6].startswith("# over budget: exposure_us = 5859 with analogue_gain = 2.73")
    assert cv2.imread(str(out)).shape == (720, 1280, 3)
    with pytest.raises(ConfigError, match="needs picamera2"):
        calibrate(make_settings(tmp_path), 0.1, out)


def test_the_blur_budget_warns_above_the_limit(tmp_path):
    slow = make_settings(tmp_path, camera={"exposure_us": 2000}, conveyor={"belt_speed_m_s": 0.4})
    assert blur_budget(slow).startswith("motion blur 2.0 px (0.4 m/s x exposure 2000 us x 2560 px/m)")
    assert "WARNING" not in blur_budget(slow)
    fast = make_settings(tmp_path, conveyor={"belt_speed_m_s": 0.6})
    assert "WARNING: over camera.max_blur_px 6: set camera.exposure_us to 3906 or less" in blur_budget(fast)


@pytest.mark.parametrize("pi5", [False, True], ids=["pi4 YUV420", "pi5 RGB"])
def test_the_lores_stream_feeds_the_model_crop_in_rgb_on_a_pi_4_and_a_pi_5(pi5):
    scene = np.zeros((360, 640, 3), np.uint8)
    scene[:, :320] = (200, 40, 30)  # left red, right blue: a YUV or channel mix-up shows
    scene[:, 320:] = (30, 40, 200)
    camera = FakePicamera2(scene)
    with PicameraSource(1280, 720, 10.0, camera=lambda: camera, lores=(600, 338), lores_rgb=pi5) as source:
        frame = source.read()
    lores = camera.config["lores"]
    assert lores["format"] == ("BGR888" if pi5 else "YUV420")
    assert lores["size"] == ((592, 338) if pi5 else (576, 338))  # aligned as the ISP needs
    assert frame.rgb.shape == (720, 1280, 3) and frame.small.shape == (338, lores["size"][0], 3)
    left, right = frame.small[169, 20].astype(int), frame.small[169, -20].astype(int)
    assert np.abs(left - (200, 40, 30)).max() <= 6 and np.abs(right - (30, 40, 200)).max() <= 6
    assert camera.open_requests == 0
    # the model's crop is cut from the lores image at the box found on the main one: the same pixels
    box = (640, 0, 1280, 720)  # the right half, in main coordinates
    from edge.preprocess import prepare

    crop = prepare(frame.rgb, (32, 32), crop="item", box=box, small=frame.small)
    assert np.abs(crop[16, 16].astype(int) - (30, 40, 200)).max() <= 6
