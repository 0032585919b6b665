"""The partial file every transfer writes, how it is checked, and how an attempt on a mirror ends.

Bytes go to a hidden DATA_DIR/<dataset>/.<file>.part, which reaches the final name only after its
size and SHA-256 match the official file's. A mirror attempt ends in success, MirrorFailed (this
mirror cannot deliver: try the next one), TooLarge (it sent more than the official file has), or
Retryable (a passing failure: try the same mirror again).
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from mlknobs.errors import DataDirNotWritable


@dataclass(frozen=True)
class Expected:
    """What the official file is: every copy must match both."""
    sha256: str
    size: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class MirrorFailed(Exception):
    """This mirror cannot deliver the file; the message is the reason shown to the user."""


class TooLarge(MirrorFailed):
    """The mirror sent more bytes than the official file has; what it sent is worthless."""


class Retryable(Exception):
    """A passing failure (connection cut, timeout, 5xx): try the same mirror again."""


def not_writable(folder: Path, error: OSError) -> DataDirNotWritable:
    return DataDirNotWritable(folder, error.strerror or str(error))


def write_part(f, data: bytes, part: Path) -> None:
    """Append to the open part; a failed write is the data dir's fault (full, read-only), not the mirror's."""
    try:
        f.write(data)
    except OSError as e:
        raise not_writable(part.parent, e) from e


def sync_part(f, part: Path) -> None:
    try:
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
        raise not_writable(part.parent, e) from e


def verify(part: Path, expected: Expected, resumed: bool) -> None:
    """Accept a finished part (not an HTML page; the official size and SHA-256), or delete it and
    raise: Retryable if it was resumed (the earlier half may be the bad one), else MirrorFailed."""
    with open(part, "rb") as f:
        head = f.read(512)
    if head.lstrip()[:1] == b"<" and b"html" in head.lower():
        part.unlink()
        raise MirrorFailed("got an HTML page instead of data")
    size = part.stat().st_size
    actual = sha256_of(part) if size == expected.size else None
    if actual != expected.sha256:
        part.unlink()
        if resumed:
            raise Retryable("checksum mismatch after resuming a partial file")
        if actual is None:
            raise MirrorFailed(f"checksum mismatch (wrong size: {size} bytes, expected {expected.size})")
        raise MirrorFailed(f"checksum mismatch (got sha256 {actual[:12]}…, expected {expected.sha256[:12]}…)")


def size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def progress_bar(total: int | None, initial: int, desc: str, progress: bool | None):
    from tqdm.auto import tqdm  # a widget in Jupyter, text on a terminal

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=(not progress) if progress is not None else None)
