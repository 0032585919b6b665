"""Fetch dataset files from mirrors, verify them by SHA-256, and write them atomically.

A mirror is either a built-in base URL (the official layout: BASE + file name) or one the user
gives: an http(s)/file URL or a local folder holding one sub-folder per dataset, laid out like the
data dir (BASE/mnist/train-images-idx3-ubyte.gz). User mirrors are tried first, in order.

Nothing reaches its final name before its checksum passes: bytes go to a hidden `.part` file
beside it, which survives a failed attempt so that the next attempt (or mirror, or run) can resume
it with an HTTP Range request.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from mlknobs import __version__
from mlknobs.files import fsync_dir
from mlknobs.data.datasets import DatasetSpec
from mlknobs.errors import DownloadError

CHUNK_BYTES = 1 << 16
OFFLINE_HINT = ("On a machine without internet, put the four .gz files in FOLDER/{dataset}/ "
                "and pass --mirror FOLDER (or set MLKNOBS_MIRROR=FOLDER).")


@dataclass(frozen=True)
class Mirror:
    base: str                 # URL or local folder, as the user wrote it
    per_dataset: bool = True  # user mirrors hold BASE/<dataset>/<file>; built-ins BASE<file>

    @property
    def is_local(self) -> bool:
        return urlparse(self.base).scheme in ("", "file") or _looks_like_windows_path(self.base)

    def locate(self, dataset: str, filename: str) -> str:
        """The URL or local path of one file on this mirror."""
        if self.is_local:
            return str(self.local_root() / (dataset if self.per_dataset else "") / filename)
        base = self.base if self.base.endswith("/") else self.base + "/"
        return f"{base}{dataset}/{filename}" if self.per_dataset else f"{base}{filename}"

    def local_root(self) -> Path:
        parsed = urlparse(self.base)
        if parsed.scheme == "file":
            return Path(url2pathname(unquote(parsed.path)))
        return Path(self.base).expanduser()


def _looks_like_windows_path(text: str) -> bool:
    return len(text) > 2 and text[1] == ":" and text[0].isalpha() and text[2] in "\\/"


def parse_mirror(text: str) -> Mirror:
    """A user-given mirror; raises ValueError for a scheme we cannot fetch from."""
    text = text.strip()
    if not text:
        raise ValueError("empty mirror")
    scheme = urlparse(text).scheme
    if scheme not in ("", "http", "https", "file") and not _looks_like_windows_path(text):
        raise ValueError(f"unsupported mirror {text!r}: use an http(s):// or file:// URL or a local folder")
    return Mirror(text, per_dataset=True)


def mirrors_for(spec: DatasetSpec, user_mirrors: tuple[str, ...] | list[str] = ()) -> list[Mirror]:
    """User mirrors first (in the order given), then the dataset's built-in ones."""
    return [parse_mirror(m) for m in user_mirrors] + [Mirror(m, per_dataset=False) for m in spec.mirrors]


@dataclass(frozen=True)
class DownloadSettings:
    connect_timeout: float = 10.0   # seconds to establish a connection
    read_timeout: float = 30.0      # seconds of silence allowed mid-transfer
    retries: int = 3                # further attempts per mirror after a connection error or 5xx
    backoff: float = 1.0            # first wait before a retry, doubled each time

    @classmethod
    def from_env(cls) -> DownloadSettings:
        """The defaults, adjusted by MLKNOBS_DOWNLOAD_{TIMEOUT,RETRIES,BACKOFF} when set.

        Not CLI options: they are for slow links and for tests that must not sleep between retries.
        MLKNOBS_DOWNLOAD_TIMEOUT sets both the connect and the read timeout.
        """
        settings = {}
        timeout = _env_number("MLKNOBS_DOWNLOAD_TIMEOUT", float, positive=True)
        if timeout is not None:
            settings.update(connect_timeout=timeout, read_timeout=timeout)
        retries = _env_number("MLKNOBS_DOWNLOAD_RETRIES", int)
        if retries is not None:
            settings["retries"] = retries
        backoff = _env_number("MLKNOBS_DOWNLOAD_BACKOFF", float)
        if backoff is not None:
            settings["backoff"] = backoff
        return cls(**settings)


