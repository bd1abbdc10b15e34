"""Reading images as RGB arrays, within a pixel cap, and listing labelled image folders.

OpenCV decodes whatever size a file's header claims: a 2.7 MB PNG of 30000×30000 pixels becomes 2.7 GB. So
the header's dimensions are read first (JPEG, PNG, BMP, WebP: the formats smartbin reads), and an image over
``max_pixels`` (default ``MAX_PIXELS``, 40 megapixels: a 12 MP camera frame passes) is refused with one line
before anything is decoded. A format whose header cannot be read is not decoded at all. A damaged file is
refused rather than used half decoded, judged by the call that decodes it, whatever other threads print: a
JPEG without its end marker (cut short), or one libjpeg warns about while decoding (``Corrupt JPEG data …``:
simplejpeg, libjpeg-turbo as OpenCV's, raises it for that call; its EXIF orientation is applied as OpenCV does);
a PNG cut short (no ``IEND`` chunk) or with a chunk that fails its CRC; any image OpenCV cannot decode. OpenCV's
own log is off.

A labelled folder has one sub-folder per class. A sub-folder that is a symbolic link back up to the folder or
above it (``loop -> .``: its photos would be read again as a class named ``loop``) or a loop of links is no class:
skipped with one warning. A link to a folder elsewhere is a class (a data set linked in place).
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import simplejpeg

from edge.errors import ImageError, ImageTooLarge

logger = logging.getLogger(__name__)

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # no "[ERROR:0@…]" lines: errors are ours

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
MAX_PIXELS = 40_000_000
HEADER_BYTES = 1 << 16  # enough to reach a JPEG's frame header past its EXIF block in almost every file
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15 but DHT, JPG, DAC
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a JPEG, PNG, BMP or WebP file; None if unknown or unreadable."""
    if head.startswith(PNG_SIGNATURE) and len(head) >= 24:
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


def _jpeg_segments(head: bytes) -> Iterator[tuple[int, int]]:
    """(marker, offset) of each JPEG segment with a length in ``head``, up to the first that cannot be read."""
    at = 2
    while at + 4 <= len(head):
        if head[at] != 0xFF:
            return
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
        else:
            yield marker, at
            at += 2 + struct.unpack(">H", head[at + 2 : at + 4])[0]


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    for marker, at in _jpeg_segments(head):
        if marker in _JPEG_FRAMES:
            if at + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return width, height
    return None


def _jpeg_orientation(head: bytes) -> int:
    """The EXIF orientation (1 to 8) in the first bytes of a JPEG; 1 (as stored) when there is none."""
    for marker, at in _jpeg_segments(head):
        if marker == 0xDA:  # start of scan: no metadata after it
            break
        if marker == 0xE1 and head[at + 4 : at + 10] == b"Exif\0\0":
            return _tiff_orientation(head[at + 10 : at + 2 + struct.unpack(">H", head[at + 2 : at + 4])[0]])
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = struct.unpack(order + "I", tiff[4:8])[0]
    count = struct.unpack(order + "H", tiff[ifd : ifd + 2])[0] if ifd + 2 <= len(tiff) else 0
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        tag, _, _, value = struct.unpack(order + "HHIH", tiff[entry : entry + 10])
        if tag == 0x0112:
            return value if 1 <= value <= 8 else 1
    return 1


def _oriented(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """``rgb`` turned upright for its EXIF ``orientation``, as OpenCV's ``imdecode`` does (C-contiguous)."""
    if orientation >= 5:  # 5 to 8: rows and columns swapped, then flipped as 1 to 4
        rgb, orientation = rgb.transpose(1, 0, 2), orientation - 4
    rows = -1 if orientation in (3, 4) else 1
    columns = -1 if orientation in (2, 3) else 1
    return np.ascontiguousarray(rgb[::rows, ::columns])


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
    is damaged (a JPEG cut short or one the decoder warns about, a PNG cut short or failing a CRC)."""
    check_size(data[:HEADER_BYTES], max_pixels, name)
    if data.startswith(b"\xff\xd8"):
        return _decode_jpeg(data, name)
    if data.startswith(PNG_SIGNATURE):
        _check_png(data, name)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"cannot decode image: {name}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_jpeg(data: bytes, name: str) -> np.ndarray:
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageError(f"cannot decode image: {name} (JPEG cut short: no end marker)")
    try:  # strict: a warning of libjpeg while decoding this very call raises, nothing goes to stderr
        rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as exc:
        raise ImageError(f"cannot decode image: {name} (damaged: {exc})") from None
    return _oriented(rgb, _jpeg_orientation(data[:HEADER_BYTES]))


def _check_png(data: bytes, name: str) -> None:
    """ImageError unless every chunk up to ``IEND`` is whole and passes its CRC (libpng would print its own
    error for a damaged one to stderr, and the decode would fail anyway)."""
    view = memoryview(data)
    at = len(PNG_SIGNATURE)
    while at + 12 <= len(data):
        length, kind = struct.unpack(">I4s", view[at : at + 8])
        end = at + 12 + length
        if end > len(data):
            break
        if zlib.crc32(view[at + 4 : end - 4]) != struct.unpack(">I", view[end - 4 : end])[0]:
            raise ImageError(f"cannot decode image: {name} (damaged: PNG chunk {kind.decode(errors='replace')} "
                             "fails its CRC)")
        if kind == b"IEND":
            return
        at = end
    raise ImageError(f"cannot decode image: {name} (PNG cut short: no IEND chunk)")


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
