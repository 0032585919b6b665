"""A loopback HTTP server for download tests: 127.0.0.1 only, bounded, stopped by its fixture.

Each path serves given bytes following a script of behaviours, one per request, the last one
repeating. `server.serve("/mnist/x.gz", data, "cut", "normal")` cuts the first response halfway,
then serves normally (a Range request gets 206 and only the rest). Every request is logged with its
Range header, the status sent and how many body bytes went out, so a test can check what the
client asked for and what it received.

Some behaviours are hostile on purpose (a byte at a time, endless bodies, a false huge
Content-Length): they stop as soon as the client hangs up or the fixture's teardown begins, and
never hold more than one small block in memory.
"""

from __future__ import annotations

import re
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Seconds a handler waits for a request line before dropping the connection.
REQUEST_TIMEOUT = 5.0
# Longest a "stall" response stays silent; the fixture's teardown ends it at once.
STALL_SECONDS = 5.0
# Seconds between two bytes of a "trickle" or "trickle-headers" response (50 bytes/s).
TRICKLE_INTERVAL = 0.02
# A "slow" response takes about this long, sent in SLOW_PIECES pieces: slow but honest.
SLOW_SECONDS = 0.4
SLOW_PIECES = 8
# What an "endless" or "huge-length" response repeats until the client hangs up.
ENDLESS_BLOCK = b"\0" * (1 << 16)
HUGE_LENGTH = 1 << 40   # the false Content-Length of "huge-length": 1 TiB

HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
             b"<body><p>Please sign in to continue.</p></body></html>\n")

BEHAVIOURS = {
    "normal": "the body, or 206 with the rest for a Range request",
    "cut": "announce the full Content-Length, send the first half, close the connection",
    "corrupt": "the body with some bytes flipped, same length",
    "404": "404 Not Found",
    "503": "503 Service Unavailable",
    "html": "200 with an HTML page labelled text/html (a captive portal, a login wall)",
    "html-as-data": "200 with an HTML page labelled application/octet-stream",
    "gzip-encoded": "the body unchanged but labelled Content-Encoding: gzip, as S3 does for .gz objects",
    "ignore-range": "always 200 with the whole body, whatever Range asked for",
    "stall": "send the headers, then stay silent until the client gives up",
    "trickle": "send the headers, then the body one byte every TRICKLE_INTERVAL seconds",
    "trickle-headers": "send the status line, then header bytes one at a time, never finishing",
    "endless": "200 without Content-Length, then zero bytes until the client hangs up",
    "huge-length": "200 announcing a 1 TiB Content-Length, then zero bytes until the client hangs up",
    "slow": "the whole body with its length, in SLOW_PIECES pieces over SLOW_SECONDS",
}