def _env_number(name: str, kind: type, positive: bool = False) -> float | int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        value = None
    # Written so that NaN fails too; infinity would hang forever on a silent server.
    if value is None or not (value > 0 if positive else value >= 0) or value == float("inf"):
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name} must be {what} {'> 0' if positive else '>= 0'}, got {text!r}")
    return value


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _MirrorFailed(Exception):
    """This mirror cannot deliver the file; the message is the reason shown to the user."""


class _Retryable(Exception):
    """A passing failure (connection cut, timeout, 5xx): try the same mirror again."""


def ensure_file(spec: DatasetSpec, filename: str, data_dir: Path, mirrors: list[Mirror],
                force: bool = False, progress: bool | None = None,
                settings: DownloadSettings | None = None) -> Path:
    """Return DATA_DIR/<dataset>/<filename>, verified; download it first if needed.

    `settings` defaults to DownloadSettings.from_env().
    """
    settings = settings if settings is not None else DownloadSettings.from_env()
    expected = spec.sha256[filename]
    dest_dir = Path(data_dir) / spec.name
    final = dest_dir / filename
    reasons = []
    try:
        if final.is_file() and not force:
            if sha256_of(final) == expected:
                return final
            # A corrupt copy under the final name (edited by hand, disk error): fetch a fresh one,
            # and say so if no mirror can deliver one.
            reasons.append(f"{final}: present but fails its SHA-256 check")
        dest_dir.mkdir(parents=True, exist_ok=True)
        part = dest_dir / f".{filename}.part"
        if force:
            part.unlink(missing_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot use data folder {dest_dir}: {e.strerror or e}") from e
    session = None
    for mirror in mirrors:
        where = mirror.locate(spec.name, filename)
        try:
            if mirror.is_local:
                _copy_local(Path(where), part, progress)
                _verify(part, expected, resumed=False)
            else:
                if session is None:
                    session = _new_session()
                _fetch_http_verified(session, where, part, expected, settings, progress)
        except _MirrorFailed as e:
            reasons.append(f"{where}: {e}")
            continue
        try:
            os.replace(part, final)
        except OSError as e:
            raise DownloadError(f"cannot save {final}: {e.strerror or e}") from e
        fsync_dir(dest_dir)
        return final
    lines = [f"could not download {spec.name}/{filename} from any mirror:"]
    lines += [f"  - {r}" for r in reasons] or ["  - no mirrors configured"]
    lines.append(OFFLINE_HINT.format(dataset=spec.name))
    raise DownloadError("\n".join(lines))


def ensure_dataset(spec: DatasetSpec, data_dir: Path, user_mirrors=(), force: bool = False,
                   progress: bool | None = None,
                   settings: DownloadSettings | None = None) -> dict[str, Path]:
    """Make sure all four files of a dataset are present and verified; return their paths."""
    settings = settings if settings is not None else DownloadSettings.from_env()
    mirrors = mirrors_for(spec, user_mirrors)
    return {name: ensure_file(spec, name, data_dir, mirrors, force, progress, settings)
            for name in spec.files}


def _new_session():
    import requests  # imported here: `mlknobs --help` should not pay for it

    session = requests.Session()
    session.headers["User-Agent"] = f"mlknobs/{__version__}"
    # The checksum is of the .gz bytes: ask for them as stored, never re-encoded in transit.
    session.headers["Accept-Encoding"] = "identity"
    return session


def _progress_bar(total: int | None, initial: int, desc: str, progress: bool | None):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=(not progress) if progress is not None else None)


def _copy_local(source: Path, part: Path, progress: bool | None) -> None:
    if not source.is_file():
        if source.exists():
            raise _MirrorFailed("not a regular file")
        flat = source.parent.parent / source.name
        if flat.is_file():
            # The user pointed at the dataset folder itself rather than the folder above it.
            raise _MirrorFailed(f"no such file (but {flat} exists: pass its parent folder "
                                f"{flat.parent.parent} as the mirror)")
        raise _MirrorFailed("no such file")
    try:
        with open(source, "rb") as src, open(part, "wb") as dst, \
                _progress_bar(source.stat().st_size, 0, source.name, progress) as bar:
            for block in iter(lambda: src.read(1 << 20), b""):
                dst.write(block)
                bar.update(len(block))
            dst.flush()
            os.fsync(dst.fileno())
    except OSError as e:
        raise _MirrorFailed(f"cannot copy: {e.strerror or e}") from e


