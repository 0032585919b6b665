"""Fetch dataset files from mirrors, verify them by size and SHA-256, and write them atomically.

A mirror is either a built-in base URL (the official layout: BASE + file name) or one the user
gives: an http(s)/file URL or a local folder holding one sub-folder per dataset, laid out like the
data dir (BASE/mnist/train-images-idx3-ubyte.gz). User mirrors are tried first, in order.

Nothing reaches its final name before its checksum passes: bytes go to a hidden `.part` file
beside it, which survives a failed attempt so that the next attempt or mirror can resume it with an
HTTP Range request. When the download fails for good (or is interrupted) the `.part` is removed;
one left by a killed run is resumed by the next.

A mirror may be hostile or broken, so every transfer is bounded:
- in size: no file is written past its official size, and a Content-Length above it is refused;
  a local mirror's file must be a regular file (not a FIFO or /dev/zero) no larger than that;
- in time: a watchdog thread closes the socket of a transfer that stays below a minimum speed
  (like curl's --speed-limit/--speed-time) or runs past a per-file deadline, headers included,
  which requests' per-read timeout alone cannot do against a server that sends a byte at a time.

Concurrent runs (several shells, parallel jobs) share a data dir safely: each file is fetched
under an exclusive OS lock (flock on DATA_DIR/<dataset>/.<file>.lock), so a second process waits,
then finds the verified file. The kernel drops the lock when its holder dies, kill -9 included.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import stat
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from time import monotonic  # imported by name: tests replace `time` to record the backoff sleeps
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

try:
    import fcntl
except ImportError:          # Windows: no flock; concurrent runs there are not coordinated
    fcntl = None

from mlknobs import __version__
from mlknobs.bounds import Range
from mlknobs.data.datasets import DatasetSpec
from mlknobs.errors import DataDirNotWritable, DownloadError, DownloadFailed, DownloadSettingsError, UnsupportedMirror
from mlknobs.files import fsync_dir

CHUNK_BYTES = 1 << 16
SMALL_CHUNK_BYTES = 1 << 10   # read size when urllib3 lacks read1 (see _body_chunks)
MAX_BACKOFF_WAIT = 60.0       # seconds: the longest single wait between two attempts


def _not_writable(folder: Path, error: OSError) -> DataDirNotWritable:
    return DataDirNotWritable(folder, error.strerror or str(error))


# --- mirrors ----------------------------------------------------------------------------------------

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
    """A user-given mirror; raises UnsupportedMirror (a ValueError) for one we cannot fetch from."""
    text = text.strip()
    if not text:
        raise UnsupportedMirror(text, "empty mirror")
    scheme = urlparse(text).scheme
    if scheme not in ("", "http", "https", "file") and not _looks_like_windows_path(text):
        raise UnsupportedMirror(text, f"unsupported mirror {text!r}: use an http(s):// or file:// URL "
                                      f"or a local folder")
    return Mirror(text, per_dataset=True)


def mirrors_for(spec: DatasetSpec, user_mirrors: tuple[str, ...] | list[str] = ()) -> list[Mirror]:
    """User mirrors first (in the order given), then the dataset's built-in ones."""
    return [parse_mirror(m) for m in user_mirrors] + [Mirror(m, per_dataset=False) for m in spec.mirrors]


# --- settings ---------------------------------------------------------------------------------------

# Upper bounds keep every wait finite and every product of them representable: without them
# MLKNOBS_DOWNLOAD_RETRIES=5000 made `backoff * 2 ** n` overflow, and a huge backoff slept for years.
SETTING_RANGES = {
    "connect_timeout": Range(0, 600, low_open=True),
    "read_timeout": Range(0, 600, low_open=True),
    "retries": Range(0, 20, integer=True),
    "backoff": Range(0, 60),
    "deadline": Range(0, 24 * 3600, low_open=True),
    "speed_limit": Range(0, 1 << 30, integer=True),
    "speed_time": Range(0, 3600, low_open=True),
}