@dataclass(frozen=True)
class LoggedRequest:
    path: str
    range: str | None   # the Range header the client sent
    behaviour: str
    status: int
    body_bytes: int     # how many body bytes the server sent (-1: as many as the client took)


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1, port chosen by the OS, in a daemon thread."""

    def __init__(self) -> None:
        self._routes: dict[str, tuple[bytes, list[str]]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[LoggedRequest] = []
        self.handler_errors: list[BaseException] = []   # e.g. the client hung up mid-response
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LoopbackServer:
        self._httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="loopback-http", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopping.set()   # wake any stalled handler
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=REQUEST_TIMEOUT)

    @property
    def url(self) -> str:
        """Base URL ending in a slash, e.g. http://127.0.0.1:40123/."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def serve(self, path: str, body: bytes, *behaviours: str) -> None:
        """Serve `body` at `path`; successive requests follow `behaviours`, the last one repeating."""
        unknown = [b for b in behaviours if b not in BEHAVIOURS]
        if unknown:
            raise ValueError(f"unknown behaviours {unknown}; known: {', '.join(BEHAVIOURS)}")
        with self._lock:
            self._routes["/" + path.lstrip("/")] = (body, list(behaviours) or ["normal"])

    def requests_for(self, path: str) -> list[LoggedRequest]:
        path = "/" + path.lstrip("/")
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def _next_behaviour(self, path: str) -> tuple[bytes | None, str]:
        with self._lock:
            if path not in self._routes:
                return None, "404"
            body, script = self._routes[path]
            return body, script.pop(0) if len(script) > 1 else script[0]

    def _log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(entry)

    def _log_error(self, error: BaseException) -> None:
        with self._lock:
            self.handler_errors.append(error)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # socketserver would print a traceback to stderr, which CliRunner captures into the
        # output of the command under test; keep the error for inspection instead.
        self.owner._log_error(sys.exc_info()[1])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT

    def log_message(self, format, *args) -> None:
        pass  # the request log above is what tests read; keep pytest's output clean

    def do_GET(self) -> None:
        owner: LoopbackServer = self.server.owner
        body, behaviour = owner._next_behaviour(self.path)
        self._respond(owner, body, behaviour, self.headers.get("Range"))

    def _record(self, behaviour: str, status: int, body_bytes: int) -> None:
        # Logged before the status line goes out, so the log is complete once the client has its answer.
        self.server.owner._log(LoggedRequest(self.path, self.headers.get("Range"), behaviour, status, body_bytes))

    def _respond(self, owner: LoopbackServer, body: bytes | None, behaviour: str,
                 range_header: str | None) -> None:
        if behaviour in ("404", "503"):
            message = b"not here\n" if behaviour == "404" else b"try later\n"
            self._send(behaviour, int(behaviour), message, "text/plain")
        elif behaviour in ("html", "html-as-data"):
            content_type = "text/html; charset=utf-8" if behaviour == "html" else "application/octet-stream"
            self._send(behaviour, 200, HTML_PAGE, content_type)
        elif behaviour == "corrupt":
            damaged = bytearray(body)
            for i in range(len(damaged) // 2, len(damaged), max(1, len(damaged) // 8)):
                damaged[i] ^= 0xFF
            self._send(behaviour, 200, bytes(damaged))
        elif behaviour in ("trickle", "trickle-headers", "endless", "huge-length", "slow"):
            self._stream(owner, body, behaviour)
        elif behaviour in ("cut", "stall"):
            sent = len(body) // 2 if behaviour == "cut" else 0
            self._record(behaviour, 200, sent)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))   # the full size, then fewer bytes
            self.end_headers()
            self.wfile.write(body[:sent])
            self.wfile.flush()
            if behaviour == "stall":
                owner._stopping.wait(STALL_SECONDS)
            self.close_connection = True
        else:
            extra = {"Content-Encoding": "gzip"} if behaviour == "gzip-encoded" else {}
            wanted = _parse_range(range_header, len(body)) if behaviour != "ignore-range" else None
            if wanted is None:
                self._send(behaviour, 200, body, extra_headers=extra)
            elif wanted[0] >= len(body):
                self._send(behaviour, 416, b"", "text/plain", {"Content-Range": f"bytes */{len(body)}"})
            else:
                start, end = wanted
                self._send(behaviour, 206, body[start:end + 1],
                           extra_headers={**extra, "Content-Range": f"bytes {start}-{end}/{len(body)}"})

    def _stream(self, owner: LoopbackServer, body: bytes, behaviour: str) -> None:
        """The behaviours that send over time; each ends early once the fixture is stopping."""
        self.close_connection = True
        if behaviour == "trickle-headers":
            self._record(behaviour, 200, 0)
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nX-Slow: ")
            while not owner._stopping.wait(TRICKLE_INTERVAL):
                self.wfile.write(b"a")   # a header line that never ends; raises once the client hangs up
            return
        endless = behaviour in ("endless", "huge-length")
        self._record(behaviour, 200, -1 if endless else len(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if behaviour != "endless":
            self.send_header("Content-Length", str(HUGE_LENGTH if endless else len(body)))
        self.end_headers()
        if endless:
            while not owner._stopping.is_set():
                self.wfile.write(ENDLESS_BLOCK)
        elif behaviour == "trickle":
            for i in range(len(body)):
                if owner._stopping.wait(TRICKLE_INTERVAL):
                    return
                self.wfile.write(body[i:i + 1])
        else:
            piece = -(-len(body) // SLOW_PIECES)
            for start in range(0, len(body), piece):
                if owner._stopping.wait(SLOW_SECONDS / SLOW_PIECES):
                    return
                self.wfile.write(body[start:start + piece])

    def _send(self, behaviour: str, status: int, payload: bytes, content_type: str = "application/octet-stream",
              extra_headers: dict[str, str] | None = None) -> None:
        self._record(behaviour, status, len(payload))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=N-` or `bytes=N-M` range; None for no or other ranges."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", (header or "").strip())
    if match is None:
        return None
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else size - 1
    return start, min(end, size - 1)
