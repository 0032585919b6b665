"""Files in and out: read only regular files of bounded size, write atomically, one writer at a time.

Reading: `open_regular` opens a path only if it leads to a regular file no larger than a cap
(a FIFO, a device such as /dev/zero, a socket or a directory is refused, by name, without
blocking), and `read_bounded` reads at most a cap from any stream (stdin included), so no input
can make mlknobs read until memory runs out.

Writing: `check_writable` fails early for an output that could not be written (or is a device, a
FIFO, ... that must not be replaced by a regular file); `atomic_write` writes a hidden temp file
beside the output and renames it over it, so a reader sees the old content or the new, never half
of either; `OutputLock` keeps a second mlknobs from writing the same output at the same time, and
`remove_stale_temps` deletes the temp files a killed writer left behind.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from mlknobs.errors import OutputError

# mkstemp creates files readable by the owner only; give the result the usual umask permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)

READ_CHUNK = 1 << 20          # read_bounded reads this much at a time
LOCK_INFO_BYTES = 4096        # at most this much of a lock file is read to name its holder


class OutputBusy(OutputError):
    """Another process is writing the same output right now (it holds the output's lock)."""

    def __init__(self, message: str, path: Path, pid: int | None = None, host: str | None = None,
                 command: str | None = None, since: str | None = None):
        super().__init__(message)
        self.path, self.pid, self.host, self.command, self.since = path, pid, host, command, since


# --- reading --------------------------------------------------------------------------------------

_FILE_TYPES = (   # stat test, the type in words
    (stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
)


def describe_file_type(mode: int) -> str:
    """What a stat mode is, in words: 'a directory', 'a FIFO (named pipe)', ..."""
    return next((words for is_type, words in _FILE_TYPES if is_type(mode)), "not a regular file")


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB' (binary units, as the limits are set)."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.4g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _leads_to(path: Path, name: str) -> str:
    """' (model.npz leads to /dev/zero)' when `path` goes through a symlink, else ''."""
    try:
        real = os.path.realpath(path)
        plain = os.path.abspath(path)
    except (OSError, ValueError):
        return ""
    return f" ({name} leads to {_one_line(real)})" if real != plain else ""


def open_regular(path: Path, max_bytes: int, *, error: type[Exception], name: str | None = None,
                 kind: str = "file") -> BinaryIO:
    """Open `path` for binary reading if it is (after symlinks) a regular file of at most max_bytes.

    Anything else raises `error` (the caller's type, e.g. ModelFileError or ImageError) with a
    one-line message naming the file and what it is instead: "model.npz: is a character device,
    not a regular file (model.npz leads to /dev/zero)". The path is stat-ed before it is opened, so
    a device is never opened at all; it is opened with O_NONBLOCK (opening a FIFO that a race put in
    its place cannot block) and checked again with fstat on the open descriptor, then switched back
    to blocking reads. The caller still reads with a bound (read_bounded, or sizes it checked):
    a regular file can grow after the check.
    """
    path = Path(path)
    name = str(path) if name is None else name
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as e:
        raise error(f"{name}: no such file") from e
    except (OSError, ValueError) as e:            # ValueError: a NUL byte in the path
        raise error(f"{name}: cannot open ({getattr(e, 'strerror', None) or e})") from e
    _check_regular(mode, path, name, error)      # a device or FIFO is never even opened
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as e:
        raise error(f"{name}: no such file") from e
    except OSError as e:
        if e.errno == errno.ENXIO:        # a socket (or a device without its driver) cannot be opened
            raise error(f"{name}: is {describe_file_type(_mode_or_zero(path))}, not a regular file"
                        f"{_leads_to(path, name)}") from e
        raise error(f"{name}: cannot open ({e.strerror or e})") from e
    try:
        info = os.fstat(fd)
        _check_regular(info.st_mode, path, name, error)     # the path may have changed since stat
        if info.st_size > max_bytes:
            raise error(f"{name}: {human_size(info.st_size)} is too large for a {kind} "
                        f"(limit {human_size(max_bytes)})")
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(mode: int, path: Path, name: str, error: type[Exception]) -> None:
    if not stat.S_ISREG(mode):
        raise error(f"{name}: is {describe_file_type(mode)}, not a regular file{_leads_to(path, name)}")


def _mode_or_zero(path: Path) -> int:
    try:
        return os.stat(path).st_mode
    except OSError:
        return 0


def read_bounded(stream: BinaryIO, limit: int, name: str, *, error: type[Exception],
                 kind: str = "input") -> bytes:
    """All bytes of a binary stream, if there are at most `limit`; raise `error` beyond that.

    Reads at most limit + 1 bytes (in READ_CHUNK pieces), so an endless stream such as
    `cat /dev/zero | mlknobs predict -` costs limit + 1 bytes of memory and then stops with
    "<stdin>: more than 64 MiB, too large for a picture". A read error is raised as `error` too.
    """
    data = bytearray()
    try:
        while len(data) <= limit:
            chunk = stream.read(min(READ_CHUNK, limit + 1 - len(data)))
            if chunk is None:            # a non-blocking stream with nothing to read yet
                raise error(f"{name}: cannot read (the input is in non-blocking mode)")
            if not chunk:
                return bytes(data)
            data += chunk
    except OSError as e:
        raise error(f"{name}: cannot read ({e.strerror or e})") from e
    raise error(f"{name}: more than {human_size(limit)}, too large for a {kind}")


# --- writing --------------------------------------------------------------------------------------

def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call write(f) on a temp file beside `path`, fsync it, then rename it over `path`.

    On any failure (including Ctrl-C) the temp file is removed and `path` is untouched. An existing
    `path` that is not a regular file (a device, a FIFO, a directory, or a symlink to one) is
    refused with OutputError, never replaced. A symlink to a regular file is replaced by the new
    file (the link itself, as `mv` would).
    """
    path = Path(path)
    _refuse_special(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        _refuse_special(path)            # one more look just before the rename
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _refuse_special(path: Path) -> None:
    """Raise OutputError if `path` exists (after symlinks) and is not a regular file."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return                           # nothing there (or a dangling symlink): a new file
    except (OSError, ValueError) as e:   # ValueError: a NUL byte in the path
        raise OutputError(f"cannot write {path}: {getattr(e, 'strerror', None) or e}") from e
    if stat.S_ISDIR(mode):
        raise OutputError(f"cannot write {path}: it is a directory")
    if not stat.S_ISREG(mode):
        raise OutputError(f"cannot write {path}: it is {describe_file_type(mode)}, not a regular file"
                          f"{_leads_to(path, str(path))}; only a regular file is replaced")


def check_writable(path: Path) -> None:
    """Fail early, before minutes of work, if `path` could not be written.

    Refuses an existing path that is not a regular file (following symlinks), a missing folder, a
    folder that is a file, and a folder without write permission.
    """
    path = Path(path)
    folder = path.parent
    _refuse_special(path)
    if not os.path.exists(folder):
        raise OutputError(f"cannot write {path}: folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise OutputError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: folder {folder} is not writable")


def temp_pattern(path: Path) -> re.Pattern:
    """The names atomic_write gives its temp files for `path`: .NAME.<8 random characters>.tmp (mkstemp's)."""
    return re.compile(rf"\.{re.escape(Path(path).name)}\.[a-z0-9_]{{8}}\.tmp")


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete the temp files a killed atomic_write(path) left beside `path`; return them.

    Only this output's own temps go (.NAME.<8 random characters>.tmp, regular files, not symlinks). Call it only
    while holding OutputLock(path): then no live writer of this output can own one of them.
    Files that cannot be deleted are left alone (and not returned).
    """
    path = Path(path)
    pattern = temp_pattern(path)
    removed = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for entry in names:
        if not pattern.fullmatch(entry):
            continue
        temp = path.parent / entry
        try:
            if not stat.S_ISREG(os.lstat(temp).st_mode):
                continue
            temp.unlink()
        except OSError:
            continue
        removed.append(temp)
    return removed


# --- one writer at a time -------------------------------------------------------------------------

def lock_path_for(path: Path) -> Path:
    """model.npz -> .model.npz.lock, beside it."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


def _host() -> str:
    import socket

    return socket.gethostname()


def _one_line(text: str, limit: int = 200) -> str:
    """Printable on one line in any terminal: control characters and undecodable text escaped."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class OutputLock:
    """Hold an exclusive lock on an output path while writing it: `with OutputLock(out): ...`.

    The lock is a non-blocking fcntl.flock on a hidden file beside the output (.NAME.lock), which
    records the holder's pid, host, command line and start time. A second writer gets OutputBusy
    naming the holder instead of waiting. The kernel drops a flock when its holder exits, however it
    exits (kill -9 included), so a dead holder never leaves the output locked: its stale lock file
    is simply locked and rewritten by the next writer.

    On release the lock file is deleted, safely: it is unlinked while still locked, and every
    acquirer, after it got the flock, checks that the path still names the file it locked (same
    device and inode) and starts over if not. So a process that opened the old file just before it
    was unlinked cannot believe it holds the lock while a third process locks a new file. (Leaving
    the file in place would be simpler and equally safe, but would leave a hidden file beside every
    output ever written.)
    """

    ATTEMPTS = 100         # rounds of "locked a file that was just deleted", then give up

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock_path = lock_path_for(self.path)
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise OutputBusy (held elsewhere) / OutputError (cannot lock)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.lock_path} is already held by this OutputLock")
        for _ in range(self.ATTEMPTS):
            fd = self._open()
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise self._busy(fd) from None
                except OSError as e:
                    raise OutputError(f"cannot lock {self.lock_path}: {e.strerror or e}") from e
                if self._still_linked(fd):
                    self._write_holder(fd)
                    self._fd = fd
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)                  # we locked a file its holder had just deleted: again
        raise OutputBusy(f"cannot lock {self.path}: its lock file {self.lock_path} keeps being replaced",
                         self.path)

    def release(self) -> None:
        """Delete the lock file (while still holding it), then drop the lock. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._still_linked(fd):
                os.unlink(self.lock_path)
        except OSError:
            pass                          # left in place: harmless, the next writer reuses it
        finally:
            os.close(fd)                  # closing the last descriptor releases the flock

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.lock_path, flags, 0o666 & ~_UMASK)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise OutputError(f"cannot lock {self.path}: its lock file {self.lock_path} is a "
                                  f"symlink; remove it") from e
            if e.errno == errno.ENOENT:
                raise OutputError(f"cannot lock {self.path}: folder {self.path.parent} does not exist") from e
            raise OutputError(f"cannot lock {self.path}: cannot create {self.lock_path} "
                              f"({e.strerror or e})") from e
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise OutputError(f"cannot lock {self.path}: its lock file {self.lock_path} is "
                              f"{describe_file_type(mode)}; remove it")
        return fd

    def _still_linked(self, fd: int) -> bool:
        """Does the lock path still name the file open as `fd`?"""
        try:
            on_disk = os.stat(self.lock_path, follow_symlinks=False)
        except OSError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def _write_holder(self, fd: int) -> None:
        holder = {"pid": os.getpid(), "host": _host(),
                  "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else sys.executable,
                  "since": datetime.now().astimezone().isoformat(timespec="seconds")}
        data = json.dumps(holder).encode("utf-8")[:LOCK_INFO_BYTES]
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError:
            pass                          # the lock holds without the description (disk full, ...)

    def _busy(self, fd: int) -> OutputBusy:
        try:
            holder = json.loads(os.pread(fd, LOCK_INFO_BYTES, 0))
            if not isinstance(holder, dict):
                holder = {}
        except (OSError, ValueError, RecursionError):
            holder = {}                   # being rewritten right now, or damaged
        pid = holder.get("pid") if isinstance(holder.get("pid"), int) else None
        text = {k: _one_line(holder[k]) for k in ("host", "command", "since") if isinstance(holder.get(k), str)}
        if pid is None and not text:
            who = "another process (no details recorded yet)"
        else:
            who = f"pid {pid if pid is not None else '?'}"
            if text.get("host") and text["host"] != _host():
                who += f" on {text['host']}"
            if text.get("command"):
                who += f", `{text['command']}`"
            if text.get("since"):
                who += f", since {text['since']}"
        return OutputBusy(f"{self.path} is being written by {who}; wait for it to finish or stop it "
                          f"(lock file {self.lock_path})", self.path, pid, text.get("host"),
                          text.get("command"), text.get("since"))


def strict_json(obj) -> str:
    """One line of strict JSON for stdout or a .jsonl file: NumPy scalars become numbers, NaN and
    infinity become null (plain json.dumps would write NaN, which strict readers refuse)."""
    return json.dumps(_finite_or_null(obj), allow_nan=False, default=_json_default)


def _finite_or_null(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return _finite_or_null(value.item())
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