# Environment variable -> the settings it sets (the timeout sets both the connect and the read one).
ENV_VARIABLES = {
    "MLKNOBS_DOWNLOAD_TIMEOUT": ("connect_timeout", "read_timeout"),
    "MLKNOBS_DOWNLOAD_RETRIES": ("retries",),
    "MLKNOBS_DOWNLOAD_BACKOFF": ("backoff",),
    "MLKNOBS_DOWNLOAD_DEADLINE": ("deadline",),
    "MLKNOBS_DOWNLOAD_SPEED_LIMIT": ("speed_limit",),
    "MLKNOBS_DOWNLOAD_SPEED_TIME": ("speed_time",),
}


@dataclass(frozen=True)
class DownloadSettings:
    connect_timeout: float = 10.0   # seconds to establish a connection
    read_timeout: float = 30.0      # seconds of silence allowed mid-transfer
    retries: int = 3                # further attempts per mirror after a connection error or 5xx
    backoff: float = 1.0            # first wait before a retry, doubled each time (each wait <= 60 s)
    # Seconds one file may take from one mirror, retries and waits included; then the next mirror.
    # 300 s lets a 100 KB/s link fetch the largest official file (Fashion-MNIST's 26.4 MB training
    # images, 264 s; MNIST's 9.9 MB takes 99 s), while a mirror that trickles just above the speed
    # limit is dropped after 5 minutes instead of hours.
    deadline: float = 300.0
    # A transfer slower than speed_limit bytes/s over speed_time seconds is abandoned (0: no limit),
    # as with curl --speed-limit 1024 --speed-time 30: a dead or trickling mirror goes in 30 s.
    speed_limit: int = 1024
    speed_time: float = 30.0

    def __post_init__(self) -> None:
        for field in fields(self):
            allowed, value = SETTING_RANGES[field.name], getattr(self, field.name)
            if not allowed.admits(value):
                raise DownloadSettingsError(field.name, value, allowed.describe())

    @classmethod
    def from_env(cls) -> DownloadSettings:
        """The defaults, adjusted by the MLKNOBS_DOWNLOAD_* variables in ENV_VARIABLES when set.

        A bad value raises DownloadSettingsError (a ValueError) naming the variable, e.g.
        "MLKNOBS_DOWNLOAD_RETRIES must be a whole number from 0 to 20, got '5000'".
        """
        settings = {}
        for variable, names in ENV_VARIABLES.items():
            value = _env_number(variable, SETTING_RANGES[names[0]])
            if value is not None:
                settings.update(dict.fromkeys(names, value))
        return cls(**settings)


def _env_number(name: str, allowed: Range) -> float | int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text) if allowed.integer else float(text)
    except ValueError:   # also int("9" * 5000): too many digits to convert
        value = None
    if value is None or not allowed.admits(value):
        raise DownloadSettingsError(name, text, allowed.describe())
    return value


def _backoff_wait(settings: DownloadSettings, failures: int) -> float:
    """Seconds to wait after the n-th failure: backoff, doubled each time, at most MAX_BACKOFF_WAIT."""
    return min(MAX_BACKOFF_WAIT, settings.backoff * 2.0 ** min(failures - 1, 64))


# --- downloading --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Expected:
    """What the official file is: every copy must match both."""
    sha256: str
    size: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _MirrorFailed(Exception):
    """This mirror cannot deliver the file; the message is the reason shown to the user."""


class _TooLarge(_MirrorFailed):
    """The mirror sent more bytes than the official file has; what it sent is worthless."""


class _Retryable(Exception):
    """A passing failure (connection cut, timeout, 5xx): try the same mirror again."""


