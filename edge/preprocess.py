"""The preprocessing contract: frame → crop → model input.

The model does its own normalisation (the ResNet-50 "caffe" transform lives inside the TFLite graph), so the
edge only crops and resizes and hands over uint8 RGB pixels. ``prepare`` is used by the sorting loop, the
benchmark, the converter's calibration and validation, training, "classify a photo" and the tests alike.

Two crops:

- ``roi``: the region of interest (or the centre square), as it is;
- ``item``: a square around the item (its bounding box, ``ITEM_MARGIN`` on each side), clamped to the frame
  and padded with the belt's colour where the square is larger than the frame. The box comes from the vision
  trigger (which knows the pixels that differ from the empty belt) or, for the beam trigger and stills, from
  ``locate_item``: the pixels of the region that stand out from the colour of its border (the belt), or, where
  the border is not all belt (the belt's edges or rails in view), from the rest of their row; a small item
  is looked for again at twice the resolution. When nothing stands out, the item crop falls back to the ROI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

RESIZE_METHOD = "cv2.INTER_AREA"
CENTER_SQUARE = "center-square"
ITEM_CROP = "item-square"
CropMode = Literal["item", "roi"]
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels, x1/y1 exclusive

ITEM_MARGIN = 0.12  # share of the item's larger side added on each side of the item crop
LOOKS = ((128, 0.004), (256, 0.002))  # ``locate_item``'s looks: pixels across the region, smallest item share
MIN_CONTRAST = 28.0  # smallest colour distance from the belt (0-441) that counts as "stands out"


@dataclass(frozen=True)
class Roi:
    """A region of interest as fractions of the frame: left, top, width, height, each in [0, 1]."""

    x: float
    y: float
    width: float
    height: float

    def __post_init__(self) -> None:
        if not (0 <= self.x < 1 and 0 <= self.y < 1 and 0 < self.width <= 1 and 0 < self.height <= 1):
            raise ValueError(f"ROI {self} must lie within [0, 1]")
        if self.x + self.width > 1 + 1e-9 or self.y + self.height > 1 + 1e-9:
            raise ValueError(f"ROI {self} reaches beyond the frame")

    def box(self, frame_width: int, frame_height: int) -> tuple[int, int, int, int]:
        """Pixel box (x0, y0, x1, y1) of this ROI in a frame of the given size."""
        x0, y0 = round(self.x * frame_width), round(self.y * frame_height)
        x1 = max(x0 + 1, round((self.x + self.width) * frame_width))
        y1 = max(y0 + 1, round((self.y + self.height) * frame_height))
        return x0, y0, min(x1, frame_width), min(y1, frame_height)


def center_square(frame_width: int, frame_height: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) of the largest centred square in a frame."""
    side = min(frame_width, frame_height)
    x0, y0 = (frame_width - side) // 2, (frame_height - side) // 2
    return x0, y0, x0 + side, y0 + side


def crop_box(frame: np.ndarray, roi: Roi | None = None) -> tuple[int, int, int, int]:
    """The pixel box that ``prepare`` crops: the ROI, or the centre square when none is given."""
    height, width = frame.shape[:2]
    return roi.box(width, height) if roi is not None else center_square(width, height)


def border_pixels(image: np.ndarray, width: int = 2) -> np.ndarray:
    """The values of the outer ``width``-pixel ring of an H×W(×C) image: N(×C)."""
    ring = [image[:width], image[-width:], image[width:-width, :width], image[width:-width, -width:]]
    return np.concatenate([part.reshape(-1, *image.shape[2:]) for part in ring])


def belt_colour(image: np.ndarray) -> np.ndarray:
    """The belt's colour behind an item: the per-channel median of the image's border, float32 RGB."""
    return np.median(border_pixels(image), axis=0).astype(np.float32)


def foreground(image: np.ndarray) -> np.ndarray:
    """Which pixels of an RGB image stand out from the colour of its border: a uint8 0/1 mask.

    The border's median is the belt; a pixel stands out when its colour distance from it exceeds both
    ``MIN_CONTRAST`` and 1.5 × the border's own 90th-percentile distance (a textured belt needs more).
    Holes inside an item (a label the colour of the belt) are filled; specks are opened away.
    """
    smooth = cv2.GaussianBlur(image, (3, 3), 0).astype(np.float32)
    distance = np.linalg.norm(smooth - belt_colour(smooth), axis=2)
    return standing_out(distance, border_pixels(distance))


