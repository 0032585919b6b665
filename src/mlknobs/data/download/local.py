"""Copies from a local mirror (a folder, or a file:// URL): only a regular file, at most the official size."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path

from mlknobs.data.download import partfile
from mlknobs.data.download.partfile import MirrorFailed, TooLarge, not_writable, progress_bar, remove_quietly
from mlknobs.files import describe_file_type


def copy_local(source: Path, part: Path, size: int, progress: bool | None) -> None:
    """Copy a local mirror's file into `part`, from scratch (a local copy is cheap to restart)."""
    with _open_local_source(source, size) as src:
        try:
            dst = open(part, "wb")
        except OSError as e:
            raise not_writable(part.parent, e) from e
        with dst, progress_bar(size, 0, source.name, progress) as bar:
            copied = 0
            # At most size + 1 bytes: a file that grows, or a /proc-like one that says it is empty,
            # cannot make us copy forever.
            while block := _read_source(src, min(1 << 20, size + 1 - copied)):
                copied += len(block)
                if copied > size:
                    break
                partfile.write_part(dst, block, part)
                bar.update(len(block))
            partfile.sync_part(dst, part)
    if copied > size:
        remove_quietly(part)
        raise TooLarge(f"more than the {size} bytes of the official file")


@contextmanager
def _open_local_source(source: Path, size: int):
    """The mirror's file, opened for reading if it is a regular file of at most `size` bytes."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer. fstat then refuses it.
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise MirrorFailed(_missing_local_file(source)) from None
    except OSError as e:
        raise MirrorFailed(f"cannot read ({e.strerror or e})") from e
    try:
        info = os.fstat(fd)   # of what we opened: the path may have changed since
        if not stat.S_ISREG(info.st_mode):
            raise MirrorFailed(f"is {describe_file_type(info.st_mode)}, not a regular file")
        if info.st_size > size:
            raise TooLarge(f"{info.st_size} bytes, more than the {size} bytes of the official file")
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


def _read_source(src, n: int) -> bytes:
    try:
        return src.read(n)
    except OSError as e:
        raise MirrorFailed(f"cannot read ({e.strerror or e})") from e
