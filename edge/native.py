"""Native concerns: what the TFLite runtime writes straight to file descriptor 2 while an interpreter is built
(LiteRT's INFO lines), captured instead of reaching the terminal or the journal; and handing back the pages of
a mapped model file the runtime no longer reads. Images are not decoded under the capture: their decoders
report damage per call (``edge.images``), so other threads' lines are never taken for an image's."""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_redirect = threading.Lock()  # fd 2 is the process's: one capture at a time


@contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture what is written to file descriptor 2 meanwhile into the yielded list (one entry per non-empty
    line, filled when the block ends); Python's ``sys.stderr`` is flushed first and fd 2 restored after."""
    lines: list[str] = []
    with _redirect, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line for line in sink.read().decode(errors="replace").splitlines() if line.strip())


MADV_DONTNEED = 4  # Linux: drop these pages; a later read of a file mapping reads the file again


def release_mapped_file(path: Path) -> int:
    """Hand back the resident pages of this process's mappings of ``path`` (Linux; elsewhere nothing) and return
    how many bytes were advised. After XNNPACK has packed a model's weights into its own buffers, the weights in
    the mapped ``.tflite`` are not read again: dropping them saves the model's size in RSS (24 MB for the
    shipped one) without changing an output; anything still read is paged in again from the file."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    target = str(path.resolve())
    released = 0
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == target:
            start, end = (int(value, 16) for value in fields[0].split("-"))
            if madvise(start, end - start, MADV_DONTNEED) == 0:
                released += end - start
    return released