def ensure_file(spec: DatasetSpec, filename: str, data_dir: Path, mirrors: list[Mirror],
                force: bool = False, progress: bool | None = None,
                settings: DownloadSettings | None = None) -> Path:
    """Return DATA_DIR/<dataset>/<filename>, verified; download it first if needed.

    `settings` defaults to DownloadSettings.from_env(). Raises DownloadError when no mirror
    delivers, DataDirNotWritable when the file cannot be written into the data dir.
    """
    settings = settings if settings is not None else DownloadSettings.from_env()
    expected = _Expected(spec.sha256[filename], spec.sizes[filename])
    folder = Path(data_dir) / spec.name
    final = folder / filename
    if not force and _is_verified(final, expected):
        return final   # the common case needs no lock, so a read-only data dir with its files works
    with file_lock(folder, filename):
        part = folder / f".{filename}.part"
        try:
            return _ensure_locked(spec, filename, final, part, expected, mirrors, force, progress, settings)
        except BaseException:
            # A run that ends, by failure or Ctrl-C, cleans up after itself; only a killed run
            # leaves a .part behind, and the next run resumes it.
            _remove_quietly(part)
            raise


def _ensure_locked(spec: DatasetSpec, filename: str, final: Path, part: Path, expected: _Expected,
                   mirrors: list[Mirror], force: bool, progress: bool | None,
                   settings: DownloadSettings) -> Path:
    """ensure_file's work while holding the file's lock: no other process touches its files now."""
    folder = final.parent
    remove_stale_temporaries(folder, filename)
    reasons = []
    if not force and final.exists():
        if _is_verified(final, expected):
            _remove_quietly(part)   # another process fetched it while we waited for the lock
            return final
        # A corrupt copy under the final name (edited by hand, disk error): fetch a fresh one,
        # and say so if no mirror can deliver one.
        reasons.append(f"{final}: present but fails its SHA-256 check")
    if force or _size_or_zero(part) > expected.size:
        _remove_quietly(part)   # a partial file bigger than the whole one is garbage
    if _fetch_from_mirrors(spec.name, filename, part, expected, mirrors, progress, settings, reasons):
        try:
            os.replace(part, final)
        except OSError as e:
            raise _not_writable(folder, e) from e
        fsync_dir(folder)
        return final
    raise DownloadFailed(spec.name, filename, reasons)


def _fetch_from_mirrors(dataset: str, filename: str, part: Path, expected: _Expected, mirrors: list[Mirror],
                        progress: bool | None, settings: DownloadSettings, reasons: list[str]) -> bool:
    """Try each mirror in turn until `part` holds a verified copy; note why each one failed."""
    session = None
    try:
        for mirror in mirrors:
            where = mirror.locate(dataset, filename)
            try:
                if mirror.is_local:
                    _copy_local(Path(where), part, expected.size, progress)
                    _verify(part, expected, resumed=False)
                else:
                    session = session or _new_session()
                    _fetch_http_verified(session, where, part, expected, settings, progress)
                return True
            except _MirrorFailed as e:
                reasons.append(f"{where}: {e}")
        return False
    finally:
        if session is not None:
            session.close()


def ensure_dataset(spec: DatasetSpec, data_dir: Path, user_mirrors=(), force: bool = False,
                   progress: bool | None = None,
                   settings: DownloadSettings | None = None) -> dict[str, Path]:
    """Make sure all four files of a dataset are present and verified; return their paths."""
    settings = settings if settings is not None else DownloadSettings.from_env()
    mirrors = mirrors_for(spec, user_mirrors)
    return {name: ensure_file(spec, name, data_dir, mirrors, force, progress, settings)
            for name in spec.files}


def _is_verified(path: Path, expected: _Expected) -> bool:
    """Is there a regular file at `path` with the official size and checksum?"""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as e:
        raise DownloadError(f"cannot use data folder {path.parent}: {e.strerror or e}") from e
    # Checked before hashing: a FIFO would block the read, a huge file would take minutes.
    if not stat.S_ISREG(info.st_mode) or info.st_size != expected.size:
        return False
    try:
        return sha256_of(path) == expected.sha256
    except OSError as e:
        raise DownloadError(f"cannot read {path}: {e.strerror or e}") from e


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def remove_stale_temporaries(folder: Path, filename: str) -> None:
    """Delete hidden `.<filename>.*.tmp` files in `folder` (atomic_write's): a killed writer's leftovers.

    Call it only while holding the lock of that file's writers (file_lock), so that no live process
    can own one of them.
    """
    prefix = f".{filename}."
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            _remove_quietly(folder / name)


