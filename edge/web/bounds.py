"""Bounds on the web port's connections: what keeps a flood of clients from taking the sorter's resources.

uvicorn's h11 protocol with two additions. At most ``max_connections`` are open: a newcomer over the limit
closes the oldest idle one (no request in progress; half-open floods are all idle), or itself when every
connection is busy. Every connection must send a complete request head within ``request_timeout_s`` of being
opened or of its last response (uvicorn's keep-alive time-out alone does not cover a head sent byte by byte).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


def bounded_protocol(max_connections: int, request_timeout_s: float) -> type[H11Protocol]:
    """An ``H11Protocol`` class bound to these limits (uvicorn takes the class as ``http``)."""

    class BoundedH11(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._opened = 0.0
            self._head_timer: asyncio.TimerHandle | None = None
            self._waiting_after: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._opened = self.loop.time()
            self._expect_head()
            open_now = [c for c in self.connections if not c.transport.is_closing()]  # aborted ones linger a moment
            if len(open_now) > max_connections:
                idle = [c for c in open_now if c is not self and isinstance(c, BoundedH11) and c.idle]
                victim = min(idle, key=lambda c: c._opened) if idle else self
                victim.transport.abort()

        @property
        def idle(self) -> bool:
            """No request in progress: waiting for a first or next request head."""
            return self.cycle is None or self.cycle.response_complete

        def _expect_head(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._waiting_after = self.cycle
            self._head_timer = self.loop.call_later(request_timeout_s, self._head_overdue)

        def _head_overdue(self) -> None:
            if self.cycle is self._waiting_after and self.idle and not self.transport.is_closing():
                self.transport.abort()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._expect_head()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

    return BoundedH11
