"""One writer at a time: an exclusive flock on a hidden lock file beside what is being written.

One algorithm (`take`, `release`) under two policies:
- `OutputLock` (a model, a checkpoint, a sweep's results) refuses a second writer at once with
  OutputBusy, naming the holder;
- the download's per-file lock (data/download/lock.py) waits for the holder instead, and then
  finds the file the holder fetched.

The algorithm: open (or create) .NAME.lock beside NAME, never through a symlink and only if it is
a regular file, flock it, and record the holder's pid, host, command line and start time in it.
The kernel drops a flock when its holder exits, however it exits (kill -9 included), so a dead
holder never leaves anything locked: its stale lock file is simply locked and rewritten by the next.

On release the lock file is deleted, safely: it is unlinked while still locked, and every taker,
after it got the flock, checks that the path still names the file it locked (same device and
inode) and starts over if not. So a process that opened the old file just before it was unlinked
cannot believe it holds the lock while a third process locks a new file. (Leaving the file in
place would be simpler and equally safe, but would leave a hidden file beside every output.)

mlknobs runs on POSIX systems only (Linux, macOS): fcntl is imported unconditionally, here and in
files/reading.py, so on Windows mlknobs fails at import instead of running without the locks that
keep concurrent runs apart. Nothing guards the import (a guard elsewhere once suggested otherwise).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import sys
from datetime import datetime
from pathlib import Path

from mlknobs.errors import OutputBusy, OutputError
from mlknobs.files.names import describe_file_type
from mlknobs.text import one_line

ATTEMPTS = 100                # rounds of "locked a file that was just deleted", then give up
LOCK_INFO_BYTES = 4096        # at most this much of a lock file is read to name its holder
# What flock says on a file system that does not support it (e.g. NFSv3 without lockd).
FLOCK_UNSUPPORTED = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL})


def lock_path_for(path: Path) -> Path:
    """model.npz -> .model.npz.lock, beside it."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


# --- the algorithm ----------------------------------------------------------------------------------

class LockHeld(Exception):
    """take(wait=False): another process holds the lock; `holder` is what it recorded (maybe {})."""

    def __init__(self, holder: dict):
        super().__init__("held by another process")
        self.holder = holder


class LockFileUnusable(Exception):
    """The lock file cannot serve: a symlink or not a regular file. The message says so and how to fix it."""


class LockFileReplaced(LockFileUnusable):
    """Every lock taken was on a file its holder had just deleted, ATTEMPTS times in a row."""


class NoFlock(Exception):
    """The file system cannot flock at all; the lock file was removed again."""


def take(lock_path: Path, *, wait: bool) -> int:
    """Lock `lock_path` (created if missing) and return the open descriptor that holds the lock.

    wait=True blocks while another process holds it; wait=False raises LockHeld at once. Raises
    LockFileUnusable (LockFileReplaced) or NoFlock, see there, or the OSError of a lock file that
    cannot be created.
    """
    for _ in range(ATTEMPTS):
        fd = _open(lock_path)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise LockFileUnusable(f"its lock file {lock_path} is {describe_file_type(mode)}; remove it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(_holder(fd)) from None
            except OSError as e:
                if e.errno not in FLOCK_UNSUPPORTED:
                    raise
                _unlink_quietly(lock_path)    # no one can hold a lock here, so no one needs the file
                raise NoFlock(e.strerror or str(e)) from e
            if _still_linked(lock_path, fd):
                _record_holder(fd)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)                          # we locked a file its holder had just deleted: again
    raise LockFileReplaced(f"its lock file {lock_path} keeps being replaced")


def release(lock_path: Path, fd: int) -> None:
    """Delete the lock file while still holding it, then drop the lock by closing `fd`."""
    try:
        if _still_linked(lock_path, fd):
            os.unlink(lock_path)
    except OSError:
        pass                                  # left in place: harmless, the next taker reuses it
    finally:
        os.close(fd)                          # closing the last descriptor releases the flock


def _open(lock_path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(lock_path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise LockFileUnusable(f"its lock file {lock_path} is a symlink; remove it") from e
        raise


def _still_linked(lock_path: Path, fd: int) -> bool:
    """Does the lock path still name the file open as `fd`?"""
    try:
        return os.path.samestat(os.stat(lock_path, follow_symlinks=False), os.fstat(fd))
    except OSError:
        return False


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _record_holder(fd: int) -> None:
    holder = {"pid": os.getpid(), "host": _host(),
              "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else sys.executable,
              "since": datetime.now().astimezone().isoformat(timespec="seconds")}
    data = json.dumps(holder).encode("utf-8")[:LOCK_INFO_BYTES]
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError:
        pass                                  # the lock holds without the description (disk full, ...)


def _holder(fd: int) -> dict:
    """What the holder recorded, {} if nothing yet or damaged."""
    try:
        holder = json.loads(os.pread(fd, LOCK_INFO_BYTES, 0))
    except (OSError, ValueError, RecursionError):
        return {}                             # being rewritten right now, or damaged
    return holder if isinstance(holder, dict) else {}


def _host() -> str:
    import socket

    return socket.gethostname()


# --- one writer per output: refuse a second one -------------------------------------------------------

class OutputLock:
    """Hold an exclusive lock on an output path while writing it: `with OutputLock(out): ...`.

    Never waits: a second writer gets OutputBusy naming the holder (see the module's docstring for
    the algorithm, and why a dead holder never leaves the output locked).
    """

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
        try:
            self._fd = take(self.lock_path, wait=False)
        except LockHeld as e:
            raise self._busy(e.holder) from None
        except LockFileReplaced as e:
            raise OutputBusy(f"cannot lock {self.path}: {e}", self.path) from e
        except LockFileUnusable as e:
            raise OutputError(f"cannot lock {self.path}: {e}") from e
        except NoFlock as e:
            raise OutputError(f"cannot lock {self.lock_path}: {e}") from e
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise OutputError(f"cannot lock {self.path}: folder {self.path.parent} does not exist") from e
            raise OutputError(f"cannot lock {self.path}: cannot create {self.lock_path} "
                              f"({e.strerror or e})") from e

    def release(self) -> None:
        """Delete the lock file (while still holding it), then drop the lock. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            release(self.lock_path, fd)

    def _busy(self, holder: dict) -> OutputBusy:
        pid = holder.get("pid") if isinstance(holder.get("pid"), int) else None
        text = {k: one_line(holder[k]) for k in ("host", "command", "since") if isinstance(holder.get(k), str)}
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
