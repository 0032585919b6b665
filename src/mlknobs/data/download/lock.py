"""One downloader per file: later processes wait for the first, then find its verified copy.

Each file is fetched under an exclusive lock on DATA_DIR/<dataset>/.<file>.lock, taken with the
same algorithm as an output's lock (mlknobs.files.lock), but waiting for the holder rather than
refusing. The kernel drops the lock when its holder dies, kill -9 included.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

from mlknobs.data.download.partfile import not_writable
from mlknobs.errors import DataDirNotWritable
from mlknobs.files.lock import LockFileUnusable, NoFlock, lock_path_for, release, take

_held_locks = threading.local()   # lock paths this thread holds: taking one again is a no-op


@contextmanager
def file_lock(folder: Path, filename: str, required: bool = True):
    """Hold the exclusive lock of DATA_DIR/<dataset>/<filename>, creating `folder` if needed.

    Waits while another process (or thread) holds it. Re-entrant within a thread, so a caller may
    wrap ensure_file and its own follow-up work (parsing, caching) in one lock. If the lock file
    cannot be created, raises DataDirNotWritable, or, with required=False, yields False and runs
    unlocked (a read-only data dir that already holds its files needs no lock). Yields whether the
    lock is held (False also on file systems without flock, where runs are not coordinated).
    """
    folder = Path(folder)
    lock_path = lock_path_for(folder / filename)
    key = os.path.abspath(lock_path)
    held = _locks_held_by_this_thread()
    if key in held:
        yield True
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = take(lock_path, wait=True)
    except NoFlock:                  # e.g. NFSv3 without lockd: go on without the lock
        fd = None
    except LockFileUnusable as e:    # a symlink or a FIFO in its place: the user must remove it
        if required:
            raise DataDirNotWritable(folder, str(e)) from e
        fd = None
    except OSError as e:
        if required:
            raise not_writable(folder, e) from e
        fd = None
    if fd is None:
        yield False
        return
    held.add(key)
    try:
        yield True
    finally:
        held.discard(key)
        release(lock_path, fd)


def _locks_held_by_this_thread() -> set[str]:
    if not hasattr(_held_locks, "paths"):
        _held_locks.paths = set()
    return _held_locks.paths
