"""Frame sources with real OpenCV and real files; stalls and dead cameras become errors, not hangs."""

import itertools
import threading
import time

import cv2
import numpy as np
import pytest

from edge.config import load_settings
from edge.errors import CameraBusy, CameraError, CameraStalled
from edge.fakes import FakePicamera2
from edge.sources import FrameSource, FrameStream, is_dead, open_source
from edge.sources.conveyor import BeltSimulator
from edge.sources.folder import FolderSource
from edge.sources.opencv import OpenCVSource
from edge.sources.picamera import CameraControls, PicameraSource


def frames_of(source: FrameSource, limit: int = 100, stall: float = 5.0):
    with source:
        stream = FrameStream(source, stall).start()
        try:
            out = []
            for frame in stream:
                out.append(frame)
                if len(out) == limit:
                    break
            return out
        finally:
            stream.stop()


def test_folder_replay_with_labels_and_an_unreadable_file(tmp_path):
    for label, colour in (("glass", (0, 255, 0)), ("paper", (255, 255, 255))):
        (tmp_path / label).mkdir()
        bgr = np.zeros((20, 30, 3), np.uint8)
        bgr[:] = colour[::-1]
        cv2.imwrite(str(tmp_path / label / "a.png"), bgr)
    (tmp_path / "glass" / "broken.jpg").write_bytes(b"not a jpeg")
    source = FolderSource(tmp_path)
    frames = frames_of(source)
    assert [f.truth for f in frames] == ["glass", "paper"]
    assert [f.number for f in frames] == [0, 1]
    assert frames[0].rgb[0, 0].tolist() == [0, 255, 0] and frames[0].rgb.shape == (20, 30, 3)
    assert [p.name for p in source.skipped] == ["broken.jpg"]


def test_a_link_back_up_in_a_replayed_folder_is_no_class_and_its_photos_are_replayed_once(tmp_path, caplog):
    (tmp_path / "paper").mkdir()
    for name in ("flat.png", "paper/a.png"):
        cv2.imwrite(str(tmp_path / name), np.full((20, 30, 3), 200, np.uint8))
    (tmp_path / "loop").symlink_to(".", target_is_directory=True)
    frames = frames_of(FolderSource(tmp_path))
    assert [f.truth for f in frames] == [None, "paper"]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"skipped folder {tmp_path / 'loop'}: a symbolic link back up to {tmp_path}, not a class"]


def test_real_photo_folder(garbage12, tmp_path):
    frames = frames_of(FolderSource(garbage12 / "battery"), limit=3)
    assert len(frames) == 3 and all(f.rgb.shape == (255, 255, 3) for f in frames)


def test_video_file_frames_are_rgb(tmp_path):
    path = tmp_path / "belt.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(5):
        writer.write(np.full((48, 64, 3), (255, 0, 0), np.uint8))  # pure blue in BGR
    writer.release()
    frames = frames_of(OpenCVSource(str(path), 64, 48))
    assert len(frames) == 5
    red, green, blue = frames[0].rgb[24, 32]
    assert blue > 200 and red < 50 and green < 50


def test_missing_camera_and_missing_file_are_camera_errors(tmp_path):
    with pytest.raises(CameraError, match="cannot open"):
        OpenCVSource(str(tmp_path / "none.mp4"), 64, 48).open()
    with pytest.raises(CameraError, match="cannot open camera 9"):
        OpenCVSource(9, 64, 48).open()


def test_picamera_absent_off_a_pi_is_one_clear_line():
    with pytest.raises(CameraError, match=r"^picamera2 is not importable: on Raspberry Pi OS run `sudo apt install "
                       r"python3-picamera2` and make the venv with --system-site-packages \(setup\.sh does\)$"):
        PicameraSource(640, 480, 10).open()


def test_picamera_frames_are_rgb_at_the_configured_size_rate_and_exposure():
    scene = np.zeros((90, 160, 3), np.uint8)
    scene[:, :80] = (255, 0, 0)  # left half red, right half blue: a swapped channel order shows
    scene[:, 80:] = (0, 0, 255)
    cameras: list[FakePicamera2] = []
    source = PicameraSource(320, 180, 15.0, CameraControls(exposure_us=2000),
                            camera=lambda: cameras.append(FakePicamera2(scene)) or cameras[-1])
    frames = frames_of(source, limit=2)
    assert cameras[0].config == {"main": {"size": (320, 180), "format": "BGR888"},
                                 "controls": {"FrameRate": 15.0, "ExposureTime": 2000}}
    assert frames[0].rgb.shape == (180, 320, 3)
    assert frames[0].rgb[90, 10].tolist() == [255, 0, 0] and frames[0].rgb[90, 310].tolist() == [0, 0, 255]
    assert cameras[0].closed and not cameras[0].started


