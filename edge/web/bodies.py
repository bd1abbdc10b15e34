"""Request bodies read with a cap: raw (uploads) and JSON (the page's writes)."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

MULTIPART_ROOM = 64 * 1024  # an upload may exceed its cap by its multipart framing


async def read_capped(request: Request, limit: int, too_large: str) -> bytes:
    """The request body, refused with 413 ``too_large`` as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, too_large)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, too_large)
    return bytes(body)


async def read_json(request: Request, cap: int) -> Any:
    """The request's JSON body: 415 unless it is declared JSON (so that no plain form of another site can post
    it), 413 over ``cap`` bytes, 400 if it does not parse."""
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
        raise HTTPException(415, "send JSON with Content-Type: application/json")
    body = await read_capped(request, cap, f"body too large: at most {cap // 1024} KiB")
    try:
        return json.loads(body)
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
