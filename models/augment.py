"""Training views of a photo: the clean view, seeded augmented photo views, and belt views.

Every view goes through ``edge.preprocess.prepare`` (crop + cv2.INTER_AREA resize to 224), so training sees
exactly the pixels the edge and the converter see. Three kinds of view:

- ``clean``: the photo's centre square, as "classify a photo" sees a photo;
- ``photo``: the photo augmented (below);
- ``belt``: the photo's item cut out and put on a random belt, as a camera frame (``belt_frame``), then the
  edge's item crop (``prepare(..., crop="item")``): what the sorter sees on a belt.

Photo augmentation is split around ``prepare``:

- before ``prepare``, on the original photo: a random crop (area 55–100 %, aspect 3:4–4:3), passed to
  ``prepare`` as its ROI: the same crop-and-resize code path, just another box;
- after ``prepare``, on the 224×224 uint8 image: flips (horizontal, vertical), rotation (±30°) and shear (±10°)
  as one affine warp with reflected borders, then light jitter for a belt under other lamps: brightness,
  contrast, saturation, hue, and a per-channel gain (white balance).

A belt frame is ``edge.belt.belt_frame`` (shared with the converter's calibration; its parts with the
simulator).

A view is a pure function of (photo, kind, seed, view, index): ``rng = default_rng([seed, view, index])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from edge.belt import BeltConfig, belt_frame
from edge.preprocess import Roi, locate_item, prepare

SIZE = (224, 224)
ViewKind = Literal["clean", "photo", "belt"]


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms (defaults are the shipped recipe's)."""

    crop_area: tuple[float, float] = (0.55, 1.0)
    crop_aspect: tuple[float, float] = (3 / 4, 4 / 3)
    rotation_deg: float = 30.0
    shear_deg: float = 10.0
    hflip: float = 0.5
    vflip: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    hue_deg: float = 8.0
    channel_gain: float = 0.08


def clean_view(photo: np.ndarray) -> np.ndarray:
    """The view the edge sees: centre square, INTER_AREA to 224×224, uint8 RGB."""
    return prepare(photo, SIZE)


def random_roi(rng: np.random.Generator, cfg: AugmentConfig) -> Roi:
    """A random crop box of the centre square's proportions, as fractions of the frame."""
    area = rng.uniform(*cfg.crop_area)
    aspect = math.exp(rng.uniform(math.log(cfg.crop_aspect[0]), math.log(cfg.crop_aspect[1])))
    width, height = min(1.0, math.sqrt(area * aspect)), min(1.0, math.sqrt(area / aspect))
    return Roi(rng.uniform(0, 1 - width), rng.uniform(0, 1 - height), width, height)


def geometric(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Flips, rotation and shear about the centre, one warp, reflected borders."""
    if rng.random() < cfg.hflip:
        image = image[:, ::-1]
    if rng.random() < cfg.vflip:
        image = image[::-1]
    angle = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    shear = math.tan(math.radians(rng.uniform(-cfg.shear_deg, cfg.shear_deg)))
    rotate = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    linear = rotate @ np.array([[1.0, shear], [0.0, 1.0]])
    height, width = image.shape[:2]
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    matrix = np.hstack([linear, (centre - linear @ centre)[:, None]])
    return cv2.warpAffine(
        np.ascontiguousarray(image), matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def photometric(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Brightness, contrast, saturation, hue and white-balance jitter of a uint8 RGB image."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-cfg.hue_deg, cfg.hue_deg) * 256 / 360) % 256
    hsv[..., 1] *= rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    rgb = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
    mean = rgb.mean()
    rgb = (rgb - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    rgb *= rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    rgb *= rng.uniform(1 - cfg.channel_gain, 1 + cfg.channel_gain, size=3)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def augmented_view(photo: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """One random training view of a uint8 RGB photo, 224×224 uint8 RGB."""
    image = prepare(photo, SIZE, random_roi(rng, cfg))
    return photometric(geometric(image, rng, cfg), rng, cfg)


DEFAULT_BELT = BeltConfig()


def belt_view(photo: np.ndarray, rng: np.random.Generator, cfg: BeltConfig = DEFAULT_BELT) -> np.ndarray:
    """The edge's item crop of a random belt frame of the photo, 224×224 uint8 RGB.

    A frame where the crop finds no item (a dark item on a dark belt: the sorter's trigger would not see it
    either) is drawn again, up to three times."""
    for _ in range(3):
        frame = belt_frame(photo, rng, cfg)
        box = locate_item(frame)
        if box is not None:
            break
    return prepare(frame, SIZE, crop="item", box=box)


def view(photo: np.ndarray, kind: ViewKind, seed: int, view_index: int, image_index: int,
         belt: BeltConfig = DEFAULT_BELT) -> np.ndarray:
    """One view of a photo: ``clean``, or ``photo`` / ``belt`` (on ``belt``'s ranges) drawn with
    ``default_rng([seed, view, index])``."""
    if kind == "clean":
        return clean_view(photo)
    rng = np.random.default_rng([seed, view_index, image_index])
    return augmented_view(photo, rng) if kind == "photo" else belt_view(photo, rng, belt)
