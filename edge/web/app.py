"""The web page's routes: one static page (``static/``) over a small JSON API, documented in the README.

    GET  /                          the page
    GET  /api/live                  the latest item, with the URL of its frame
    GET  /api/live/frame.jpg?id=N   the latest item's frame with the region of interest drawn (sorter only)
    GET  /api/today                 items since midnight per bin and outcome, throughput per quarter hour
    GET  /api/items?limit=N         the latest N items (default 50, at most 500)
    GET  /api/items/{id}            one item (id: a number)
    GET  /api/items/{id}/frame.jpg  an item's frame kept for retraining
    GET  /api/health                camera frame rate, stage latencies, model and card, uptime, last error, disk
    POST /api/classify              classify an uploaded photo (multipart field ``image``, or the raw image)
    GET  /api/teach?limit=N         the Teach tab: labels, counts, unlabelled kept frames (default 40, at most 500)
    GET  /api/teach/labels          every label given on the page, oldest first
    POST /api/teach/{id}            label a kept frame: JSON ``{"label": CLASS | "not-an-item", "who": NAME}``
    DELETE /api/teach/{id}          remove its label (undo)
    GET  /api/model ...             the staged candidate, install, roll back (``edge.web.model_api``)

Errors are JSON ``{"error": "one line"}`` with their status: 400 bad request, 401 no token, 404 unknown item or
frame, 413 upload over ``web.max_upload_mb`` or ``web.max_upload_pixels`` (a label over 4 KiB), 415 not an image
(a label not sent as JSON), 422 a model refused, 503 records or model unavailable (or the port busy:
``edge.web.bounds``).
"""

from __future__ import annotations

import reprlib
import threading
import time
from collections.abc import AsyncGenerator, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from edge import __version__
from edge.config import Settings
from edge.errors import ImageError, ImageTooLarge, ModelError, RecordError, SmartbinError
from edge.held import disk_state
from edge.model_card import read_card
from edge.model_store import ModelStore
from edge.photo import PhotoClassifier
from edge.records import NOT_ITEM, Records
from edge.runtime import interpreter_class
from edge.web.auth import TokenGate
from edge.web.bodies import MULTIPART_ROOM, read_capped, read_json
from edge.web.model_api import ModelApi, Restart
from edge.web.queries import RecordsView
from edge.web.state import LiveState

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
MAX_ITEMS = 500
TEACH_FRAMES = 40  # frames /api/teach offers unless asked for another number
LABEL_CAP = 4 * 1024  # bytes of a label's JSON body
WHO_MAX = 64  # characters of who labelled


