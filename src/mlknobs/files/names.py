"""Files in words, for one-line messages: what a path is, how big, where a symlink leads."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mlknobs.text import one_line

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


def leads_to(path: Path, name: str) -> str:
    """' (model.npz leads to /dev/zero)' when `path` goes through a symlink, else ''."""
    try:
        real = os.path.realpath(path)
        plain = os.path.abspath(path)
    except (OSError, ValueError):
        return ""
    return f" ({name} leads to {one_line(real)})" if real != plain else ""