def test_a_busy_or_broken_pi_camera_is_one_line():
    with pytest.raises(CameraBusy, match="camera busy: another process holds it"):
        PicameraSource(320, 180, 15.0, camera=lambda: FakePicamera2(busy=True)).open()
    broken = FakePicamera2(fail_start=True)
    with pytest.raises(CameraError, match=r"^Pi camera failed to start: Camera frontend has timed out!$"):
        PicameraSource(320, 180, 15.0, camera=lambda: broken).open()
    assert broken.closed


def test_belt_simulator_moves_items_past_the_camera_line():
    sim = BeltSimulator(320, 180, speed_m_s=2.0, view_m=0.5, spacing_m=0.4, item_m=(0.15, 0.15), seed=3)
    frames = frames_of(sim, limit=8)
    assert not any(is_dead(f.rgb) for f in frames) and frames[0].rgb.shape == (180, 320, 3)
    assert len(sim.items) >= 2 and all(b.belt_m - a.belt_m >= 0.15 for a, b in itertools.pairwise(sim.items))
    shown = [sim.item_in(f.number) for f in frames]
    assert all(item is None or item.truth is f.truth for item, f in zip(shown, frames, strict=True))
    first = sim.items[0]
    assert first.t_line == pytest.approx(sim.t0 + (first.belt_m + 0.25) / 2.0)


def test_a_frame_is_stamped_with_the_time_its_picture_shows():
    """A scene rendered for time T (the simulator renders for the moment it was asked) is stamped T, in both
    clocks, however long the rendering took: the tracker times an item's crossing from these stamps."""

    class Rendered(FrameSource):
        def read(self):
            shown = time.monotonic() - 0.25  # as if rendering took 250 ms
            return self._frame(np.zeros((4, 4, 3), np.uint8), shown_at=shown)

    before_wall, before = time.time(), time.monotonic()
    frame = Rendered().read()
    assert before - 0.25 <= frame.monotonic <= time.monotonic() - 0.25
    assert frame.timestamp - before_wall == pytest.approx(frame.monotonic - before, abs=0.01)


def test_belt_simulator_is_deterministic():
    a = BeltSimulator(160, 90, speed_m_s=0.2, seed=5)
    b = BeltSimulator(160, 90, speed_m_s=0.2, seed=5)
    a.open(), b.open()
    b.t0 = a.t0
    assert np.array_equal(a.frame_at(a.t0 + 1.0).rgb, b.frame_at(a.t0 + 1.0).rgb)
    assert [it.belt_m for it in a.items] == [it.belt_m for it in b.items]


def run_belt(sim: BeltSimulator, items: int, frames: list, step_m: float = 0.05) -> list:
    """Render an open simulator's belt frame by frame, ``step_m`` of travel apart, on from ``frames`` (the
    frames so far), until ``items`` have been put on it."""
    while sim.added < items:
        frames.append(sim.frame_at(sim.t0 + (len(frames) + 1) * step_m / sim.speed))
    return frames


def test_belt_simulator_forgets_items_that_have_passed():
    """A long run holds the pictures of the items in view only, and the truth of the items still in flight:
    what it holds after 400 items is what it held after 40 (the embedded default once grew ~2 MB an item)."""
    sim = BeltSimulator(160, 90, speed_m_s=1.0, spacing_m=0.3, item_m=(0.1, 0.1), seed=2, forget_s=3.0)
    sim.open()
    frames = run_belt(sim, 40, [])
    early = sim.retained
    run_belt(sim, 400, frames)
    pictures, truths, shown = sim.retained
    assert sim.added >= 400 and pictures <= early[0] + 1 and pictures <= 6  # 0.5 m in view and 0.5 m ahead, 0.3 m apart
    assert truths <= early[1] + 2 and truths < 20 and shown <= early[2] + 20
    assert any(sim.item_in(f.number) is not None for f in frames[-20:])  # recent frames still answered
    assert all(sim.item_in(f.number) is None for f in frames[:20]) and sim.items[0].index > 300  # forgotten


