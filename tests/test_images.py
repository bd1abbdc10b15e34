"""Reading images within a pixel cap: the header's size is checked before anything is decoded; damage is judged
per decode, whatever other threads write to stderr meanwhile."""

import os
import struct
import threading
import time

import cv2
import numpy as np
import pytest

from edge.errors import ImageError, ImageTooLarge
from edge.images import MAX_PIXELS, decode, image_size, labelled_images, read_rgb
from tests.test_sources import jpeg_bytes
from tools.faults import png_bomb


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp"])
def test_the_header_gives_the_size_of_every_format_smartbin_reads(ext):
    ok, data = cv2.imencode(ext, np.zeros((37, 53, 3), np.uint8))
    assert ok and image_size(data.tobytes()) == (53, 37)


def test_a_decompression_bomb_is_refused_from_its_header_before_decoding(tmp_path):
    bomb = png_bomb()
    assert len(bomb) < 1_000_000
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=r"^image too large: upload.png is 30000×30000 pixels, over the cap of 40"):
        decode(bomb, "upload.png")
    assert time.perf_counter() - started < 0.5  # nothing was decoded
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(ImageTooLarge):
        read_rgb(tmp_path / "bomb.png")
    assert MAX_PIXELS < 30000 * 30000


def test_small_images_decode_and_unknown_formats_are_not_decoded(tmp_path):
    _, data = cv2.imencode(".png", np.full((20, 30, 3), (10, 20, 30), np.uint8))
    assert decode(data.tobytes())[0, 0].tolist() == [30, 20, 10]  # RGB
    with pytest.raises(ImageError, match="not a readable JPEG, PNG, BMP or WebP header"):
        decode(b"GIF89a" + b"\0" * 100)
    with pytest.raises(ImageError, match="cannot decode image"):
        read_rgb(tmp_path / "missing.jpg")


def test_symbolic_links_back_up_or_in_a_loop_are_no_class_and_warn_once_each(tmp_path, caplog):
    photos = tmp_path / "photos"
    elsewhere = tmp_path / "elsewhere" / "metal"
    for folder in (photos / "glass", elsewhere):
        folder.mkdir(parents=True)
        cv2.imwrite(str(folder / "a.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(photos / "flat.png"), np.zeros((4, 4, 3), np.uint8))
    (photos / "loop").symlink_to(".", target_is_directory=True)
    (photos / "up").symlink_to("..", target_is_directory=True)
    (photos / "glass" / "back").symlink_to("..", target_is_directory=True)  # inside a class: not listed
    (photos / "metal").symlink_to(elsewhere, target_is_directory=True)  # a data set linked in place: a class
    (photos / "x").symlink_to("y")
    (photos / "y").symlink_to("x")
    (photos / "gone").symlink_to("nothing")
    assert labelled_images(photos) == [(photos / "glass" / "a.png", "glass"), (photos / "metal" / "a.png", "metal")]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"skipped folder {photos / 'loop'}: a symbolic link back up to {photos}, not a class",
        f"skipped folder {photos / 'up'}: a symbolic link back up to {tmp_path}, not a class",
        f"skipped folder {photos / 'x'}: a loop of symbolic links, not a class",
        f"skipped folder {photos / 'y'}: a loop of symbolic links, not a class"]


def with_orientation(jpeg: bytes, orientation: int, order: str) -> bytes:
    """``jpeg`` with an EXIF block (byte order ``order``, II or MM) whose only tag is its orientation."""
    e = "<" if order == "II" else ">"
    tiff = order.encode() + struct.pack(e + "HIH", 42, 8, 1) + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0)
    payload = b"Exif\0\0" + tiff + b"\0\0\0\0"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


@pytest.mark.parametrize("order", ["II", "MM"])
def test_a_jpegs_exif_orientation_is_applied_as_opencv_does(order):
    plain = jpeg_bytes()  # 60×80
    for orientation in range(1, 9):
        data = with_orientation(plain, orientation, order)
        opencv = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        ours = decode(data)
        assert ours.shape == ((60, 80, 3) if orientation < 5 else (80, 60, 3)), orientation
        assert np.array_equal(ours, opencv) and ours.flags.c_contiguous, orientation


