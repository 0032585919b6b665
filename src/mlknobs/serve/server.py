"""The listening socket and uvicorn around the app.

The socket is bound and listening before uvicorn starts, so the caller knows the real port
(port 0: one the system picks) and can print the page's address the moment a browser can
connect: connections made before uvicorn accepts wait in the socket's backlog.
"""

from __future__ import annotations

import ipaddress
import socket

BACKLOG = 128
MAX_CONNECTIONS = 64          # beyond this many open connections uvicorn answers 503
GRACEFUL_SECONDS = 5          # on Ctrl-C, requests still running get this long to finish
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening. Raises OSError (socket.gaierror for an
    unknown host name) when it cannot be had."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        # A port a stopped server left in TIME_WAIT is free again at once; a port in use is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


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


def uvicorn_server(app):
    """A uvicorn Server for `app` as `mlknobs serve` runs it: no access log, no proxy headers
    trusted, at most MAX_CONNECTIONS open connections (then 503), lifespan on (BLAS pinned)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            proxy_headers=False, server_header=False,
                            limit_concurrency=MAX_CONNECTIONS,
                            timeout_graceful_shutdown=GRACEFUL_SECONDS)
    return uvicorn.Server(config)


def run(app, sock: socket.socket) -> None:
    """Serve `app` on the listening `sock` until SIGINT or SIGTERM (uvicorn handles both; after a
    graceful shutdown it raises the signal again, so Ctrl-C ends in KeyboardInterrupt here)."""
    uvicorn_server(app).run(sockets=[sock])
