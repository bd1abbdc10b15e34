"""A progress bar with an ETA on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour on."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


class ProgressBar:
    """``label [#####-----] done/total  rate/s  ETA m:ss`` for ``total`` steps.

    The ETA uses the pace of the steps done so far in this bar. On a terminal the line is rewritten in place
    (at most 10 times a second); elsewhere (logs, CI) one line is written every ``every_s`` seconds.
    """

    def __init__(self, total: int, stream: TextIO | None = None, every_s: float = 10.0, width: int = 24) -> None:
        self.total, self.done, self.width = max(total, 1), 0, width
        self.stream = stream or sys.stderr
        self.inline = self.stream.isatty()
        self.every_s = 0.1 if self.inline else every_s
        self.started = self._shown = time.monotonic()

    def advance(self, label: str, steps: int = 1) -> None:
        """Count ``steps`` more steps of the task ``label``; redraw when it is time."""
        self.done = min(self.done + steps, self.total)
        now = time.monotonic()
        if now - self._shown >= self.every_s:
            self._shown = now
            self._write(self.line(label, now), final=False)

    def line(self, label: str, now: float) -> str:
        """The bar as text."""
        elapsed = now - self.started
        filled = round(self.width * self.done / self.total)
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = clock((self.total - self.done) / rate) if rate > 0 else "?"
        return (f"{label} [{'#' * filled}{'-' * (self.width - filled)}] {self.done}/{self.total} "
                f"{rate:.1f}/s ETA {eta}")

    def close(self) -> None:
        """Finish the bar with the elapsed time."""
        self._write(f"{self.done} image runs in {clock(time.monotonic() - self.started)}", final=True)

    def _write(self, text: str, final: bool) -> None:
        if self.inline:
            self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
