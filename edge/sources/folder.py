"""Replay of a folder of images: flat, or one sub-folder per class (the sub-folder's name is the truth)."""

from __future__ import annotations

import logging
from pathlib import Path

from edge.errors import CameraError, ImageError
from edge.images import labelled_images, list_images, read_rgb
from edge.sources.base import Frame, FrameSource

logger = logging.getLogger(__name__)


class FolderSource(FrameSource):
    """Each image of the folder, in name order, as one frame; unreadable images are skipped with a warning, and a
    folder where none is readable is a CameraError at its end. ``photo_items``: each image is a photo of one item
    (what replaying a folder means to the sorter); False: the images are a camera's frames, grouped into items of
    ``votes`` frames and read as fast as the sorter takes them (the loop benchmark)."""

    live = False

    def __init__(self, folder: str | Path, loop: bool = False, photo_items: bool = True) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.name = str(self.folder)
        self.loop = loop
        self.photo_items = photo_items
        self.skipped: list[Path] = []
        self._items: list[tuple[Path, str | None]] = []
        self._next = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise CameraError(f"image folder not found: {self.folder}")
        flat: list[tuple[Path, str | None]] = [(p, None) for p in list_images(self.folder)]
        self._items = flat + list(labelled_images(self.folder))
        if not self._items:
            raise CameraError(f"no images in {self.folder}")

    def read(self) -> Frame | None:
        while True:
            if self._next >= len(self._items):
                if len(self.skipped) == len(self._items):
                    raise CameraError(f"no readable image in {self.folder}: all {len(self._items)} skipped")
                if not self.loop:
                    return None
                self._next = 0
            path, truth = self._items[self._next]
            self._next += 1
            try:
                return self._frame(read_rgb(path), truth)
            except ImageError as exc:
                logger.warning("skipped: %s", exc)
                if path not in self.skipped:
                    self.skipped.append(path)