def foreground_by_rows(image: np.ndarray) -> np.ndarray:
    """Which pixels of an RGB frame stand out from their own row: a uint8 0/1 mask.

    The belt moves along x, so what lies beside the item (the belt's edges and side rails, lengthwise streaks,
    light falling off across the belt) is the same all along a row, and a row's median is its background as
    long as the item covers less than half of it. The threshold is ``foreground``'s, taken on the frame's left
    and right edges."""
    smooth = cv2.GaussianBlur(image, (3, 3), 0).astype(np.float32)
    distance = np.linalg.norm(smooth - np.median(smooth, axis=1, keepdims=True), axis=2)
    return standing_out(distance, distance[:, [0, 1, -2, -1]])


def standing_out(distance: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The 0/1 mask of colour distances above both ``MIN_CONTRAST`` and 1.5 × the 90th percentile of
    ``background``'s, specks opened away, small gaps closed and holes filled."""
    threshold = max(MIN_CONTRAST, 1.5 * float(np.percentile(background, 90)))
    mask: np.ndarray = (distance > threshold).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return fill_holes(mask)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """A 0/1 mask with every background region that does not touch the border set to 1."""
    padded = np.pad(mask, 1)
    outside = padded.copy()
    cv2.floodFill(outside, None, (0, 0), 2)
    return (outside[1:-1, 1:-1] != 2).astype(np.uint8)


def item_box(mask: np.ndarray, min_share: float = 0.004) -> Box | None:
    """Bounding box (x0, y0, x1, y1) of the item in a 0/1 mask: the largest blob and every blob at least
    a sixth of its size (an item seen in pieces); ``None`` when less than ``min_share`` of the mask is set."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count < 2:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    if areas.max() < min_share * mask.size:
        return None
    keep = stats[1:][areas >= areas.max() / 6]
    x0, y0 = keep[:, cv2.CC_STAT_LEFT].min(), keep[:, cv2.CC_STAT_TOP].min()
    x1 = (keep[:, cv2.CC_STAT_LEFT] + keep[:, cv2.CC_STAT_WIDTH]).max()
    y1 = (keep[:, cv2.CC_STAT_TOP] + keep[:, cv2.CC_STAT_HEIGHT]).max()
    return int(x0), int(y0), int(x1), int(y1)


def locate_item(frame: np.ndarray, region: Box | None = None, tight: bool = False) -> Box | None:
    """The item's bounding box in frame pixels, found inside ``region`` (default: the whole frame), or ``None``
    when nothing stands out.

    The item is what stands out from the colour of the region's border (``foreground``), seen 128 pixels
    across. Unless the region is drawn ``tight`` around a known item (``refine``), where that finds nothing:

    - what stands out from its own row (``foreground_by_rows``: the border is not all belt, the belt's edges
      or side rails are in view); an item found so that spans more than half the region's width breaks that
      test's premise and is not taken;
    - both again, closer (``LOOKS``: 256 pixels across, half the smallest item share): a small item, of which
      only parts stand out, is lost to the coarse look's clean-up."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = region or (0, 0, width, height)
    for across, min_share in LOOKS[:1] if tight else LOOKS:
        small_size = (across, max(8, round((y1 - y0) * across / max(1, x1 - x0))))
        small = cv2.resize(frame[y0:y1, x0:x1], small_size, interpolation=cv2.INTER_AREA)
        box = item_box(foreground(small), min_share)
        if box is None and not tight:
            box = item_box(foreground_by_rows(small), min_share)
            if box is not None and box[2] - box[0] > across / 2:
                box = None
        if box is not None:
            sx, sy = (x1 - x0) / small_size[0], (y1 - y0) / small_size[1]
            return (x0 + int(box[0] * sx), y0 + int(box[1] * sy),
                    x0 + min(x1 - x0, int(np.ceil(box[2] * sx))), y0 + min(y1 - y0, int(np.ceil(box[3] * sy))))
    return None


def around(box: Box, frame_width: int, frame_height: int, grow: float = 0.5) -> Box:
    """``box`` grown by ``grow`` × its size on each side, clamped to the frame."""
    x0, y0, x1, y1 = box
    dx, dy = round((x1 - x0) * grow), round((y1 - y0) * grow)
    return max(0, x0 - dx), max(0, y0 - dy), min(frame_width, x1 + dx), min(frame_height, y1 + dy)


def item_square(box: Box, frame_width: int, frame_height: int, margin: float = ITEM_MARGIN) -> Box:
    """A square around ``box`` with ``margin`` × its larger side on each side, moved inside the frame where
    it fits; a square larger than the frame keeps the item centred and reaches beyond it (to be padded)."""
    bx0, by0, bx1, by1 = box
    side = max(2, round(max(bx1 - bx0, by1 - by0) * (1 + 2 * margin)))

    def place(low: int, high: int, limit: int) -> int:
        start = round((low + high - side) / 2)
        return start if side > limit else min(max(0, start), limit - side)

    x0, y0 = place(bx0, bx1, frame_width), place(by0, by1, frame_height)
    return x0, y0, x0 + side, y0 + side


def crop_padded(frame: np.ndarray, box: Box) -> np.ndarray:
    """``frame[box]``, with the parts of ``box`` beyond the frame filled with the belt's colour."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = box
    inside = frame[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    pads = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    if not any(pads):
        return inside
    fill = tuple(float(c) for c in belt_colour(frame))
    return cv2.copyMakeBorder(inside, *pads, cv2.BORDER_CONSTANT, value=fill)


def model_box(frame: np.ndarray, roi: Roi | None = None, crop: CropMode = "roi", box: Box | None = None) -> Box:
    """The pixel box ``prepare`` crops (an item square may reach beyond the frame).

    ``crop="roi"``: the ROI (or the centre square). ``crop="item"``: the square around the item's bounding
    box: ``box`` when the caller knows it, else located in the ROI against the belt's colour; the ROI when
    nothing stands out.
    """
    height, width = frame.shape[:2]
    region = crop_box(frame, roi)
    if crop == "item":
        box = box or locate_item(frame, region)
        if box is not None:
            return item_square(box, width, height)
    return region


def refine(frame: np.ndarray, rough: Box | None) -> Box | None:
    """The item's box located against the belt around a rough box (the vision trigger's, which is coarse and
    ends at the ROI's edge), or the rough box when nothing stands out there.

    The search region grows (½, 1, 2 × the box on each side) until the item found there does not touch the
    region's edge inside the frame: a region whose border cuts through the item would misjudge the belt."""
    if rough is None:
        return None
    height, width = frame.shape[:2]
    found = None
    for grow in (0.5, 1.0, 2.0):
        region = around(rough, width, height, grow)
        found = locate_item(frame, region, tight=True)
        if found is not None and not touches(found, region, width, height):
            return found
    return found or rough


def touches(box: Box, region: Box, frame_width: int, frame_height: int) -> bool:
    """Whether ``box`` reaches an edge of ``region`` that is not an edge of the frame."""
    inner = [(box[0] <= region[0], region[0] > 0), (box[1] <= region[1], region[1] > 0),
             (box[2] >= region[2], region[2] < frame_width), (box[3] >= region[3], region[3] < frame_height)]
    return any(reaches and inside for reaches, inside in inner)


def prepare(
    frame: np.ndarray,
    size: tuple[int, int],
    roi: Roi | None = None,
    crop: CropMode = "roi",
    box: Box | None = None,
    small: np.ndarray | None = None,
) -> np.ndarray:
    """Crop ``frame`` (uint8 RGB, H×W×3) to ``model_box`` and resize it to ``size`` = (width, height) with
    INTER_AREA. Returns C-contiguous uint8 RGB (height, width, 3), ready for the model's input. ``small``: the
    same view at a lower resolution (the Pi camera's lores stream): the box found on ``frame`` is cut from it
    instead, so that no full-size pixels are resized."""
    for image in (frame, small) if small is not None else (frame,):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a uint8 H×W×3 RGB frame, got {image.dtype} {image.shape}")
    region = model_box(frame, roi, crop, box)
    if small is not None:
        region = scale_box(region, frame.shape, small.shape)
        frame = small
    pixels = crop_padded(frame, region)
    return np.ascontiguousarray(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA))


def still_input(frame: np.ndarray, size: tuple[int, int], roi: Roi | None = None, crop: CropMode = "item"
                ) -> np.ndarray:
    """The model input of a still handed in as a camera frame (``prepare`` with ``crop``): with the item crop,
    the item is located against the belt's colour anywhere in the frame, or in the ROI if one is given."""
    box = locate_item(frame, crop_box(frame, roi) if roi else None) if crop == "item" else None
    return prepare(frame, size, roi, crop, box)


def scale_box(box: Box, shape: tuple[int, ...], to: tuple[int, ...]) -> Box:
    """``box`` of an image of ``shape`` in the coordinates of the same view at ``to`` (rows, columns)."""
    sy, sx = to[0] / shape[0], to[1] / shape[1]
    x0, y0, x1, y1 = box
    return round(x0 * sx), round(y0 * sy), max(round(x0 * sx) + 1, round(x1 * sx)), \
        max(round(y0 * sy) + 1, round(y1 * sy))
