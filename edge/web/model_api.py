"""The page's model routes: the candidate staged by ``smartbin learn --to``, its figures, install and roll back.

    GET    /api/model           the current model, the staged candidate (its learn report, its comparison on the
                                labelled frames it was not trained on, the shadow's agreement), the history
    POST   /api/model/stage     multipart ``model``, ``card``, ``report``: checked, staged, run as the shadow
    POST   /api/model/install   {"sha256": the staged candidate's}: installed, on trial, the sorter restarted
    POST   /api/model/rollback  {}: back to the version before, the sorter restarted
    DELETE /api/model/staged    the candidate discarded

Writes need the token where the page has one, like every request, and cannot come from another site's form:
JSON bodies must say so in their Content-Type, a staged upload carries ``X-Smartbin-Client: learn``. A refused
model is 422 with one line and nothing changed. Beside a running sorter each change restarts it in place (the
item in hand is finished, gates safe), so that the next items run the new model; on the records alone
(``smartbin web``) the sorter's next start does.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge.config import Settings
from edge.errors import SmartbinError
from edge.model_store import ModelStore
from edge.service import model_stage
from edge.service.model_install import Refused
from edge.web.bodies import MULTIPART_ROOM, read_capped, read_json

Restart = Callable[[str], None]
MAX_JSON = 4096
CLIENT_HEADER = "X-Smartbin-Client"
HISTORY = 20


class ModelApi:
    """The model routes over ``settings``' store; ``restart`` restarts the sorter beside the page (None: no
    sorter here)."""

    def __init__(self, settings: Settings, restart: Restart | None,
                 shadow: Callable[[], dict[str, Any] | None]) -> None:
        self.settings = settings
        self.restart = restart
        self.shadow = shadow
        self.cap = int(settings.web.max_model_mb * 1024 * 1024)
        self.store = ModelStore(settings.records.database.parent)

    def routes(self) -> list[Route]:
        return [
            Route("/api/model", self.facts),
            Route("/api/model/stage", self.stage, methods=["POST"]),
            Route("/api/model/install", self.install, methods=["POST"]),
            Route("/api/model/rollback", self.rollback, methods=["POST"]),
            Route("/api/model/staged", self.discard, methods=["DELETE"]),
        ]

    def facts(self, request: Request) -> Response:
        current = self.store.current()
        staged = model_stage.staged_facts(self.settings)
        shadow = self.shadow()
        if staged is not None and shadow is not None and shadow.get("sha256") == staged.get("sha256"):
            staged["shadow"] = shadow
        return JSONResponse({
            "current": {"file": self.settings.model.path.name, "version": current.key if current else None},
            "staged": staged,
            "history": self.store.history()[-HISTORY:],
            "restarts": self.restart is not None,
        })

    async def stage(self, request: Request) -> Response:
        body = await read_capped(request, self.cap + MULTIPART_ROOM,
                                 f"model too large: at most {self.cap / 1024 / 1024:g} MB (web.max_model_mb)")
        parts = await files(request, body, self.cap)
        if "model" not in parts or "card" not in parts:
            raise HTTPException(400, "send the model and its card as the multipart files 'model' and 'card'")
        name, model = parts["model"]
        try:
            staged = await run_in_threadpool(model_stage.stage, self.settings, name, model, parts["card"][1],
                                             parts["report"][1] if "report" in parts else None)
        except Refused as exc:
            return JSONResponse({"error": str(exc)}, 422)
        model_stage.compare_later(self.settings)
        self._restart(f"model {name} staged")
        return JSONResponse(staged)

    async def install(self, request: Request) -> Response:
        given = await json_body(request)
        sha256 = given.get("sha256")
        if not isinstance(sha256, str):
            raise HTTPException(400, 'name the staged model: {"sha256": "..."} (GET /api/model)')
        try:
            line = await run_in_threadpool(model_stage.install_staged, self.settings, sha256)
        except Refused as exc:
            return JSONResponse({"error": str(exc)}, 422)
        self._restart(line)
        return JSONResponse({"message": line})

    async def rollback(self, request: Request) -> Response:
        await json_body(request)
        try:
            line = await run_in_threadpool(model_stage.rollback, self.settings)
        except SmartbinError as exc:
            return JSONResponse({"error": str(exc)}, 422)
        self._restart(line)
        return JSONResponse({"message": line})

    async def discard(self, request: Request) -> Response:
        try:
            line = await run_in_threadpool(model_stage.discard, self.settings)
        except Refused as exc:
            raise HTTPException(404, str(exc)) from None
        self._restart(line)
        return JSONResponse({"message": line})

    def _restart(self, why: str) -> None:
        if self.restart is not None:
            self.restart(why)


async def files(request: Request, body: bytes, cap: int) -> dict[str, tuple[str, bytes]]:
    """The multipart files of the body: field → (file name, contents)."""

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(400, "send a multipart/form-data body (smartbin learn --to does)")
    if request.headers.get(CLIENT_HEADER) != "learn":  # a form posted by another site cannot set a header
        raise HTTPException(400, f"send the header '{CLIENT_HEADER}: learn' (smartbin learn --to does)")
    try:
        form = await MultiPartParser(request.headers, chunks(), max_files=3, max_fields=3, max_part_size=cap).parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"broken multipart body: {exc.message}") from None
    try:
        found = {}
        for field in ("model", "card", "report"):
            upload = form.get(field)
            if isinstance(upload, UploadFile):
                found[field] = (upload.filename or "", await upload.read())
        return found
    finally:
        await form.close()


async def json_body(request: Request) -> dict[str, Any]:
    """A small JSON object body (see ``read_json``); 400 unless it is an object."""
    value = await read_json(request, MAX_JSON)
    if not isinstance(value, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return value
