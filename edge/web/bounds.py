"""Bounds on the web port's connections: what keeps a flood of clients from taking the sorter's resources, while
every client that sends a request still gets an answer.

uvicorn's h11 protocol with these additions. At most ``max_connections`` connections are served. A newcomer over
the limit makes the oldest connection idle for ``IDLE_GRACE_S`` or more (no request in progress; a silent one, or
one kept alive between requests) *refused* in its place, or is refused itself when none is. A refused connection
is still read: its requests are answered ``503`` with ``Retry-After`` and a one-line JSON reason once their body
has been read (so that closing it resets nothing the client still sends), then it is closed; ``always_served``
(the health endpoint) is served there as usual. At most ``REFUSED_PER_SERVED`` × ``max_connections`` refused
connections are open: over that, the oldest idle one is closed (or the newcomer, when all are answering).
Every connection must send a complete request head within ``request_timeout_s`` of being opened or of its last
response (uvicorn's keep-alive time-out alone does not cover a head sent byte by byte).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

IDLE_GRACE_S = 1.0  # a client sends its request head within milliseconds of connecting: idle longer is silent
REFUSED_PER_SERVED = 8  # refused connections open at most, per served one (256 for the default 32)
RETRY_AFTER_S = 1


def bounded_protocol(max_connections: int, request_timeout_s: float, always_served: str) -> type[H11Protocol]:
    """An ``H11Protocol`` class bound to these limits (uvicorn takes the class as ``http``)."""
    max_refused = REFUSED_PER_SERVED * max_connections

    class BoundedH11(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.refused = False
            self._idle_since = 0.0
            self._head_timer: asyncio.TimerHandle | None = None
            self._waiting_after: object = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._expect_head()
            now = self.loop.time()
            open_now = [c for c in self.connections if isinstance(c, BoundedH11) and not c.transport.is_closing()]
            served = [c for c in open_now if not c.refused and c is not self]
            if len(served) >= max_connections:
                silent = [c for c in served if c.idle and now - c._idle_since >= IDLE_GRACE_S]
                (min(silent, key=lambda c: c._idle_since) if silent else self).refuse()
            refused = [c for c in open_now if c.refused]
            if len(refused) > max_refused:
                idle = [c for c in refused if c.idle and c is not self]
                (min(idle, key=lambda c: c._idle_since) if idle else self).transport.close()

        @property
        def idle(self) -> bool:
            """No request in progress: waiting for a first or next request head."""
            return self.cycle is None or self.cycle.response_complete

        def refuse(self) -> None:
            """Answer this connection's requests 503 from now on (``always_served`` still served)."""
            self.refused = True
            self.app = refusal(self.app, always_served, max_connections, request_timeout_s)

        def _expect_head(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._idle_since = self.loop.time()
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


def counts(connections: Iterable[Any]) -> tuple[int, int]:
    """(served, refused) among open ``connections`` of a ``bounded_protocol`` class."""
    open_now = [c for c in connections if not c.transport.is_closing()]
    refused = sum(1 for c in open_now if getattr(c, "refused", False))
    return len(open_now) - refused, refused


def refusal(app: ASGIApp, always_served: str, max_connections: int, drain_s: float) -> ASGIApp:
    """``app`` for requests to ``always_served``; for any other, the request's body read (for up to ``drain_s``)
    and dropped, then ``503`` with ``Retry-After``, a one-line JSON reason and ``Connection: close``."""
    message = f"busy: {max_connections} connections served at once (web.max_connections); retry in {RETRY_AFTER_S} s"
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"retry-after", str(RETRY_AFTER_S).encode()), (b"connection", b"close")]

    async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == always_served:
            await app(scope, receive, send)
            return
        try:
            await asyncio.wait_for(_drain(receive), drain_s)
        except TimeoutError:
            pass  # answered all the same; what is still on its way may reset the connection
        logger.warning("web: %s: %s %s answered 503", message, scope["method"], scope["path"])
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return refuse


async def _drain(receive: Receive) -> None:
    while (await receive()).get("more_body", False):
        pass
