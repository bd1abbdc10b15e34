"""Progress with an ETA on stderr for long steps (calibration, validation, benchmark runs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour on."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


class Progress:
    """``task: done/total (pct) [####----] rate/s ETA m:ss`` for ``total`` steps.

    The ETA uses the pace since the first step, so a slow start (a model being built) does not skew it. On a
    terminal the line is rewritten in place (at most 10 times a second); elsewhere (logs, CI) one line is
    written every ``every`` seconds.
    """

    def __init__(self, task: str, total: int, stream: TextIO | None = None, every: float = 2.0,
                 width: int = 20) -> None:
        self.task, self.total, self.done, self.width = task, max(total, 0), 0, width
        self.stream = stream or sys.stderr
        self.inline = self.stream.isatty()
        self.every = min(every, 0.1) if self.inline else every
        self._start = self._shown = time.monotonic()
        self._first: tuple[float, int] | None = None  # when the first step was done, and how many by then

    def advance(self, steps: int = 1, task: str | None = None) -> None:
        """Count ``steps`` more steps (of ``task``, when the label changes); redraw when it is time."""
        self.done = min(self.done + steps, self.total)
        self.task = task or self.task
        now = time.monotonic()
        if self._first is None:
            self._first = (now, self.done)
        if now - self._shown >= self.every and self.done < self.total:
            self._shown = now
            self._write(self.line(now), final=False)

    def line(self, now: float) -> str:
        """The progress line as text."""
        pct = 100 * self.done / self.total if self.total else 100.0
        filled = round(self.width * pct / 100)
        first_at, first_done = self._first or (now, self.done)
        paced, elapsed = self.done - first_done, now - first_at
        rate = paced / elapsed if paced > 0 and elapsed > 0 else 0.0
        eta = clock((self.total - self.done) / rate) if rate > 0 else "?"
        return (f"{self.task}: {self.done}/{self.total} ({pct:.0f}%) [{'#' * filled}{'-' * (self.width - filled)}] "
                f"{rate:.1f}/s ETA {eta}")

    def finish(self) -> None:
        """Report the task as done with its elapsed time."""
        elapsed = time.monotonic() - self._start
        self._write(f"{self.task}: {self.done}/{self.total} done in {clock(elapsed)}", final=True)

    def _write(self, text: str, final: bool) -> None:
        if self.inline:
            self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
