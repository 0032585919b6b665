"""The listening socket and uvicorn around the app.

The socket is bound and listening before uvicorn starts, so the caller knows the real port
(port 0: one the system picks) and can print the page's address the moment a browser can
connect: connections made before uvicorn accepts wait in the socket's backlog.

File descriptors: at start the soft limit is raised to the hard one, and open connections are
capped below it (connections.py sheds idle ones first), so accepting never runs out. Should it
run out anyway (descriptors held elsewhere), the listening socket reports it once and then
nothing for a second: asyncio's accept loop would otherwise retry it a backlog's worth of times
per tick, spinning the CPU and logging a traceback each time. Repeated log lines (bad requests,
that one) are printed at most once per LOG_WINDOW seconds, with a count of those left out.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import time

import uvicorn

from mlknobs.serve.connections import ConnectionLimits, protocol_class

BACKLOG = 128
MAX_CONNECTIONS = 1000        # open connections, idle ones shed first (connections.py)
FD_RESERVE = 64               # descriptors kept for everything but connections (files, pipes, threads)
ACCEPT_PAUSE_SECONDS = 1.0    # after running out of descriptors, accept again after this long
GRACEFUL_SECONDS = 5          # on Ctrl-C, requests still running get this long to finish
LOG_WINDOW = 10.0             # seconds during which a repeated log line is printed once
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening. Raises OSError (socket.gaierror for an
    unknown host name) when it cannot be had."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = Listener(family, kind, proto)
    try:
        # A port a stopped server left in TIME_WAIT is free again at once; a port in use is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


class Listener(socket.socket):
    """A listening socket whose accept() reports running out of descriptors once per pause.

    asyncio removes the socket from its selector for a second when accept() raises EMFILE, but
    goes on calling accept() in the same loop (a backlog's worth of times, each logged with a
    traceback and each scheduling a retry): after the first such error of a pause, accept()
    answers "nothing waiting" instead, which ends that loop.
    """

    paused_until = 0.0

    def accept(self):
        if time.monotonic() < self.paused_until:
            raise BlockingIOError(errno.EAGAIN, "accepting is paused: out of file descriptors")
        try:
            return super().accept()
        except OSError as e:
            if e.errno in OUT_OF_DESCRIPTORS:
                self.paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS
            raise


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to the hard one; returns the soft limit now."""
    try:
        import resource
    except ImportError:                   # not on Unix: nothing to raise
        return MAX_CONNECTIONS + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):     # some systems refuse the full hard limit
            pass
    return MAX_CONNECTIONS + FD_RESERVE if soft == resource.RLIM_INFINITY else soft


def connection_limits(fd_limit: int) -> ConnectionLimits:
    """The connection cap for a process allowed `fd_limit` open files: MAX_CONNECTIONS, or fewer."""
    return ConnectionLimits(max_connections=max(8, min(MAX_CONNECTIONS, fd_limit - FD_RESERVE)))


class QuietRepeats(logging.Filter):
    """Prints a repeated log line (same logger and text) once per LOG_WINDOW seconds, then says how
    many were left out; and without the traceback when the error is running out of descriptors."""

    def __init__(self, window: float = LOG_WINDOW):
        super().__init__()
        self.window = window
        self.last: dict[tuple[str, str], tuple[float, int]] = {}   # (logger, text) -> (printed at, left out)

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, OSError) and error.errno in OUT_OF_DESCRIPTORS:
            record.msg, record.args = f"{record.getMessage().splitlines()[0]}: {error}", ()
            record.exc_info = record.exc_text = None
        key = (record.name, str(record.msg))
        now = time.monotonic()
        printed, left_out = self.last.get(key, (-self.window, 0))
        if now - printed < self.window:
            self.last[key] = (printed, left_out + 1)
            return False
        if len(self.last) > 1000:         # bounded: forget the lines not seen lately
            self.last = {k: v for k, v in self.last.items() if now - v[0] < self.window}
        self.last[key] = (now, 0)
        if left_out:
            record.msg, record.args = f"{record.getMessage()} (and {left_out} more like it)", ()
        return True


def quiet_repeats() -> None:
    """Install QuietRepeats on the loggers a flood can reach: uvicorn's and asyncio's."""
    for name in ("uvicorn.error", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietRepeats) for f in logger.filters):
            logger.addFilter(QuietRepeats())


def bound_address(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port


def is_loopback(sock: socket.socket) -> bool:
    """True if only this machine can connect (127.0.0.0/8, ::1)."""
    return ipaddress.ip_address(bound_address(sock)[0]).is_loopback


def page_url(sock: socket.socket) -> str:
    """The page's address: http://127.0.0.1:8000/; a wildcard address (0.0.0.0, ::) is reached
    from this machine through loopback."""
    host, port = bound_address(sock)
    ip = ipaddress.ip_address(host)
    if ip.is_unspecified:
        ip = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"http://{shown}:{port}/"


def uvicorn_server(app, limits: ConnectionLimits | None = None):
    """A uvicorn Server for `app` as `mlknobs serve` runs it: no access log, no proxy headers
    trusted, lifespan on (BLAS pinned), connections handled by connections.GuardedH11Protocol
    with `limits` (default: connection_limits for this process's open-file limit)."""
    if limits is None:
        limits = connection_limits(raise_fd_limit())
    quiet_repeats()
    config = uvicorn.Config(app, http=protocol_class(limits), log_level="warning", access_log=False,
                            lifespan="on", proxy_headers=False, server_header=False, backlog=BACKLOG,
                            limit_concurrency=None,         # the app bounds requests, not connections
                            timeout_keep_alive=limits.keep_alive_seconds,
                            h11_max_incomplete_event_size=limits.max_head_bytes,
                            timeout_graceful_shutdown=GRACEFUL_SECONDS)
    return Server(config, app)


class Server(uvicorn.Server):
    """uvicorn's Server, telling the app when shutdown begins (before it waits for requests to end).

    uvicorn first waits for running requests and only then shuts the app's lifespan down, so an
    event stream (or a training run) would hold the shutdown until the grace period ends and
    then be cancelled. An app whose `state.begin_shutdown` is a function is told first.
    """

    def __init__(self, config, app):
        super().__init__(config)
        state = getattr(app, "state", None)
        self.begin_shutdown = getattr(state, "begin_shutdown", None)

    async def shutdown(self, sockets=None):
        if self.begin_shutdown is not None:
            self.begin_shutdown()
        await super().shutdown(sockets=sockets)


def run(app, sock: socket.socket, limits: ConnectionLimits | None = None) -> None:
    """Serve `app` on the listening `sock` until SIGINT or SIGTERM (uvicorn handles both; after a
    graceful shutdown it raises the signal again, so Ctrl-C ends in KeyboardInterrupt here)."""
    uvicorn_server(app, limits).run(sockets=[sock])
