"""Writing: fail early for an output that cannot be written, then replace it atomically.

`check_writable` fails early for an output that could not be written (or is a device, a FIFO, ...
that must not be replaced by a regular file); `atomic_write` writes a hidden temp file beside the
output and renames it over it, so a reader sees the old content or the new, never half of either;
`remove_stale_temps` deletes the temp files a killed writer left behind; `same_file` tells a
command that one of its outputs is one of its inputs, which writing would replace.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from mlknobs.errors import OutputError
from mlknobs.files.names import describe_file_type, leads_to

# mkstemp creates files readable by the owner only; give the result the usual umask permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)


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
                          f"{leads_to(path, str(path))}; only a regular file is replaced")


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


def same_file(output: Path, source: Path) -> bool:
    """Is `output` the existing file `source` under another name: the same path, a symlink that
    leads to it (either way), or a hard link (same device and inode)?

    A command checks each output against each input before it starts: replacing the output would
    replace (or unlink from its name) what the command was asked to read. A path that does not
    exist, or cannot be looked up, is no input's name.
    """
    try:
        return os.path.samestat(os.stat(output), os.stat(source))
    except (OSError, ValueError):           # ValueError: a NUL byte in the path
        return False


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