def test_belt_simulator_for_a_tally_keeps_every_truth_but_no_pictures():
    sim = BeltSimulator(160, 90, speed_m_s=1.0, spacing_m=0.3, item_m=(0.1, 0.1), seed=2)
    sim.open()
    frames = run_belt(sim, 200, [])
    pictures, truths, _ = sim.retained
    assert pictures <= 6 and truths == sim.added and [it.index for it in sim.items] == list(range(sim.added))
    assert 0 in {sim.item_in(f.number).index for f in frames[:20] if sim.item_in(f.number) is not None}
    assert sim.items_from(150)[0].index == 150 and len(sim.items_from(150)) == sim.added - 150


def test_belt_simulator_with_real_items(garbage12):
    sim = BeltSimulator(400, 225, speed_m_s=1.0, items=garbage12, seed=1)
    frames_of(sim, limit=3)
    assert sim.items[0].truth in {p.name for p in garbage12.iterdir()}


def test_open_source_by_spec(tmp_path):
    settings = load_settings()
    assert isinstance(open_source(settings), BeltSimulator)
    assert isinstance(open_source(settings, spec="0"), OpenCVSource)
    assert isinstance(open_source(settings, spec=str(tmp_path)), FolderSource)
    assert isinstance(open_source(settings, spec="rtsp://cam/stream"), OpenCVSource)
    assert isinstance(open_source(settings, spec="picamera2"), PicameraSource)


class Hanging(FrameSource):
    """A camera whose driver call never returns after the first frame."""

    name = "hanging camera"

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def read(self):
        if self._count:
            self.release.wait(30)
        return self._frame(np.full((8, 8, 3), 9, np.uint8))


def test_stalled_camera_raises_instead_of_hanging():
    source = Hanging()
    stream = FrameStream(source, stall_timeout_s=0.3).start()
    frames = iter(stream)
    next(frames)
    started = time.monotonic()
    with pytest.raises(CameraStalled, match=r"no frame from hanging camera for 0\.3 s"):
        next(frames)
    assert time.monotonic() - started < 2
    source.release.set()
    stream.stop()


class Failing(FrameSource):
    name = "usb camera"

    def read(self):
        raise CameraError("usb camera delivered no frame")


def test_camera_failure_reaches_the_consumer():
    stream = FrameStream(Failing(), stall_timeout_s=5).start()
    with pytest.raises(CameraError, match="delivered no frame"):
        next(iter(stream))
    stream.stop()


def test_dead_frames():
    assert is_dead(np.zeros((4, 4, 3), np.uint8))
    assert is_dead(np.zeros((0, 4, 3), np.uint8))
    assert is_dead(np.zeros((4, 4), np.uint8))
    assert not is_dead(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))


def jpeg_bytes(seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (60, 80, 3), np.uint8)
    return cv2.imencode(".jpg", rgb)[1].tobytes()


def test_damaged_jpegs_are_skipped_with_one_warning_and_nothing_on_stderr(tmp_path, capfd, caplog):
    good = jpeg_bytes()
    (tmp_path / "a-good.jpg").write_bytes(good)
    (tmp_path / "b-cut.jpg").write_bytes(good[: len(good) // 2])  # a copy cut short
    (tmp_path / "c-corrupt.jpg").write_bytes(good[: len(good) // 2] + good[len(good) // 2 + 100 :])
    (tmp_path / "d-text.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    source = FolderSource(tmp_path)
    assert [f.number for f in frames_of(source)] == [0]
    assert [p.name for p in source.skipped] == ["b-cut.jpg", "c-corrupt.jpg", "d-text.png"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3 and "JPEG cut short" in warnings[0] and "damaged: Corrupt JPEG data" in warnings[1]
    assert capfd.readouterr().err == ""  # libjpeg's and OpenCV's own lines are not on stderr


def test_a_folder_with_no_readable_image_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes()[:100])
    (tmp_path / "b.png").write_bytes(b"nothing")
    with pytest.raises(CameraError, match=r"no readable image in .*: all 2 skipped"):
        frames_of(FolderSource(tmp_path))
