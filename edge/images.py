"""Reading images as RGB arrays, within a pixel cap, and listing labelled image folders.

OpenCV decodes whatever size a file's header claims: a 2.7 MB PNG of 30000×30000 pixels becomes 2.7 GB. So
the header's dimensions are read first (JPEG, PNG, BMP, WebP: the formats smartbin reads), and an image over
``max_pixels`` (default ``MAX_PIXELS``, 40 megapixels: a 12 MP camera frame passes) is refused with one line
before anything is decoded. A format whose header cannot be read is not decoded at all. A damaged file is
refused rather than used half decoded: a JPEG without its end marker (cut short), or one that libjpeg warns
about while decoding (``Corrupt JPEG data …``, captured instead of reaching stderr). OpenCV's own log is off.

A labelled folder has one sub-folder per class. A sub-folder that is a symbolic link back up to the folder or
above it (``loop -> .``: its photos would be read again as a class named ``loop``) or a loop of links is no class:
skipped with one warning. A link to a folder elsewhere is a class (a data set linked in place).
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import cv2
import numpy as np

from edge.errors import ImageError, ImageTooLarge
from edge.native import captured_stderr

logger = logging.getLogger(__name__)

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # no "[ERROR:0@…]" lines: errors are ours

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
MAX_PIXELS = 40_000_000
HEADER_BYTES = 1 << 16  # enough to reach a JPEG's frame header past its EXIF block in almost every file
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15 but DHT, JPG, DAC


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a JPEG, PNG, BMP or WebP file; None if unknown or unreadable."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP" and len(head) >= 30:
        return _webp_size(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _JPEG_FRAMES:
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return width, height
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        at += 2 + struct.unpack(">H", head[at + 2 : at + 4])[0]
    return None


def check_size(head: bytes, max_pixels: int, name: str) -> None:
    """Raise ImageError unless the header gives a size within ``max_pixels`` (ImageTooLarge if over it)."""
    size = image_size(head)
    if size is None:
        raise ImageError(f"cannot decode image: {name} (not a readable JPEG, PNG, BMP or WebP header)")
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLarge(f"image too large: {name} is {width}×{height} pixels, over the cap of "
                            f"{max_pixels / 1e6:g} megapixels")


def decode(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes as uint8 RGB (H, W, 3), the size checked first; ImageError if it is none, or if it
    is damaged (a JPEG cut short or one the decoder warns about)."""
    check_size(data[:HEADER_BYTES], max_pixels, name)
    jpeg = data.startswith(b"\xff\xd8")
    if jpeg and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageError(f"cannot decode image: {name} (JPEG cut short: no end marker)")
    with captured_stderr() as messages:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"cannot decode image: {name}")
    if messages:
        raise ImageError(f"cannot decode image: {name} (damaged: {messages[0]})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_rgb(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file into a uint8 RGB array of shape (H, W, 3), within ``max_pixels``."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        raise ImageError(f"cannot decode image: {path}") from None
    return decode(data, str(path), max_pixels)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def class_folders(root: str | Path) -> list[Path]:
    """The class sub-folders of ``root``, sorted by name; a link back up or a loop of links skipped with a warning."""
    root = Path(root)
    top = root.resolve()
    folders = []
    for sub in sorted(root.iterdir()):
        if not sub.is_symlink():
            if sub.is_dir():
                folders.append(sub)
            continue
        try:
            target = sub.resolve(strict=True)
        except FileNotFoundError:  # a dangling link: nothing there
            continue
        except (OSError, RuntimeError):  # Python 3.11 and 3.12 raise RuntimeError on a loop, 3.13 OSError
            logger.warning("skipped folder %s: a loop of symbolic links, not a class", sub)
            continue
        if top.is_relative_to(target):
            logger.warning("skipped folder %s: a symbolic link back up to %s, not a class", sub, target)
        elif target.is_dir():
            folders.append(sub)
    return folders


def labelled_images(root: str | Path) -> list[tuple[Path, str]]:
    """(image, label) pairs of a folder with one sub-folder per class, the sub-folder's name as label."""
    return [(image, sub.name) for sub in class_folders(root) for image in list_images(sub)]
