"""What a config's frames can cost in memory at most, and whether this machine can hold it.

A frame of W×H pixels is W×H×3 bytes (with ``camera.lores``, the small stream's frame rides with it). The
sorter holds at most ``frames_held`` of them at once: the frame stream's queue and the frame being read
(``STREAM_FRAMES``), the item in the tracker (``edge.trigger.KEEP_FRAMES``, or ``sorting.votes`` if more), the
items waiting for the classifier (``edge.loop.BACKLOG`` of them) and the item being sorted, each with the
frames sorting reads (``votes`` and its first). That many are resident when the classifier falls behind, and
large frames make it fall behind. (Beyond the backlog a live camera's items are recorded late with one frame
each, until the classifier catches up or the watchdog restarts a stuck sorter.) The belt simulator
(``camera.source = "synthetic"``) adds its belt, its noise frames and its rendering
(``SIMULATOR_BYTES_PER_PX``); the web page decodes an uploaded photo of up to ``web.max_upload_pixels``
(``UPLOAD_BYTES_PER_PX``). With the process's own memory (``BASE_BYTES``: Python, LiteRT, OpenCV, the model)
this is the footprint that ``smartbin check`` and ``smartbin run`` compare with the machine's memory
(``MemTotal``), refusing a config that needs more in one line. The figures are measured in
``docs/measurements.md`` (Memory: a long run, and large frames).
"""

from __future__ import annotations

from pathlib import Path

from edge.config import Settings
from edge.errors import ConfigError
from edge.loop import BACKLOG
from edge.trigger import KEEP_FRAMES

MIB = 1024 * 1024
STREAM_FRAMES = 4  # FrameStream's queue of 2, the frame its reader waits to put, the frame the source reads
BASE_BYTES = 200 * MIB  # the sorter at 640x360 on the simulator, less its frames (measured)
SIMULATOR_BYTES_PER_PX = 42  # belt texture (2 frames wide, 6 B/px), 4 int16 noise frames (24), rendering (12)
UPLOAD_BYTES_PER_PX = 6  # the decoded BGR image and its RGB copy


def frames_held(settings: Settings) -> int:
    """The most frames the sorter holds at once (see the module's docstring)."""
    votes = settings.sorting.votes
    return STREAM_FRAMES + max(KEEP_FRAMES, votes) + (BACKLOG + 1) * (votes + 1)


def frame_bytes(settings: Settings) -> int:
    """Bytes of one frame, with its lores frame if any."""
    camera = settings.camera
    small = camera.lores[0] * camera.lores[1] * 3 if camera.lores else 0
    return camera.width * camera.height * 3 + small


def footprint(settings: Settings) -> int:
    """The most memory the sorter can need with these settings, in bytes."""
    camera = settings.camera
    total = BASE_BYTES + frames_held(settings) * frame_bytes(settings)
    if camera.source == "synthetic":
        total += camera.width * camera.height * SIMULATOR_BYTES_PER_PX
    if settings.web.enabled:
        total += settings.web.max_upload_pixels * UPLOAD_BYTES_PER_PX
    return total


def memory_total(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The machine's memory in bytes (``MemTotal``), or None where it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_footprint(settings: Settings, total: int | None = None) -> str:
    """The footprint against the machine's memory (``total``: bytes; default this machine's), as one line;
    ConfigError where the machine cannot hold it."""
    total = memory_total() if total is None else total
    need = footprint(settings)
    camera = settings.camera
    what = (f"up to {need / MIB:.0f} MiB ({frames_held(settings)} frames of {camera.width}x{camera.height} at "
            f"{frame_bytes(settings) / MIB:.1f} MiB)")
    if total is None:
        return f"{what}; machine memory unknown"
    if need > total:
        raise ConfigError(f"camera.width, camera.height: {camera.width}x{camera.height} needs {what}, more than "
                          f"this machine's {total / MIB:.0f} MiB: use a smaller camera size (or camera.lores)")
    return f"{what} of {total / MIB:.0f} MiB"