def spam_stderr(stop: threading.Event) -> int:
    """Write libcamera-like lines straight to file descriptor 2 until ``stop``, as a Pi's camera thread does;
    returns how many."""
    lines = 0
    while not stop.is_set():
        os.write(2, b"[0:01:02.345678901] [1234] WARN RPI pipeline_base.cpp:1234 frame dropped\n")
        lines += 1
    return lines


def test_valid_jpegs_decode_while_another_thread_writes_to_stderr_and_its_lines_reach_stderr(capfd):
    rng = np.random.default_rng(3)
    photos = [cv2.imencode(".jpg", rng.integers(0, 256, (600, 800, 3), np.uint8))[1].tobytes() for _ in range(20)]
    good = jpeg_bytes()
    stop = threading.Event()
    written: list[int] = []
    spammer = threading.Thread(target=lambda: written.append(spam_stderr(stop)))
    spammer.start()
    try:
        time.sleep(0.01)
        decoded = [decode(data, f"photo{n}.jpg") for n, data in enumerate(photos)]
        with pytest.raises(ImageError, match=r"cut\.jpg \(JPEG cut short: no end marker\)"):
            decode(good[: len(good) // 2], "cut.jpg")
        with pytest.raises(ImageError, match=r"corrupt\.jpg \(damaged: Corrupt JPEG data: \d+ extraneous bytes"):
            decode(good[: len(good) // 2] + good[len(good) // 2 + 100 :], "corrupt.jpg")
    finally:
        stop.set()
        spammer.join()
    assert len(decoded) == 20 and all(rgb.shape == (600, 800, 3) for rgb in decoded)
    err = capfd.readouterr().err
    assert written[0] > 0 and err.count("WARN RPI pipeline_base.cpp:1234 frame dropped\n") == written[0]
    assert "Corrupt JPEG" not in err  # the decoder's own warning is the error above, not a line on stderr


def test_a_small_decode_in_one_thread_is_not_held_up_by_a_large_one_in_another():
    large = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 256, (3000, 4000, 3), np.uint8))[1].tobytes()
    small = jpeg_bytes()
    started = threading.Event()
    large_s: list[float] = []

    def decode_large() -> None:
        started.set()
        began = time.perf_counter()
        decode(large)
        large_s.append(time.perf_counter() - began)

    worker = threading.Thread(target=decode_large)
    worker.start()
    started.wait()
    time.sleep(0.02)  # the large decode is under way (12 megapixels: a few hundred ms)
    began = time.perf_counter()
    decode(small)
    small_s = time.perf_counter() - began
    worker.join()
    assert small_s < large_s[0] / 10, (small_s, large_s)  # under one lock it would wait for most of the large one


def test_a_png_cut_short_or_failing_a_crc_is_refused_in_one_line(capfd):
    data = cv2.imencode(".png", np.random.default_rng(2).integers(0, 256, (60, 80, 3), np.uint8))[1].tobytes()
    assert decode(data).shape == (60, 80, 3)
    with pytest.raises(ImageError, match=r"^cannot decode image: cut\.png \(PNG cut short: no IEND chunk\)$"):
        decode(data[:-20], "cut.png")
    flipped = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
    with pytest.raises(ImageError, match=r"^cannot decode image: bad\.png \(damaged: PNG chunk IDAT fails its CRC\)$"):
        decode(flipped, "bad.png")
    assert capfd.readouterr().err == ""  # libpng never got to print its own error


def test_jpeg_pixels_equal_opencvs_on_real_photos(garbage12):
    photos = [path for label in sorted(garbage12.iterdir()) for path in sorted(label.glob("*.jpg"))[:5]]
    assert len(photos) == 60
    for path in photos:
        opencv = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(read_rgb(path), opencv), path
