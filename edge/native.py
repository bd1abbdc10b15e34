"""What native libraries write straight to file descriptor 2 (LiteRT's INFO lines, libjpeg's warnings), captured
instead of reaching the terminal or the journal, where every error would become several lines."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
