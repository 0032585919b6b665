"""Transfers from an HTTP(S) mirror: resumed with Range requests, retried with backoff, bounded in size.

Every transfer runs under a Watchdog (watchdog.py), which bounds its time; here its size is
bounded: no file is written past its official size, and a Content-Length above it is refused
before a byte is written.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from time import monotonic  # imported by name: tests replace `time` to record the backoff sleeps

from mlknobs import __version__
from mlknobs.data.download import partfile
from mlknobs.data.download.partfile import (
    Expected,
    MirrorFailed,
    Retryable,
    TooLarge,
    not_writable,
    progress_bar,
    size_or_zero,
    verify,
)
from mlknobs.data.download.settings import DownloadSettings, backoff_wait
from mlknobs.data.download.watchdog import Watchdog, watched_adapter_class
from mlknobs.data.download.wording import connection_reason, find_cause

CHUNK_BYTES = 1 << 16
SMALL_CHUNK_BYTES = 1 << 10   # read size when urllib3 lacks read1 (see _body_chunks)


def new_session():
    import requests  # imported here: `mlknobs --help` should not pay for it

    session = requests.Session()
    adapter = watched_adapter_class()()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"mlknobs/{__version__}"
    # The checksum is of the .gz bytes: ask for them as stored, never re-encoded in transit.
    session.headers["Accept-Encoding"] = "identity"
    return session


def fetch_http_verified(session, url: str, part: Path, expected: Expected,
                         settings: DownloadSettings, progress: bool | None) -> None:
    """Download url into part and verify it; retry passing failures with exponential backoff.

    All attempts together get settings.deadline seconds; a deadline or speed failure is not
    retried (the next mirror is more likely to help).
    """
    deadline_at = monotonic() + settings.deadline
    failures = 0
    while True:
        resumed = size_or_zero(part) > 0
        reason = None
        with Watchdog(deadline_at, settings) as watchdog:
            try:
                _fetch_http(session, url, part, expected.size, settings, progress, watchdog)
            except Exception as e:
                if watchdog.reason is not None:   # the failure is the watchdog closing the socket
                    raise MirrorFailed(watchdog.reason) from e
                reason = _retry_reason(e, settings)
        if reason is None:
            try:
                verify(part, expected, resumed)
                return
            except Retryable as e:
                reason = str(e)
        failures += 1
        if failures > settings.retries:
            raise MirrorFailed(f"{reason}; gave up after {failures} attempts")
        wait = backoff_wait(settings, failures)
        if monotonic() + wait >= deadline_at:
            raise MirrorFailed(f"{reason}; no time left for another attempt "
                                f"within the {settings.deadline:g} s deadline")
        time.sleep(wait)


def _retry_reason(error: Exception, settings: DownloadSettings) -> str:
    """Why an attempt failed, if another attempt may do better; re-raises the error otherwise."""
    import requests
    import urllib3

    timed_out = f"timed out (connect {settings.connect_timeout:g} s, read {settings.read_timeout:g} s)"
    if isinstance(error, Retryable):
        return str(error)
    if isinstance(error, (requests.Timeout, urllib3.exceptions.ReadTimeoutError)):
        return timed_out
    if isinstance(error, requests.ConnectionError):
        if find_cause(error, socket.gaierror) is not None:
            # An unknown host (or no network at all) does not come back in a few seconds.
            raise MirrorFailed("host name not found") from error
        return timed_out if find_cause(error, TimeoutError) else f"connection failed ({connection_reason(error)})"
    if isinstance(error, (requests.RequestException, urllib3.exceptions.HTTPError)):
        # Connection cut mid-body, invalid responses: passing faults worth another try.
        return f"transfer failed ({connection_reason(error)})"
    raise error   # MirrorFailed, DataDirNotWritable, programming errors


def _fetch_http(session, url: str, part: Path, size: int, settings: DownloadSettings,
                progress: bool | None, watchdog: Watchdog) -> None:
    offset = size_or_zero(part)
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    timeout = (settings.connect_timeout, settings.read_timeout)
    with session.get(url, stream=True, timeout=timeout, headers=headers, allow_redirects=True) as resp:
        status = resp.status_code
        if status == 416 and offset:
            # The partial file is already whole (or the server disagrees): let the checksum decide.
            return
        if status >= 500 or status == 429:
            raise Retryable(f"HTTP {status} {resp.reason or ''}".rstrip())
        if status not in (200, 206):
            raise MirrorFailed(f"HTTP {status} {resp.reason or ''}".rstrip())
        content_type = resp.headers.get("Content-Type", "")
        if "text/html" in content_type.lower():
            raise MirrorFailed(f"got an HTML page instead of data (Content-Type: {content_type})")
        appending = status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
        if status == 206 and not appending:
            part.unlink(missing_ok=True)
            raise Retryable(f"server sent another range than asked for "
                             f"(Content-Range: {resp.headers.get('Content-Range', 'none')})")
        if not appending:
            offset = 0  # the server ignored our Range: start over
        length = resp.headers.get("Content-Length", "").strip()
        total = offset + int(length) if length.isdigit() else None
        if total is not None and total > size:
            # Refused before a byte is written: a false huge length must not fill the disk.
            raise MirrorFailed(f"announces {total} bytes, more than the {size} bytes of the official file")
        bar = lambda: progress_bar(total or size, offset, url.rsplit("/", 1)[-1], progress)
        try:
            written = _save_body(resp, part, appending, offset, size, watchdog, bar)
        except TooLarge:
            part.unlink(missing_ok=True)
            raise
    if watchdog.reason is not None:
        # Closing the socket ends a body without Content-Length like a normal end would.
        raise MirrorFailed(watchdog.reason)
    if written < (total or size):
        raise Retryable(f"connection closed early ({written} of {total or size} bytes)")


def _save_body(resp, part: Path, appending: bool, offset: int, size: int, watchdog: Watchdog,
               make_bar) -> int:
    """Write the response body after `offset` bytes of `part`; return the part's size after it.

    Raises TooLarge as soon as the body would take the file past `size` bytes.
    """
    try:
        f = open(part, "ab" if appending else "wb")
    except OSError as e:
        raise not_writable(part.parent, e) from e
    written = offset
    with f, make_bar() as bar:
        for chunk in _body_chunks(resp.raw):
            if watchdog.reason is not None:
                break   # normally the watchdog's shutdown ends the read; this covers a socket it missed
            if written + len(chunk) > size:
                raise TooLarge(f"sent more than the {size} bytes of the official file")
            partfile.write_part(f, chunk, part)
            written += len(chunk)
            watchdog.received += len(chunk)
            bar.update(len(chunk))
        partfile.sync_part(f, part)
    return written


def _body_chunks(raw):
    """The body exactly as sent, in pieces as they arrive.

    decode_content=False: a .gz that a server labels Content-Encoding: gzip must not be inflated
    on the way (requests' iter_content would), or its checksum cannot match. read1 returns what
    one socket read brings, so the watchdog sees a slow body's progress byte by byte; plain
    read(n) waits for all n bytes, hence the small pieces where read1 is missing (urllib3 < 2.1).
    """
    read1 = getattr(raw, "read1", None)
    if read1 is None:
        yield from raw.stream(SMALL_CHUNK_BYTES, decode_content=False)
        return
    while chunk := read1(CHUNK_BYTES, decode_content=False):
        yield chunk
