"""The web app: the page, its static files and the JSON API, for one model loaded at start.

    GET  /              the page (static/index.html)
    GET  /static/...    app.js, style.css (Starlette's StaticFiles: nothing outside static/)
    GET  /api/model     the model's metadata, as `mlknobs info --json` prints it
    POST /api/predict   a picture's bytes as the body (or multipart/form-data with one file) ->
                        predict's report (label, name, confidence, probabilities, top_k) plus
                        `input` (28x28 ints) and `hidden` (the units that fire most)

Every error is JSON {"error": "..."}: 400 for a picture predict cannot read (ImageError's own
message), 413 for a body above `max_upload_bytes` (refused from its Content-Length before any
of it is read, or as soon as the bytes read pass the limit), 404, 405 (with Allow). Every
response carries a restrictive Content-Security-Policy (only this server's own scripts, styles
and images; no inline scripts; never framed) and X-Content-Type-Options: nosniff; the page
writes what it receives with textContent, never as HTML.

Prediction is CPU-bound NumPy: it runs in Starlette's thread pool so the event loop keeps
answering, at most `workers` pictures at a time (each decode may take up to 256 MB for the
largest picture read_input accepts), with BLAS pinned to one thread while the app runs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlknobs.config import max_threads
from mlknobs.errors import ImageError
from mlknobs.files import human_size
from mlknobs.nn.blas import blas_threads
from mlknobs.nn.model import Model
from mlknobs.serve.report import picture_report

STATIC = Path(__file__).with_name("static")
MAX_UPLOAD_BYTES = 8 * 2**20      # a phone photo is 2-6 MB; the canvas sends ~10 KB
MAX_NAME = 80                     # an uploaded file's name, as errors quote it
PICTURE_NAME = "picture"          # how errors name a picture sent as the raw body

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
                               "style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def create_app(model: Model, model_path: Path, *, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               allowed_hosts: Iterable[str] | None = None, workers: int | None = None) -> Starlette:
    """The Starlette app for `model` (read from `model_path`, which /api/model reports).

    `allowed_hosts`: the Host header values accepted (without port), or None for any. A server on
    a loopback address passes its loopback names, so a web page elsewhere cannot reach it through
    DNS rebinding. `workers`: pictures processed at once (default: the cores this process may use).
    """
    meta = {"model": str(model_path), **{k: v for k, v in model.meta.items() if k != "state"}}
    busy = threading.BoundedSemaphore(workers or max_threads())

    def report(data: bytes, name: str) -> dict:
        with busy:
            return picture_report(model, data, name)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def model_info(request: Request) -> Response:
        return JSONResponse(meta)

    async def predict(request: Request) -> Response:
        try:
            data, name = await _read_picture(request, max_upload_bytes)
        except ClientDisconnect:
            return Response(status_code=400)         # nobody left to read it
        try:
            return JSONResponse(await run_in_threadpool(report, data, name))
        except ImageError as e:
            raise HTTPException(400, str(e)) from e

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        with blas_threads(1):                        # one BLAS thread per request is fastest here
            yield

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/model", model_info, methods=["GET"]),
        Route("/api/predict", predict, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error, Exception: _server_error})
    app.add_middleware(Guard, allowed_hosts=allowed_hosts)
    return app


async def _read_picture(request: Request, limit: int) -> tuple[bytes, str]:
    """The picture's bytes and its name: the body itself, or the one file of a multipart form.

    The body is refused from its Content-Length before any of it is read, and otherwise counted
    as it arrives: a body without one (chunked) stops being read one chunk past the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, f"bad Content-Length header: {declared[:40]!r}")
        if int(declared) > limit:
            raise _too_large(limit, int(declared))
    bounded = Request(request.scope, _bounded_receive(request.receive, limit))
    if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        return await _form_file(bounded)
    return await bounded.body(), PICTURE_NAME


async def _form_file(request: Request) -> tuple[bytes, str]:
    async with request.form(max_files=1, max_fields=8) as form:
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise HTTPException(400, "the form holds no file: send the picture as a file field "
                                     "(or as the request body)")
        upload = files[0]
        name = (upload.filename or PICTURE_NAME)[:MAX_NAME]
        return await upload.read(), name


def _bounded_receive(receive: Receive, limit: int) -> Receive:
    """`receive` that raises 413 as soon as the request's body passes `limit` bytes."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return bounded


def _too_large(limit: int, size: int | None = None) -> HTTPException:
    """413, worded as predict words its own limit: 'picture: 9 MiB is too large (limit 8 MiB)'."""
    if size is None:
        return HTTPException(413, f"picture: too large (limit {human_size(limit)})")
    shown = human_size(size) if human_size(size) != human_size(limit) else f"{size:,} bytes"   # not '8 MiB > 8 MiB'
    return HTTPException(413, f"picture: {shown} is too large (limit {human_size(limit)})")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    # Starlette sends this outside the middleware stack, so it carries the headers itself.
    return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's log"},
                        status_code=500, headers=SECURITY_HEADERS)


class Guard:
    """ASGI middleware: refuses unknown Host headers, adds SECURITY_HEADERS to every response."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] | None = None):
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.raw_headers
            await send(message)

        if self.allowed is not None and _host_name(Headers(scope=scope).get("host", "")) not in self.allowed:
            response = JSONResponse({"error": "unknown Host header: open the page by the address "
                                              "`mlknobs serve` printed"}, status_code=400)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def _host_name(host: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1', 'LocalHost' -> 'localhost'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
