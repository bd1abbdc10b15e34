"""Reading image files as RGB arrays, and listing labelled image folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file into a uint8 RGB array of shape (H, W, 3)."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        raise ImageError(f"cannot decode image: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def labelled_images(root: str | Path) -> list[tuple[Path, str]]:
    """(image, label) pairs of a folder with one sub-folder per class, the sub-folder's name as label."""
    root = Path(root)
    return [(image, sub.name) for sub in sorted(p for p in root.iterdir() if p.is_dir()) for image in list_images(sub)]
