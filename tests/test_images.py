"""Reading images within a pixel cap: the header's size is checked before anything is decoded."""

import time

import cv2
import numpy as np
import pytest

from edge.errors import ImageError, ImageTooLarge
from edge.images import MAX_PIXELS, decode, image_size, labelled_images, read_rgb
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
