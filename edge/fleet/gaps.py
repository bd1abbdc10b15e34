"""Finding the items a consumer missed: per bin, item ids are consecutive, so a gap is a lost message.

A broker that crashes can lose messages it had acknowledged but not yet stored or delivered. A consumer that
needs every item (``smartbin fleet collect``) tracks, per bin, the next id it expects; when a later id arrives
(a gap), or the bin's telemetry names a newer last item (a gap at the end), it asks the bin to send again from
the first missing id on ``PREFIX/BIN_ID/resend`` (``{"from": id}``), at most every ``every_s`` per bin. The bin
moves its cursor back and publishes from there; the repeats are dropped by ``(bin_id, id)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class GapTracker:
    """Per bin: the next id expected, the ids received beyond it, when a resend was last asked for."""

    def __init__(self, every_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self.expected: dict[str, int] = {}
        self._beyond: dict[str, set[int]] = {}
        self._asked: dict[str, float] = {}

    def start(self, bin_id: str, next_id: int) -> None:
        """Expect ``next_id`` next from ``bin_id`` (e.g. one past what a database already holds)."""
        self.expected[bin_id] = next_id
        self._beyond[bin_id] = set()

    def seen(self, bin_id: str, item_id: int) -> int | None:
        """Note an item; returns the id to resend from if this one shows a gap (and it is time to ask)."""
        if bin_id not in self.expected:
            self.start(bin_id, item_id)
        beyond = self._beyond[bin_id]
        if item_id == self.expected[bin_id]:
            nxt = item_id + 1
            while nxt in beyond:
                beyond.discard(nxt)
                nxt += 1
            self.expected[bin_id] = nxt
            return None
        if item_id > self.expected[bin_id]:
            beyond.add(item_id)
            return self._ask(bin_id)
        return None  # a repeat

    def latest(self, bin_id: str, last_id: int) -> int | None:
        """The bin says its newest item is ``last_id``: the id to resend from if some are still missing."""
        if bin_id in self.expected and last_id >= self.expected[bin_id]:
            return self._ask(bin_id)
        return None

    def _ask(self, bin_id: str) -> int | None:
        now = self.clock()
        if now - self._asked.get(bin_id, -1e9) < self.every_s:
            return None
        self._asked[bin_id] = now
        return self.expected[bin_id]
