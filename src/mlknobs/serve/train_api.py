"""The training panel's HTTP API (routes added by app.create_app when given a TrainingPanel).

    GET  /api/train/settings  every setting: kind, default, limits, choices, CLI flag and help
    POST /api/train           JSON settings -> 202 {"run": ID, "model": path}; 400 naming the bad
                              settings; 409 while a run is going
    GET  /api/train           the current or last run's state ({"run": null, "status": "idle"} before)
    GET  /api/train/events    Server-Sent Events: the state so far, then one record per event
                              (trainer.py lists them); ends after the run's `end`
    POST /api/train/stop      202: the run stops at its next step (checkpoint kept); 409 if none

Only this machine's own page may start or stop work: a POST must be `application/json` (415
otherwise: an HTML form can send `text/plain` across sites without asking) and, when the
browser says where it comes from (Origin, Sec-Fetch-Site), come from this server's own page
(403 otherwise). The Host check of app.Guard stops DNS rebinding.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mlknobs.errors import SettingsError
from mlknobs.files.jsonl import NotJson, read_strict_json
from mlknobs.serve.feed import Reader, TooManyReaders, sse
from mlknobs.serve.settings import describe, parse
from mlknobs.serve.trainer import RunGoing, Trainer
from mlknobs.training.run import DataSource

MAX_SETTINGS_BYTES = 16 * 1024    # a body of settings is ~500 bytes
MAX_SETTINGS_DEPTH = 4            # and one level deep: an object of settings
POLL_SECONDS = 0.1                # an event stream looks for new records this often
KEEP_ALIVE_SECONDS = 15.0         # a comment line this often keeps an idle stream open
RETRY_MILLISECONDS = 2_000        # how long a browser waits before reconnecting a dropped stream


@dataclass(frozen=True)
class TrainingPanel:
    """What the panel needs: the folder runs save into, where the data comes from, and each
    setting's command-line flag and help (the CLI passes them; absent, the page shows names)."""

    out_dir: Path = Path(".")
    data: DataSource = DataSource()
    flags: dict[str, tuple[str, str]] = field(default_factory=dict)


def training_routes(trainer: Trainer, panel: TrainingPanel) -> list[Route]:
    settings_description = describe(panel.flags)

    async def settings(request: Request) -> Response:
        return JSONResponse(settings_description)

    async def start(request: Request) -> Response:
        body = await _json_body(request)
        try:
            config = parse(body)
        except SettingsError as e:
            return JSONResponse({"error": e.describe(), "settings": e.settings}, status_code=400)
        try:
            run_id = trainer.start(config)
        except RunGoing as e:
            return JSONResponse({"error": str(e), "run": e.run_id}, status_code=409)
        return JSONResponse({"run": run_id, "status": "running", "model": trainer.state()["out"]}, status_code=202)

    async def state(request: Request) -> Response:
        return JSONResponse(trainer.state())

    async def stop(request: Request) -> Response:
        await _json_body(request, required=False)
        run_id = trainer.stop()
        if run_id is None:
            return JSONResponse({"error": "no run is going"}, status_code=409)
        return JSONResponse({"run": run_id, "status": "stopping"}, status_code=202)

    async def events(request: Request) -> Response:
        try:
            reader = trainer.subscribe()
        except TooManyReaders:
            raise HTTPException(503, "too many event streams are open: close another page") from None
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(_stream(reader), media_type="text/event-stream", headers=headers)

    return [
        Route("/api/train/settings", settings, methods=["GET"]),
        Route("/api/train", state, methods=["GET"]),
        Route("/api/train", start, methods=["POST"]),
        Route("/api/train/events", events, methods=["GET"]),
        Route("/api/train/stop", stop, methods=["POST"]),
    ]


async def _stream(reader: Reader | None):
    """The event stream: what the reader has, as it comes, until the run's feed is closed."""
    yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
    if reader is None:                   # no run yet: the state says so, and the stream ends
        yield sse({"event": "state", "run": None, "status": "idle"})
        return
    quiet = 0.0
    try:
        while True:
            data = reader.take()
            if data is None:
                return
            if data:
                quiet = 0.0
                yield data
            elif quiet >= KEEP_ALIVE_SECONDS:
                quiet = 0.0
                yield b": keep-alive\n\n"
            await asyncio.sleep(POLL_SECONDS)
            quiet += POLL_SECONDS
    finally:
        reader.leave()


def same_origin_json(request: Request) -> None:
    """Refuse a request another site's page could have made: 403 for a foreign Origin or
    Sec-Fetch-Site, 415 for a body that is not declared JSON."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
    if origin is not None and origin.strip().lower() != own:
        raise HTTPException(403, f"training requests are taken only from this server's own page, "
                                 f"not from {origin[:80]!r}")
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.lower() not in ("same-origin", "none"):
        raise HTTPException(403, f"training requests are taken only from this server's own page ({site[:20]})")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(415, "training requests must be JSON (Content-Type: application/json)")


async def _json_body(request: Request, required: bool = True):
    """The request's JSON body (None if empty and not required), after same_origin_json; 400 for
    JSON that does not parse, 413 past MAX_SETTINGS_BYTES."""
    same_origin_json(request)
    data = b""
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_SETTINGS_BYTES:
                raise HTTPException(413, f"settings: too large (limit {MAX_SETTINGS_BYTES:,} bytes)")
    except ClientDisconnect:
        raise HTTPException(400, "the request ended before its body") from None
    if not data.strip() and not required:
        return None
    try:
        return read_strict_json(data, max_size=MAX_SETTINGS_BYTES, max_depth=MAX_SETTINGS_DEPTH)
    except NotJson as e:
        raise HTTPException(400, f"the body is {e}") from None
