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
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from mlknobs import __version__
from mlknobs.atomic import fsync_dir
from mlknobs.datasets import DatasetSpec
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
                settings: DownloadSettings = DownloadSettings()) -> Path:
    """Return DATA_DIR/<dataset>/<filename>, verified; download it first if needed."""
    expected = spec.sha256[filename]
    dest_dir = Path(data_dir) / spec.name
    final = dest_dir / filename
    if final.is_file() and not force:
        if sha256_of(final) == expected:
            return final
        # A corrupt copy under the final name (edited by hand, disk error): fetch a fresh one.
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = dest_dir / f".{filename}.part"
    if force and part.exists():
        part.unlink()
    reasons = []
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
        os.replace(part, final)
        fsync_dir(dest_dir)
        return final
    lines = [f"could not download {spec.name}/{filename} from any mirror:"]
    lines += [f"  - {r}" for r in reasons] or ["  - no mirrors configured"]
    lines.append(OFFLINE_HINT.format(dataset=spec.name))
    raise DownloadError("\n".join(lines))


def ensure_dataset(spec: DatasetSpec, data_dir: Path, user_mirrors=(), force: bool = False,
                   progress: bool | None = None,
                   settings: DownloadSettings = DownloadSettings()) -> dict[str, Path]:
    """Make sure all four files of a dataset are present and verified; return their paths."""
    mirrors = mirrors_for(spec, user_mirrors)
    return {name: ensure_file(spec, name, data_dir, mirrors, force, progress, settings)
            for name in spec.files}


def _new_session():
    import requests  # imported here: `mlknobs --help` should not pay for it

    session = requests.Session()
    session.headers["User-Agent"] = f"mlknobs/{__version__}"
    return session


def _progress_bar(total: int | None, initial: int, desc: str, progress: bool | None):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=(not progress) if progress is not None else None)


def _copy_local(source: Path, part: Path, progress: bool | None) -> None:
    if not source.is_file():
        raise _MirrorFailed("no such file" if not source.exists() else "not a regular file")
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

    failures = 0
    while True:
        resumed = part.exists() and part.stat().st_size > 0
        try:
            _fetch_http(session, url, part, settings, progress)
            _verify(part, expected, resumed)
            return
        except _Retryable as e:
            reason = str(e)
        except requests.Timeout:
            reason = f"timed out (connect {settings.connect_timeout:g} s, read {settings.read_timeout:g} s)"
        except requests.ConnectionError as e:
            reason = f"connection failed ({_short(e)})"
        except requests.RequestException as e:
            # Truncated chunked bodies, invalid responses: passing faults worth one more try.
            reason = f"transfer failed ({_short(e)})"
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
        if not appending:
            offset = 0  # the server ignored our Range: start over
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        with open(part, "ab" if appending else "wb") as f, \
                _progress_bar(total, offset, url.rsplit("/", 1)[-1], progress) as bar:
            for chunk in resp.iter_content(CHUNK_BYTES):
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        if total is not None and part.stat().st_size != total:
            raise _Retryable(f"connection closed early ({part.stat().st_size} of {total} bytes)")


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "…"

