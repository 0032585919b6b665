"""Reading: only regular files of bounded size, and at most a cap from any stream.

`open_regular` opens a path only if it leads to a regular file no larger than a cap (a FIFO, a
device such as /dev/zero, a socket or a directory is refused, by name, without blocking), and
`read_bounded` reads at most a cap from any stream (stdin included), so no input can make mlknobs
read until memory runs out.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import BinaryIO

from mlknobs.files.names import describe_file_type, human_size, leads_to

READ_CHUNK = 1 << 20          # read_bounded reads this much at a time


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
                        f"{leads_to(path, name)}") from e
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
        raise error(f"{name}: is {describe_file_type(mode)}, not a regular file{leads_to(path, name)}")


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