def _verify(part: Path, expected: str, resumed: bool) -> None:
    with open(part, "rb") as f:
        head = f.read(512)
    if head.lstrip()[:1] == b"<" and b"html" in head.lower():
        part.unlink()
        raise _MirrorFailed("got an HTML page instead of data")
    actual = sha256_of(part)
    if actual != expected:
        part.unlink()
        if resumed:
            raise _Retryable("checksum mismatch after resuming a partial file")
        raise _MirrorFailed(f"checksum mismatch (got sha256 {actual[:12]}…, expected {expected[:12]}…)")


def _fetch_http_verified(session, url: str, part: Path, expected: str,
                         settings: DownloadSettings, progress: bool | None) -> None:
    """Download url into part and verify it; retry passing failures with exponential backoff."""
    import requests
    import urllib3

    timed_out = f"timed out (connect {settings.connect_timeout:g} s, read {settings.read_timeout:g} s)"
    failures = 0
    while True:
        resumed = part.exists() and part.stat().st_size > 0
        try:
            _fetch_http(session, url, part, settings, progress)
            _verify(part, expected, resumed)
            return
        except _Retryable as e:
            reason = str(e)
        except (requests.Timeout, urllib3.exceptions.ReadTimeoutError):
            reason = timed_out
        except requests.ConnectionError as e:
            if _find_cause(e, socket.gaierror) is not None:
                # An unknown host (or no network at all) does not come back in a few seconds.
                raise _MirrorFailed("host name not found") from e
            reason = timed_out if _find_cause(e, TimeoutError) else f"connection failed ({_connection_reason(e)})"
        except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
            # Connection cut mid-body, invalid responses: passing faults worth another try.
            reason = f"transfer failed ({_connection_reason(e)})"
        except OSError as e:
            raise _MirrorFailed(f"cannot write {part}: {e.strerror or e}") from e
        failures += 1
        if failures > settings.retries:
            raise _MirrorFailed(f"{reason}; gave up after {failures} attempts")
        time.sleep(settings.backoff * 2 ** (failures - 1))


def _fetch_http(session, url: str, part: Path, settings: DownloadSettings, progress: bool | None) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    timeout = (settings.connect_timeout, settings.read_timeout)
    with session.get(url, stream=True, timeout=timeout, headers=headers, allow_redirects=True) as resp:
        status = resp.status_code
        if status == 416 and offset:
            # The partial file is already whole (or the server disagrees): let the checksum decide.
            return
        if status >= 500 or status == 429:
            raise _Retryable(f"HTTP {status} {resp.reason or ''}".rstrip())
        if status not in (200, 206):
            raise _MirrorFailed(f"HTTP {status} {resp.reason or ''}".rstrip())
        content_type = resp.headers.get("Content-Type", "")
        if "text/html" in content_type.lower():
            raise _MirrorFailed(f"got an HTML page instead of data (Content-Type: {content_type})")
        appending = status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
        if status == 206 and not appending:
            part.unlink(missing_ok=True)
            raise _Retryable(f"server sent another range than asked for "
                             f"(Content-Range: {resp.headers.get('Content-Range', 'none')})")
        if not appending:
            offset = 0  # the server ignored our Range: start over
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        with open(part, "ab" if appending else "wb") as f, \
                _progress_bar(total, offset, url.rsplit("/", 1)[-1], progress) as bar:
            # The bytes exactly as sent: a .gz that a server labels Content-Encoding: gzip must not
            # be inflated on the way (requests' iter_content would), or its checksum cannot match.
            for chunk in resp.raw.stream(CHUNK_BYTES, decode_content=False):
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        if total is not None and part.stat().st_size != total:
            raise _Retryable(f"connection closed early ({part.stat().st_size} of {total} bytes)")


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "…"


def _causes(error: BaseException):
    """The error and everything behind it: requests wraps urllib3, which wraps the socket error."""
    seen, stack = set(), [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        stack += [a for a in e.args if isinstance(a, BaseException)]


def _find_cause(error: BaseException, kind: type) -> BaseException | None:
    return next((e for e in _causes(error) if isinstance(e, kind)), None)


def _connection_reason(error: BaseException) -> str:
    """'connection refused', 'connection reset', … rather than urllib3's paragraph about pools."""
    for e in _causes(error):
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, (ConnectionResetError, ConnectionAbortedError)):
            return "connection reset"
        if type(e).__name__ == "IncompleteRead":
            return "connection closed mid-transfer"
        if isinstance(e, OSError) and e.strerror:
            return e.strerror.lower()
    return _short(error)

