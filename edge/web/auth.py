"""The page's optional access token (``web.token``): every request must carry it, compared in constant time.

A browser gives it once as ``?token=TOKEN``: the answer is a redirect to the same address without it, setting
an HttpOnly, SameSite=Strict cookie that carries it from then on. A script sends ``Authorization: Bearer
TOKEN``. Anything else gets 401 with one line saying how to give it.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "smartbin_token"


class TokenGate:
    """ASGI middleware: lets through only requests that carry ``token``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def matches(self, given: str | None) -> bool:
        """Whether ``given`` is the token (constant time: the comparison does not tell how much matched)."""
        return given is not None and hmac.compare_digest(given.encode(), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        if given is None and (self.matches(bearer(request)) or self.matches(request.cookies.get(COOKIE))):
            await self.app(scope, receive, send)
            return
        response: Response
        if given is not None and self.matches(given):  # a browser's first visit: keep it in a cookie
            url = URL(scope=scope).remove_query_params("token")
            response = RedirectResponse(local_path(url.path) + (f"?{url.query}" if url.query else ""), 303)
            response.set_cookie(COOKIE, given, httponly=True, samesite="strict")
        else:
            response = JSONResponse({"error": "access token required: open the page as /?token=TOKEN, or send "
                                              "'Authorization: Bearer TOKEN' (web.token in the config)"},
                                    401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def local_path(path: str) -> str:
    """``path`` as a path on this server only: leading slashes and backslashes become one slash, so that
    ``//evil.example/`` (a protocol-relative URL to a browser) stays ``/evil.example/`` here."""
    return "/" + path.lstrip("/\\")


def bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, if any."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