class Api:
    """The endpoints over one sorter's records (``settings``) and, beside a running sorter, its ``live`` state."""

    def __init__(self, settings: Settings, live: LiveState | None, restart: Restart | None = None) -> None:
        self.settings = settings
        self.live = live
        self.view = RecordsView(settings.records.database, settings.retrain_folder, list(settings.bins),
                                settings.bin_of())
        self.models = ModelApi(settings, restart, self.view.shadow)
        # beside a running sorter the page's interpreter takes one thread, leaving the cores to the loop
        self.photos = PhotoClassifier(settings, 1 if live is not None else settings.model.threads or None)
        self.model = model_facts(settings)
        self.started = live.started if live is not None else time.time()
        self.upload_cap = int(settings.web.max_upload_mb * 1024 * 1024)
        self._writer: Records | None = None  # the page's own connection for labels, opened at the first label
        self._write_lock = threading.Lock()

    def routes(self) -> list[Route]:
        return [
            Route("/", self.page),
            Route("/static/{name}", self.asset),
            Route("/api/live", self.latest),
            Route("/api/live/frame.jpg", self.live_frame),
            Route("/api/today", self.today),
            Route("/api/items", self.items),
            Route("/api/items/{item_id}", self.item),
            Route("/api/items/{item_id}/frame.jpg", self.kept_frame),
            Route("/api/health", self.health),
            Route("/api/classify", self.classify, methods=["POST"]),
            Route("/api/teach", self.teach),
            Route("/api/teach/labels", self.labels),
            Route("/api/teach/{item_id}", self.label, methods=["POST"]),
            Route("/api/teach/{item_id}", self.unlabel, methods=["DELETE"]),
            *self.models.routes(),
        ]

    def close(self) -> None:
        """Release the page's model and its connection to the records; safe twice."""
        self.photos.close()
        with self._write_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:  # a fixed list: no request path ever reaches the file system
            raise HTTPException(404, f"not found: {request.url.path}")
        return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    def item_json(self, row: dict[str, Any]) -> dict[str, Any]:
        """An item row with ``frame_url``: its live frame while it is the latest, else its kept frame, or null."""
        item_id = row["id"]
        latest = self.live.latest if self.live is not None else None
        if latest is not None and latest.item_id == item_id and latest.frame is not None:
            url: str | None = f"/api/live/frame.jpg?id={item_id}"
        else:
            url = f"/api/items/{item_id}/frame.jpg" if self.view.kept_frame(item_id) is not None else None
        return {**row, "frame_url": url}

    def latest(self, request: Request) -> Response:
        rows = self.view.recent(1)
        return JSONResponse({
            "mode": "sorter" if self.live is not None else "standalone",
            "roi": self.settings.camera.roi,
            "item": self.item_json(rows[0]) if rows else None,
        })

    def live_frame(self, request: Request) -> Response:
        item_id = int_param(request, "id", 0, 10**18)
        if item_id is None:
            raise HTTPException(400, "id is required: /api/live/frame.jpg?id=N (frame_url of /api/live)")
        jpeg = self.live.jpeg(item_id) if self.live is not None else None
        if jpeg is None:
            raise HTTPException(404, f"no live frame of item {item_id}: only the latest item's frame is held "
                                     "(see frame_url of /api/live)")
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    def today(self, request: Request) -> Response:
        return JSONResponse(self.view.today())

    def items(self, request: Request) -> Response:
        limit = int_param(request, "limit", 1, MAX_ITEMS) or 50
        return JSONResponse([self.item_json(row) for row in self.view.recent(limit)])

    def item(self, request: Request) -> Response:
        item_id = path_item_id(request)
        row = self.view.item(item_id)
        if row is None:
            raise HTTPException(404, f"no item {item_id}")
        return JSONResponse(self.item_json(row))

    def kept_frame(self, request: Request) -> Response:
        item_id = path_item_id(request)
        path = self.view.kept_frame(item_id)
        if path is None:
            raise HTTPException(404, f"no kept frame of item {item_id}: only uncertain items' frames are kept "
                                     "([retrain] in the config)")
        return FileResponse(path, media_type="image/jpeg")

    def health(self, request: Request) -> Response:
        live = self.live
        return JSONResponse({
            "mode": "sorter" if live is not None else "standalone",
            "version": __version__,
            "started": self.started,
            "uptime_s": round(time.time() - self.started, 1),
            "camera": None if live is None else {"source": live.source, "fps": round(live.fps(), 2),
                                                 "frames": live.frames},
            "latency_ms": self.view.latency(),
            "model": self.model,
            "model_rollback": ModelStore(self.view.database.parent).auto_rollback(),
            "shadow": self.view.shadow(),
            "records": {"database": str(self.view.database), "items": self.view.total()},
            "disk": disk_state(self.view.database.parent, self.settings.records.spill_file),
            "last_error": self.view.last_error(),
            "gate_fault": None if live is None else live.gate_fault,
            "upload_cap_mb": self.settings.web.max_upload_mb,
        })

    async def classify(self, request: Request) -> Response:
        body = await read_capped(request, self.upload_cap + MULTIPART_ROOM, upload_too_large(self.upload_cap))
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            data, camera_roi = await form_image(request, body, self.upload_cap)
        else:  # the raw image as the body, for scripts: curl --data-binary @photo.jpg
            data, camera_roi = body, request.query_params.get("roi") == "camera"
        return JSONResponse(await run_in_threadpool(self.photos.classify, data, camera_roi))

    def teach(self, request: Request) -> Response:
        limit = int_param(request, "limit", 1, MAX_ITEMS) or TEACH_FRAMES
        return JSONResponse(self.view.teach(read_card(self.settings.model.path).labels, limit))

    def labels(self, request: Request) -> Response:
        return JSONResponse([
            {"id": row["item_id"], **{key: row[key] for key in ("label", "who", "time", "guess", "confidence")},
             "frame_url": f"/api/items/{row['item_id']}/frame.jpg"
             if self.view.kept_frame(row["item_id"]) is not None else None}
            for row in self.view.labels()])

    async def label(self, request: Request) -> Response:
        item_id = path_item_id(request)
        given = await read_json(request, LABEL_CAP)
        label, who = label_of(given, read_card(self.settings.model.path).labels)
        return JSONResponse(await run_in_threadpool(self._label, item_id, label, who))

    def _label(self, item_id: int, label: str, who: str) -> dict[str, Any]:
        if self.view.kept_frame(item_id) is None:
            raise HTTPException(404, f"no kept frame of item {item_id}: only kept frames can be labelled "
                                     "(GET /api/teach lists them)")
        facts = self.view.kept.read().get(item_id, {})
        when = time.time()
        with self._write_lock:
            self._records().set_label(item_id, label, who, when, facts.get("label"), facts.get("confidence"))
        return {"id": item_id, "label": label, "who": who, "time": when}

    def unlabel(self, request: Request) -> Response:
        item_id = path_item_id(request)
        with self._write_lock:
            removed = self.view.database.exists() and self._records().remove_label(item_id)
        if not removed:
            raise HTTPException(404, f"item {item_id} has no label")
        return JSONResponse({"id": item_id, "removed": True})

    def _records(self) -> Records:
        """The page's writable connection to the records (for labels only), opened at the first use; call it
        holding ``_write_lock``. Raises RecordError."""
        if self._writer is None:
            if not self.view.database.exists():
                raise RecordError(f"no item database at {self.view.database}: labels are kept beside the items")
            self._writer = Records(self.view.database)
        return self._writer


