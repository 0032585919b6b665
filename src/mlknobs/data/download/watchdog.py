"""The watchdog: a transfer that runs past its deadline or below the minimum speed is abandoned.

Like curl's --speed-limit/--speed-time, plus a per-file deadline, headers included, which requests'
per-read timeout alone cannot give against a server that sends a byte at a time.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from functools import cache
from time import monotonic

from mlknobs.data.download.settings import DownloadSettings

_current = threading.local()   # the watchdog of the transfer running in this thread, if any


class Watchdog:
    """Abandons a transfer from another thread: past the deadline, or slower than the speed limit.

    requests' read timeout bounds each silence only: a server that sends one byte (of the headers
    or of the body) every few seconds never trips it. The watchdog wakes a few times a second,
    and when time is up it shuts down the sockets of the transfer's connections, which wakes the
    blocked read with an error (or an early end); the downloader then reports `reason`.

    The speed rule is curl's: the bytes received over the last speed_time seconds, averaged, must
    reach speed_limit. Headers count as no bytes, so headers dribbled for speed_time seconds fail
    it too (a header block is far smaller than speed_limit * speed_time).
    """

    def __init__(self, deadline_at: float, settings: DownloadSettings):
        self.deadline_at = deadline_at
        self.settings = settings
        self.received = 0                 # body bytes, counted by the reading thread
        self.reason: str | None = None    # set once, when the watchdog ends the transfer
        self._connections = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlknobs-download-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        _current.watchdog = self
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        _current.watchdog = None
        self._done.set()
        self._thread.join()

    def watch(self, connection) -> None:
        """A connection the transfer uses (called by _WatchedConnection from the reading thread)."""
        with self._lock:
            self._connections.append(connection)
            too_late = self.reason is not None
        if too_late:
            _shut_down(connection)

    def _run(self) -> None:
        start = monotonic()
        samples = deque([(start, 0)])     # (time, bytes received then), over the last speed_time s
        tick = min(0.25, self.settings.speed_time / 10)
        while not self._done.wait(max(0.0, min(tick, self.deadline_at - monotonic()))):
            now = monotonic()
            reason = self._verdict(now, start, samples)
            if reason is not None:
                self._fire(reason)
                return

    def _verdict(self, now: float, start: float, samples: deque) -> str | None:
        settings = self.settings
        if now >= self.deadline_at:
            return f"took longer than the {settings.deadline:g} s deadline ({self.received} bytes received)"
        samples.append((now, self.received))
        # Keep one sample at or before the window's start, so the window spans speed_time seconds.
        while len(samples) > 1 and samples[1][0] <= now - settings.speed_time:
            samples.popleft()
        since, received_then = samples[0]
        span = now - since
        if settings.speed_limit and span >= settings.speed_time \
                and self.received - received_then < settings.speed_limit * span:
            rate = (self.received - received_then) / span
            return (f"too slow: {rate:.0f} B/s for {settings.speed_time:g} s, "
                    f"below the limit of {settings.speed_limit} B/s")
        return None

    def _fire(self, reason: str) -> None:
        with self._lock:
            self.reason = reason
            connections = list(self._connections)
        for connection in connections:
            _shut_down(connection)


def _shut_down(connection) -> None:
    """Shut down (not close) a connection's socket from another thread: a blocked read returns.

    Closing would free the descriptor for reuse while the reading thread still uses it. The plain
    socket method also works for a TLS socket (its own shutdown first drops the TLS state, under the
    reading thread's feet).
    """
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass   # already closed


class _WatchedConnection:
    """Mixed into urllib3's connection classes: tells the thread's watchdog about each connection.

    On connect (the TLS handshake can be dribbled too) and on every response, since a kept-alive
    connection serves several requests, each under its own watchdog.
    """

    def connect(self):
        _watch(self)
        return super().connect()

    def getresponse(self, *args, **kwargs):
        _watch(self)
        return super().getresponse(*args, **kwargs)


def _watch(connection) -> None:
    watchdog = getattr(_current, "watchdog", None)
    if watchdog is not None:
        watchdog.watch(connection)


@cache
def watched_adapter_class():
    """A requests HTTPAdapter whose connections (direct or through an HTTP proxy) are watched."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class WatchedHTTPConnection(_WatchedConnection, HTTPConnection):
        pass

    class WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
        pass

    class WatchedHTTPPool(HTTPConnectionPool):
        ConnectionCls = WatchedHTTPConnection

    class WatchedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPSConnection

    pools = {"http": WatchedHTTPPool, "https": WatchedHTTPSPool}

    class WatchedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy, **kwargs):
            manager = super().proxy_manager_for(proxy, **kwargs)
            # A SOCKS proxy brings its own connection classes; there the read timeout still holds.
            if not proxy.lower().startswith("socks"):
                manager.pool_classes_by_scheme = pools
            return manager

    return WatchedAdapter
