"""The camera's frame rate over a sliding window, for the health views (metrics, web page)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 5.0


class FrameRate:
    """``tick()`` once per frame (any thread); ``fps()`` is frames per second over the last ``window_s``
    (0 when the camera is silent)."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self) -> None:
        now = self.clock()
        with self._lock:
            self._times.append(now)
            while self._times[0] < now - self.window_s:
                self._times.popleft()

    def fps(self) -> float:
        with self._lock:
            times = [t for t in self._times if t >= self.clock() - self.window_s]
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