# --- one process per file -------------------------------------------------------------------------------

_held_locks = threading.local()   # lock paths this thread holds: taking one again is a no-op


@contextmanager
def file_lock(folder: Path, filename: str, required: bool = True):
    """Hold the exclusive lock of DATA_DIR/<dataset>/<filename>, creating `folder` if needed.

    Waits while another process (or thread) holds it. Re-entrant within a thread, so a caller may
    wrap ensure_file and its own follow-up work (parsing, caching) in one lock. If the lock file
    cannot be created, raises DataDirNotWritable, or, with required=False, yields False and runs
    unlocked (a read-only data dir that already holds its files needs no lock). Yields whether the
    lock is held (False also on systems without flock, where runs are not coordinated).
    """
    folder = Path(folder)
    lock_path = folder / f".{filename}.lock"
    key = os.path.abspath(lock_path)
    held = _locks_held_by_this_thread()
    if key in held:
        yield True
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _acquire(lock_path) if fcntl is not None else None
    except _NoFlock:
        fd = None
    except OSError as e:
        if required:
            raise _not_writable(folder, e) from e
        fd = None
    if fd is None:   # unlocked: a read-only folder (required=False), or no flock here
        yield False
        return
    held.add(key)
    try:
        yield True
    finally:
        held.discard(key)
        _release(lock_path, fd)


def _locks_held_by_this_thread() -> set[str]:
    if not hasattr(_held_locks, "paths"):
        _held_locks.paths = set()
    return _held_locks.paths


class _NoFlock(Exception):
    """The data dir's file system cannot flock (e.g. NFSv3 without lockd): go on without the lock."""


# What flock says on a file system that does not support it.
_FLOCK_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


def _acquire(lock_path: Path) -> int:
    """flock the lock file, waiting for its holder; returns the open descriptor."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as e:
                if e.errno not in _FLOCK_UNSUPPORTED:
                    raise
                _remove_quietly(lock_path)   # no one can hold a lock here, so no one needs the file
                raise _NoFlock() from e
            # The holder before us deletes the lock file as it releases it (so none is left behind).
            # If we locked such a deleted file, we hold nothing: start again on the current one.
            if _names_file(lock_path, fd):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _release(lock_path: Path, fd: int) -> None:
    """Delete the lock file while still holding it, then drop the lock by closing it."""
    try:
        if _names_file(lock_path, fd):
            os.unlink(lock_path)
    except OSError:
        pass   # left in place: harmless, the next holder reuses it
    finally:
        os.close(fd)


def _names_file(path: Path, fd: int) -> bool:
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return os.path.samestat(on_disk, os.fstat(fd))


# --- local mirrors ---------------------------------------------------------------------------------------

def _progress_bar(total: int | None, initial: int, desc: str, progress: bool | None):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=(not progress) if progress is not None else None)


def _copy_local(source: Path, part: Path, size: int, progress: bool | None) -> None:
    """Copy a local mirror's file into `part`, from scratch (a local copy is cheap to restart)."""
    with _open_local_source(source, size) as src:
        try:
            dst = open(part, "wb")
        except OSError as e:
            raise _not_writable(part.parent, e) from e
        with dst, _progress_bar(size, 0, source.name, progress) as bar:
            copied = 0
            # At most size + 1 bytes: a file that grows, or a /proc-like one that says it is empty,
            # cannot make us copy forever.
            while block := _read_source(src, min(1 << 20, size + 1 - copied)):
                copied += len(block)
                if copied > size:
                    break
                _write_part(dst, block, part)
                bar.update(len(block))
            _sync_part(dst, part)
    if copied > size:
        _remove_quietly(part)
        raise _TooLarge(f"more than the {size} bytes of the official file")