def path_item_id(request: Request) -> int:
    """The item id of the path; 404 unless it is a plain number (so no path ever names a file)."""
    value = request.path_params["item_id"]
    if not is_number(value, 18):
        raise HTTPException(404, f"no item {value!r}: items are numbered")
    return int(value)


def is_number(value: str, digits: int) -> bool:
    """ASCII digits only, at most ``digits`` of them."""
    return value.isascii() and value.isdigit() and len(value) <= digits


def int_param(request: Request, name: str, low: int, high: int) -> int | None:
    """An integer query parameter in [low, high], None if absent; 400 if it is something else."""
    value = request.query_params.get(name)
    if value is None:
        return None
    if not is_number(value, len(str(high))) or not low <= int(value) <= high:
        raise HTTPException(400, f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return int(value)


def upload_too_large(cap: int) -> str:
    return f"upload too large: at most {cap / 1024 / 1024:g} MB (web.max_upload_mb)"


def label_of(given: Any, labels: Sequence[str]) -> tuple[str, str]:
    """The label and who of a ``POST /api/teach/{id}`` body; 400 for anything else."""
    if not isinstance(given, dict):
        raise HTTPException(400, 'the body must be a JSON object: {"label": CLASS, "who": NAME}')
    unknown = sorted(set(given) - {"label", "who"})
    if unknown:
        raise HTTPException(400, f'unknown key {reprlib.repr(unknown[0])}: the body is {{"label", "who"}}')
    label, who = given.get("label"), given.get("who", "operator")
    if not isinstance(label, str) or label not in (*labels, NOT_ITEM):
        raise HTTPException(400, f"label {reprlib.repr(label)} is neither a label of the model nor {NOT_ITEM!r}: "
                                 f"one of {', '.join(labels)}, {NOT_ITEM}")
    if not isinstance(who, str) or not 0 < len(who.strip()) <= WHO_MAX or not who.isprintable():
        raise HTTPException(400, f"who must be a name of 1 to {WHO_MAX} printable characters, not {reprlib.repr(who)}")
    return label, who.strip()


async def form_image(request: Request, body: bytes, cap: int) -> tuple[bytes, bool]:
    """The file of the multipart field ``image`` and whether the form asks for the camera's ROI (``roi=camera``)."""

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(request.headers, chunks(), max_files=1, max_fields=4, max_part_size=cap).parse()
    except MultiPartException as exc:
        raise HTTPException(400, f"broken multipart body: {exc.message}") from None
    try:
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, "no photo: send it as the multipart file field 'image'")
        if upload.size is not None and upload.size > cap:
            raise HTTPException(413, upload_too_large(cap))
        return await upload.read(), form.get("roi") == "camera"
    finally:
        await form.close()


def model_facts(settings: Settings) -> dict[str, Any]:
    """The model's name and the figures of its card, for the health page; ``error`` if the card is unreadable."""
    path = settings.model.path
    facts: dict[str, Any] = {"file": path.name, "path": str(path)}
    try:
        card = read_card(path)
        facts["runtime"] = interpreter_class()[1]
    except ModelError as exc:
        return {**facts, "error": str(exc)}
    validation = card.extra.get("validation", {})
    return {
        **facts,
        "labels": len(card.labels),
        "input": f"{card.input.width}x{card.input.height}",
        "quantization": card.extra.get("quantization", {}).get("mode"),
        "size_bytes": card.extra.get("size_bytes", {}).get("tflite"),
        "created": card.extra.get("created"),
        "validation": {key: validation.get(key) for key in
                       ("images", "top1_agreement_pct", "float_top1_pct", "int8_top1_pct", "drop_pp")},
    }


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if message == HTTPStatus(exc.status_code).phrase:  # the router's own 404 / 405: say what was asked
        message = f"{message.lower()}: {request.method} {request.url.path}"
    return error_response(exc.status_code, message)


async def smartbin_error(request: Request, exc: Exception) -> Response:
    status = (413 if isinstance(exc, ImageTooLarge) else 415 if isinstance(exc, ImageError)
              else 503 if isinstance(exc, (RecordError, ModelError)) else 500)
    return error_response(status, str(exc))


async def internal_error(request: Request, exc: Exception) -> Response:  # uvicorn logs the traceback
    return error_response(500, f"internal error: {type(exc).__name__} (details in the sorter's log)")


def create_app(settings: Settings, live: LiveState | None = None, restart: Restart | None = None) -> Starlette:
    """The page and its API over the records of ``settings``. ``live``: the running sorter's state; None for
    ``smartbin web`` on the records alone (no live frame, no camera). ``restart``: restarts the sorter beside
    the page after a model change (None: no sorter here). With ``web.token`` set every request needs it.
    ``app.state.api`` holds the page's classifier and its connection for labels: close it with the app."""
    api = Api(settings, live, restart)
    middleware = [Middleware(TokenGate, token=settings.web.token)] if settings.web.token else []
    app = Starlette(
        routes=api.routes(),
        middleware=middleware,
        exception_handlers={HTTPException: http_error, SmartbinError: smartbin_error, Exception: internal_error},
    )
    app.state.api = api
    return app
