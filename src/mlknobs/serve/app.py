"""The web app: the page, its static files and the JSON API, for one model loaded at start.

    GET  /              the page (static/index.html)
    GET  /static/...    app.js, style.css (Starlette's StaticFiles: nothing outside static/)
    GET  /api/model     the model's metadata, as `mlknobs info --json` prints it
    POST /api/predict   a picture's bytes as the body (or multipart/form-data with one file) ->
                        predict's report (label, name, confidence, probabilities, top_k) plus
                        `input` (28x28 ints) and `hidden` (the units that fire most)
    .../api/train...    the training panel (train_api.py), when given a TrainingPanel: a run's
                        model, once saved, is the one /api/model and /api/predict use

Every error is JSON {"error": "..."}: 400 for a picture predict cannot read (ImageError's own
message), 413 for a body above `max_upload_bytes` (refused from its Content-Length before any
of it is read, or as soon as the bytes read pass the limit), 404, 405 (with Allow), 503 when
`max_requests` are being answered already (a request counts once its body has arrived) or the
server is shutting down. A picture that makes any decoder fail is a 400 (vision.images turns
every decoder error into ImageError); anything else unexpected is a 500 naming only the
exception's type (the traceback goes to the server's log, never to the client). Every response
carries a restrictive Content-Security-Policy (only this server's own scripts, styles
and images; no inline scripts; never framed) and X-Content-Type-Options: nosniff; the page
writes what it receives with textContent, never as HTML.

Prediction is CPU-bound NumPy: it runs in Starlette's thread pool so the event loop keeps
answering, at most `workers` pictures at a time (each decode may take up to 256 MB for the
largest picture read_input accepts), with BLAS pinned to one thread while the app runs.
"""

from __future__ import annotations

import asyncio
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
from mlknobs.io.modelfile import load_model
from mlknobs.nn.blas import blas_threads
from mlknobs.nn.model import Model
from mlknobs.serve.report import picture_report
from mlknobs.serve.train_api import TrainingPanel, training_routes
from mlknobs.serve.trainer import Trainer

STATIC = Path(__file__).with_name("static")
MAX_UPLOAD_BYTES = 8 * 2**20      # a phone photo is 2-6 MB; the canvas sends ~10 KB
MAX_NAME = 80                     # an uploaded file's name, as errors quote it
PICTURE_NAME = "picture"          # how errors name a picture sent as the raw body
MAX_REQUESTS = 64                 # requests answered at once (an event stream is one); then 503

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
                               "style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class Loaded:
    """The model the page draws with; a training run replaces it (readers take `now` once)."""

    def __init__(self, model: Model, path: Path):
        self.set(model, path)

    def set(self, model: Model, path: Path) -> None:
        meta = {"model": str(path), **{k: v for k, v in model.meta.items() if k != "state"}}
        self.now = (model, meta)              # one assignment: a reader never sees half of a change

    def load(self, path: Path) -> None:
        self.set(load_model(path), path)


def create_app(model: Model, model_path: Path, *, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               allowed_hosts: Iterable[str] | None = None, workers: int | None = None,
               max_requests: int = MAX_REQUESTS, training: TrainingPanel | None = None) -> Starlette:
    """The Starlette app for `model` (read from `model_path`, which /api/model reports).

    `allowed_hosts`: the Host header values accepted (without port), or None for any. A server on
    a loopback address passes its loopback names, so a web page elsewhere cannot reach it through
    DNS rebinding. `workers`: pictures processed at once (default: the cores this process may use).
    `training`: where the training panel's runs save and find their data (None: no panel).
    The app's state holds `trainer` (or None) and `begin_shutdown`, which server.Server calls.
    """
    loaded = Loaded(model, model_path)
    busy = threading.BoundedSemaphore(workers or max_threads())
    trainer = Trainer(training.out_dir, training.data, on_model=loaded.load) if training is not None else None

    def report(data: bytes, name: str) -> dict:
        with busy:
            return picture_report(loaded.now[0], data, name)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def model_info(request: Request) -> Response:
        return JSONResponse(loaded.now[1])

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
            try:
                yield
            finally:
                if trainer is not None:              # a run stops at its next step, checkpoint kept
                    trainer.shut_down()
                    await run_in_threadpool(trainer.join)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/model", model_info, methods=["GET"]),
        Route("/api/predict", predict, methods=["POST"]),
        *(training_routes(trainer, training) if trainer is not None else []),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error, Exception: _server_error})
    app.add_middleware(Guard, allowed_hosts=allowed_hosts, max_requests=max_requests)
    app.state.trainer = trainer
    app.state.begin_shutdown = trainer.shut_down if trainer is not None else None
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
    """ASGI middleware, outermost: refuses unknown Host headers, answers at most `max_requests`
    requests at once (503 beyond), adds SECURITY_HEADERS to every response, and turns a request
    cancelled by the server's shutdown into a 503 (instead of uvicorn's 500 and a traceback).

    A request counts from the moment its body has arrived (at once if it has none): a client
    still sending a body is the connections' business (connections.py bounds how many and how
    long), so half-sent bodies never fill the places of requests that are ready to answer.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] | None = None, max_requests: int = MAX_REQUESTS):
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]
        self.max_requests = max_requests
        self.answering = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = counted = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = list(message.get("headers", [])) + self.raw_headers
            await send(message)

        async def refuse(status: int, error: str, headers: dict | None = None) -> None:
            await JSONResponse({"error": error}, status_code=status, headers=headers)(scope, receive, send_with_headers)

        def count() -> bool:
            """Count this request as being answered; False if `max_requests` are already."""
            nonlocal counted
            if self.answering >= self.max_requests:
                return False
            self.answering += 1
            counted = True
            return True

        async def receive_then_count() -> Message:
            message = await receive()
            if not counted and message["type"] == "http.request" and not message.get("more_body", False) \
                    and not count():                 # the body is here: now it takes a place
                raise HTTPException(503, self.busy, headers=BUSY_HEADERS)
            return message

        headers = Headers(scope=scope)
        if self.allowed is not None and _host_name(headers.get("host", "")) not in self.allowed:
            await refuse(400, "unknown Host header: open the page by the address `mlknobs serve` printed")
            return
        if not _has_body(headers) and not count():
            await refuse(503, self.busy, BUSY_HEADERS)
            return
        try:
            await self.app(scope, receive_then_count, send_with_headers)
        except asyncio.CancelledError:
            # The server is shutting down and its grace period is over: say so if we still can,
            # and end the request here (raised further, uvicorn would log it with a traceback).
            if not started:
                with contextlib.suppress(Exception):
                    await refuse(503, "the server is shutting down", {"Connection": "close"})
        finally:
            if counted:
                self.answering -= 1

    @property
    def busy(self) -> str:
        return f"busy: {self.max_requests} requests are being answered; try again in a moment"


BUSY_HEADERS = {"Retry-After": "1", "Connection": "close"}


def _has_body(headers: Headers) -> bool:
    """Whether a request carries a body (HTTP/1.1: a Content-Length above 0, or chunks)."""
    return "transfer-encoding" in headers or headers.get("content-length", "0").strip().lstrip("0") != ""


def _host_name(host: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1', 'LocalHost' -> 'localhost'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