@contextmanager
def _open_local_source(source: Path, size: int):
    """The mirror's file, opened for reading if it is a regular file of at most `size` bytes."""
    nonblocking = getattr(os, "O_NONBLOCK", 0)   # POSIX only; Windows has no FIFOs to open
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer. fstat then refuses it.
        fd = os.open(source, os.O_RDONLY | nonblocking | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise _MirrorFailed(_missing_local_file(source)) from None
    except OSError as e:
        raise _MirrorFailed(f"cannot read ({e.strerror or e})") from e
    try:
        info = os.fstat(fd)   # of what we opened: the path may have changed since
        if not stat.S_ISREG(info.st_mode):
            raise _MirrorFailed(f"not a regular file ({_file_type(info.st_mode)})")
        if info.st_size > size:
            raise _TooLarge(f"{info.st_size} bytes, more than the {size} bytes of the official file")
        if nonblocking:
            os.set_blocking(fd, True)
        src = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with src:
        yield src


def _missing_local_file(source: Path) -> str:
    flat = source.parent.parent / source.name
    if flat.is_file():
        # The user pointed at the dataset folder itself rather than the folder above it.
        return f"no such file (but {flat} exists: pass its parent folder {flat.parent.parent} as the mirror)"
    return "no such file"


def _file_type(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "a special file")


def _read_source(src, n: int) -> bytes:
    try:
        return src.read(n)
    except OSError as e:
        raise _MirrorFailed(f"cannot read ({e.strerror or e})") from e


def _write_part(f, data: bytes, part: Path) -> None:
    try:
        f.write(data)
    except OSError as e:
        raise _not_writable(part.parent, e) from e


def _sync_part(f, part: Path) -> None:
    try:
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
        raise _not_writable(part.parent, e) from e


def _verify(part: Path, expected: _Expected, resumed: bool) -> None:
    with open(part, "rb") as f:
        head = f.read(512)
    if head.lstrip()[:1] == b"<" and b"html" in head.lower():
        part.unlink()
        raise _MirrorFailed("got an HTML page instead of data")
    size = part.stat().st_size
    actual = sha256_of(part) if size == expected.size else None
    if actual != expected.sha256:
        part.unlink()
        if resumed:
            raise _Retryable("checksum mismatch after resuming a partial file")
        if actual is None:
            raise _MirrorFailed(f"checksum mismatch (wrong size: {size} bytes, expected {expected.size})")
        raise _MirrorFailed(f"checksum mismatch (got sha256 {actual[:12]}…, expected {expected.sha256[:12]}…)")


# --- HTTP mirrors -----------------------------------------------------------------------------------------

def _new_session():
    import requests  # imported here: `mlknobs --help` should not pay for it

    session = requests.Session()
    adapter = _watched_adapter_class()()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"mlknobs/{__version__}"
    # The checksum is of the .gz bytes: ask for them as stored, never re-encoded in transit.
    session.headers["Accept-Encoding"] = "identity"
    return session


def _fetch_http_verified(session, url: str, part: Path, expected: _Expected,
                         settings: DownloadSettings, progress: bool | None) -> None:
    """Download url into part and verify it; retry passing failures with exponential backoff.

    All attempts together get settings.deadline seconds; a deadline or speed failure is not
    retried (the next mirror is more likely to help).
    """
    deadline_at = monotonic() + settings.deadline
    failures = 0
    while True:
        resumed = _size_or_zero(part) > 0
        reason = None
        with _Watchdog(deadline_at, settings) as watchdog:
            try:
                _fetch_http(session, url, part, expected.size, settings, progress, watchdog)
            except Exception as e:
                if watchdog.reason is not None:   # the failure is the watchdog closing the socket
                    raise _MirrorFailed(watchdog.reason) from e
                reason = _retry_reason(e, settings)
        if reason is None:
            try:
                _verify(part, expected, resumed)
                return
            except _Retryable as e:
                reason = str(e)
        failures += 1
        if failures > settings.retries:
            raise _MirrorFailed(f"{reason}; gave up after {failures} attempts")
        wait = _backoff_wait(settings, failures)
        if monotonic() + wait >= deadline_at:
            raise _MirrorFailed(f"{reason}; no time left for another attempt "
                                f"within the {settings.deadline:g} s deadline")
        time.sleep(wait)


def _retry_reason(error: Exception, settings: DownloadSettings) -> str:
    """Why an attempt failed, if another attempt may do better; re-raises the error otherwise."""
    import requests
    import urllib3

    timed_out = f"timed out (connect {settings.connect_timeout:g} s, read {settings.read_timeout:g} s)"
    if isinstance(error, _Retryable):
        return str(error)
    if isinstance(error, (requests.Timeout, urllib3.exceptions.ReadTimeoutError)):
        return timed_out
    if isinstance(error, requests.ConnectionError):
        if _find_cause(error, socket.gaierror) is not None:
            # An unknown host (or no network at all) does not come back in a few seconds.
            raise _MirrorFailed("host name not found") from error
        return timed_out if _find_cause(error, TimeoutError) else f"connection failed ({_connection_reason(error)})"
    if isinstance(error, (requests.RequestException, urllib3.exceptions.HTTPError)):
        # Connection cut mid-body, invalid responses: passing faults worth another try.
        return f"transfer failed ({_connection_reason(error)})"
    raise error   # _MirrorFailed, DataDirNotWritable, programming errors


def _fetch_http(session, url: str, part: Path, size: int, settings: DownloadSettings,
                progress: bool | None, watchdog: _Watchdog) -> None:
    offset = _size_or_zero(part)
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
        length = resp.headers.get("Content-Length", "").strip()
        total = offset + int(length) if length.isdigit() else None
        if total is not None and total > size:
            # Refused before a byte is written: a false huge length must not fill the disk.
            raise _MirrorFailed(f"announces {total} bytes, more than the {size} bytes of the official file")
        bar = lambda: _progress_bar(total or size, offset, url.rsplit("/", 1)[-1], progress)
        try:
            written = _save_body(resp, part, appending, offset, size, watchdog, bar)
        except _TooLarge:
            part.unlink(missing_ok=True)
            raise
    if watchdog.reason is not None:
        # Closing the socket ends a body without Content-Length like a normal end would.
        raise _MirrorFailed(watchdog.reason)
    if written < (total or size):
        raise _Retryable(f"connection closed early ({written} of {total or size} bytes)")


def _save_body(resp, part: Path, appending: bool, offset: int, size: int, watchdog: _Watchdog,
               make_bar) -> int:
    """Write the response body after `offset` bytes of `part`; return the part's size after it.

    Raises _TooLarge as soon as the body would take the file past `size` bytes.
    """
    try:
        f = open(part, "ab" if appending else "wb")
    except OSError as e:
        raise _not_writable(part.parent, e) from e
    written = offset
    with f, make_bar() as bar:
        for chunk in _body_chunks(resp.raw):
            if watchdog.reason is not None:
                break   # normally the watchdog's shutdown ends the read; this covers a socket it missed
            if written + len(chunk) > size:
                raise _TooLarge(f"sent more than the {size} bytes of the official file")
            _write_part(f, chunk, part)
            written += len(chunk)
            watchdog.received += len(chunk)
            bar.update(len(chunk))
        _sync_part(f, part)
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


# --- the watchdog: deadline and minimum speed ------------------------------------------------------------

_current = threading.local()   # the watchdog of the transfer running in this thread, if any


class _Watchdog:
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

    def __enter__(self) -> _Watchdog:
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
def _watched_adapter_class():
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


# --- error wording -----------------------------------------------------------------------------------------

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
