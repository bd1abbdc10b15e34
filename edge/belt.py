"""Belt scenes from photos: belt textures, items cut out of their photos, and what the camera adds.

One set of functions for the two places that put a photo of an item on a belt: training (``models.augment``,
the belt views) and the conveyor simulator (``edge.sources.conveyor``), so that both handle the item's own
photo background the same way:

- ``cut_out``: the item's mask is what stands out from the colour of the photo's border (``edge.preprocess.
  foreground``, the same test the item crop uses). When that finds no plausible item (under 4 % or over 90 %
  of the photo: a photo that the item fills, or a busy background), the whole photo is used inside a soft
  ellipse, so no hard photo edge reaches the belt. The mask's edge is feathered.
- ``belt_texture``: dark or light belts, grain, lengthwise wear streaks, seams across the belt, dirt.
- ``place``: the item scaled, rotated and blended onto the belt.
- ``camera``: motion blur along the belt (speed × exposure), light level and white balance, sensor noise,
  JPEG artefacts.
- ``belt_frame``: all of it, a camera frame of a photo's item on a random belt (``BeltConfig``): 480×360
  pixels of belt (dark two times out of three), the item at a random size (30–85 % of the frame's height),
  position (anywhere, up to a fifth of it out of the frame), rotation and mirror, motion blur 0–12 px. The
  training recipe's belt views and the converter's belt calibration images are its item crops.

All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge.preprocess import foreground

MIN_ITEM_SHARE = 0.04
MAX_ITEM_SHARE = 0.90
LIGHT_BELT_SHARE = 1 / 3  # light (PVC) belts among random ones; the others dark rubber


@dataclass(frozen=True)
class CutOut:
    """An item cut out of its photo: RGB pixels and an alpha mask (float32, 0-1), cropped to the item."""

    rgb: np.ndarray
    alpha: np.ndarray
    segmented: bool  # True: found against the photo's background; False: the whole photo in a soft ellipse


def cut_out(photo: np.ndarray) -> CutOut:
    """The item of a uint8 RGB photo with its alpha mask (see the module's docstring)."""
    height, width = photo.shape[:2]
    mask = solid(foreground(photo))
    share = float(mask.mean())
    segmented = MIN_ITEM_SHARE <= share <= MAX_ITEM_SHARE
    if segmented:
        alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(1.0, width / 150))
        ys, xs = np.nonzero(mask)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        pad = max(2, width // 60)
        x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)
        return CutOut(photo[y0:y1, x0:x1], alpha[y0:y1, x0:x1], True)
    ellipse = np.zeros((height, width), np.float32)
    cv2.ellipse(ellipse, (width // 2, height // 2), (int(width * 0.46), int(height * 0.46)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(ellipse, (0, 0), width / 25)
    return CutOut(photo, alpha, False)


def solid(mask: np.ndarray) -> np.ndarray:
    """The item's mask from a foreground mask: its large blobs, or their convex hull where they are pieces
    of a whole (under 60 % of the hull: glass and other see-through or pale items split into highlights)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count < 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.isin(labels, 1 + np.flatnonzero(areas >= areas.max() / 6)).astype(np.uint8)
    hull = np.zeros_like(keep)
    cv2.fillPoly(hull, [cv2.convexHull(cv2.findNonZero(keep))], 1)
    return hull if keep.sum() < 0.6 * hull.sum() else keep


def belt_texture(rng: np.random.Generator, width: int, height: int, light: bool | None = None) -> np.ndarray:
    """A random belt, uint8 RGB (height × width): rubber grain, lengthwise streaks, seams, dirt.

    The belt moves along x. ``light`` picks a light (PVC, grey-white) or dark (rubber) belt; None: random
    (light ``LIGHT_BELT_SHARE`` of the time).
    """
    if light is None:
        light = bool(rng.random() < LIGHT_BELT_SHARE)
    level = rng.uniform(150, 215) if light else rng.uniform(25, 95)
    tint = rng.normal(0, 6, 3) + (rng.choice([0, 1]) * np.array([-6, 8, -4]) if not light else 0)
    grain = np.asarray(cv2.GaussianBlur(rng.standard_normal((height, width), dtype=np.float32), (0, 0),
                                        rng.uniform(0.6, 2.0)), np.float32)
    grain *= rng.uniform(4, 10) / max(1e-6, float(grain.std()))
    streaks = cv2.resize(rng.standard_normal((height // 4 + 1, 1), dtype=np.float32), (width, height))
    grey = level + grain + streaks * rng.uniform(1, 6)
    for _ in range(int(rng.integers(0, 3))):  # seams across the belt
        x = int(rng.integers(0, width))
        grey[:, max(0, x - 2) : x + 2] += rng.choice([-1, 1]) * rng.uniform(8, 22)
    dirt = np.zeros((height, width), np.float32)
    for _ in range(int(rng.poisson(6))):  # dirt and scuffs
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(2, max(3, width // 40))), int(rng.integers(2, max(3, height // 40))))
        cv2.ellipse(dirt, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(-20, 20)), -1)
    rgb = (grey + cv2.GaussianBlur(dirt, (0, 0), 2))[..., None] + tint.astype(np.float32)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def transformed(item: CutOut, side_px: int, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """The item scaled so that its larger side is ``side_px`` and rotated by ``angle_deg``: (rgb, alpha),
    on a canvas just large enough to hold it."""
    height, width = item.alpha.shape
    scale = side_px / max(height, width)
    angle = math.radians(angle_deg)
    out_w = math.ceil(scale * (abs(width * math.cos(angle)) + abs(height * math.sin(angle)))) + 2
    out_h = math.ceil(scale * (abs(width * math.sin(angle)) + abs(height * math.cos(angle)))) + 2
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle_deg, scale)
    matrix[:, 2] += (out_w / 2 - width / 2, out_h / 2 - height / 2)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    rgb = cv2.warpAffine(item.rgb, matrix, (out_w, out_h), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(item.alpha, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return rgb, alpha


def place(frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, left: int, top: int) -> None:
    """Blend an item (from ``transformed``) into ``frame`` in place, its canvas's top-left at (left, top);
    parts outside the frame are cut off."""
    height, width = frame.shape[:2]
    h, w = alpha.shape
    x0, y0, x1, y1 = max(0, left), max(0, top), min(width, left + w), min(height, top + h)
    if x0 >= x1 or y0 >= y1:
        return
    a = alpha[y0 - top : y1 - top, x0 - left : x1 - left, None]
    item = rgb[y0 - top : y1 - top, x0 - left : x1 - left].astype(np.float32)
    region = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.round(region * (1 - a) + item * a).astype(np.uint8)


def motion_blur(image: np.ndarray, length_px: float) -> np.ndarray:
    """Blur along x (the belt's motion) over ``length_px`` pixels: what an exposure sees of a moving item."""
    if length_px < 1.0:
        return image
    size = math.ceil(length_px) | 1
    kernel = np.zeros((1, size), np.float32)
    kernel[0, :] = 1.0
    edge = (length_px - (size - 2)) / 2 if size > 1 else 1.0
    kernel[0, 0] = kernel[0, -1] = min(1.0, max(0.0, edge))
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE)


def light(image: np.ndarray, gain: float, white_balance: np.ndarray) -> np.ndarray:
    """The scene under another lamp: an overall ``gain`` and per-channel (R, G, B) gains."""
    factors = (gain * np.asarray(white_balance, np.float32)).reshape(1, 1, 3)
    return np.clip(image.astype(np.float32) * factors, 0, 255).astype(np.uint8)


def sensor_noise(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian read noise of standard deviation ``sigma`` grey levels."""
    if sigma <= 0:
        return image
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after a JPEG round trip at ``quality`` (artefacts of a compressed stream)."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
    return image if decoded is None else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def camera(image: np.ndarray, rng: np.random.Generator, blur_px: float) -> np.ndarray:
    """What a camera adds to a belt scene: motion blur of ``blur_px``, a random light level and white
    balance, sensor noise and (half the time) JPEG artefacts."""
    out = motion_blur(image, blur_px)
    out = light(out, rng.uniform(0.7, 1.3), rng.uniform(0.92, 1.08, 3))
    out = sensor_noise(out, rng, rng.uniform(0, 5))
    return jpeg(out, int(rng.integers(45, 95))) if rng.random() < 0.5 else out


@dataclass(frozen=True)
class BeltConfig:
    """Ranges of a belt frame (defaults are the shipped recipe's)."""

    width: int = 480
    height: int = 360
    item_side: tuple[float, float] = (0.30, 0.85)  # share of the frame's height
    out_of_frame: float = 0.2  # largest share of the item's side that may lie beyond the frame
    blur_px: tuple[float, float] = (0.0, 12.0)
    rotation_deg: tuple[float, float] = (0.0, 360.0)
    light_belt_share: float = LIGHT_BELT_SHARE
    camera_effects: bool = True  # light level, white balance, sensor noise and JPEG (motion blur: blur_px)


def belt_frame(photo: np.ndarray, rng: np.random.Generator, cfg: BeltConfig = BeltConfig()) -> np.ndarray:
    """A camera frame (uint8 RGB, cfg.height × cfg.width) of the photo's item on a random belt."""
    frame = belt_texture(rng, cfg.width, cfg.height, light=bool(rng.random() < cfg.light_belt_share))
    side = round(rng.uniform(*cfg.item_side) * cfg.height)
    item = cut_out(photo[:, ::-1] if rng.random() < 0.5 else photo)
    rgb, alpha = transformed(item, side, float(rng.uniform(*cfg.rotation_deg)))
    h, w = alpha.shape
    slack_x, slack_y = round(cfg.out_of_frame * w), round(cfg.out_of_frame * h)
    left = int(rng.integers(-slack_x, max(-slack_x + 1, cfg.width - w + slack_x)))
    top = int(rng.integers(-slack_y, max(-slack_y + 1, cfg.height - h + slack_y)))
    place(frame, rgb, alpha, left, top)
    blur_px = float(rng.uniform(*cfg.blur_px))
    return camera(frame, rng, blur_px) if cfg.camera_effects else motion_blur(frame, blur_px)
