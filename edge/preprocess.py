"""The preprocessing contract: frame → region of interest → model input.

The model does its own normalisation (the ResNet-50 "caffe" transform lives inside the TFLite graph), so the
edge only crops and resizes and hands over uint8 RGB pixels. This one function is used by the sorting loop,
the benchmark, the converter's calibration and validation, and the tests alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

RESIZE_METHOD = "cv2.INTER_AREA"
CENTER_SQUARE = "center-square"


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


def prepare(frame: np.ndarray, size: tuple[int, int], roi: Roi | None = None) -> np.ndarray:
    """Crop ``frame`` (uint8 RGB, H×W×3) to ``roi`` and resize it to ``size`` = (width, height).

    Returns a C-contiguous uint8 RGB array of shape (height, width, 3), ready for the model's input.
    """
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected a uint8 H×W×3 RGB frame, got {frame.dtype} {frame.shape}")
    x0, y0, x1, y1 = crop_box(frame, roi)
    crop = frame[y0:y1, x0:x1]
    return np.ascontiguousarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
