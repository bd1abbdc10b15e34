"""Progress with an ETA on stderr for the long steps (calibration, validation)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


class Progress:
    """Counts ``total`` steps of one task and reports ``task done/total (pct) ETA m:ss`` every ``every`` s.

    The ETA uses the pace since the first step, so a slow start (the converter setting up) does not skew it.
    On a terminal the line is rewritten in place; elsewhere (logs, CI) one line is printed per report.
    """

    def __init__(self, task: str, total: int, stream: TextIO | None = None, every: float = 2.0) -> None:
        self.task, self.total, self.done = task, max(total, 0), 0
        self.stream = stream or sys.stderr
        self.every = every
        self._start = self._last = time.monotonic()
        self._first: float | None = None  # when the first step was done, and how many steps that was
        self._first_done = 0
        self._inline = self.stream.isatty()

    def advance(self, steps: int = 1) -> None:
        """Record ``steps`` more steps done; report if ``every`` seconds passed since the last report."""
        self.done = min(self.done + steps, self.total)
        now = time.monotonic()
        if self._first is None:
            self._first, self._first_done = now, self.done
        if now - self._last >= self.every and self.done < self.total:
            self._last = now
            self._report(now)

    def finish(self) -> None:
        """Report the task as done with its elapsed time."""
        elapsed = time.monotonic() - self._start
        self._write(f"{self.task}: {self.done}/{self.total} done in {_clock(elapsed)}", final=True)

    def _report(self, now: float) -> None:
        paced = self.done - self._first_done
        if self._first is not None and paced > 0:
            eta_text = _clock((now - self._first) / paced * (self.total - self.done))
        else:
            eta_text = "?"
        pct = 100 * self.done / self.total if self.total else 100.0
        self._write(f"{self.task}: {self.done}/{self.total} ({pct:.0f}%) ETA {eta_text}", final=False)

    def _write(self, line: str, final: bool) -> None:
        if self._inline:
            self.stream.write("\r\x1b[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
