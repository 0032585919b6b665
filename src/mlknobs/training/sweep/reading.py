"""The one way a sweep reads its files (sweep.json, results.jsonl): bounded in memory and in time.

- Only a regular file is read: a FIFO, a device (a link to /dev/zero), a socket or a folder in
  its place is refused by name, without blocking (files.open_regular).
- At most a cap of bytes is read, however large the file grows while it is read.
- Each JSON text is read by files/jsonl.py's strict reader: nested deeper than MAX_JSON_DEPTH,
  NaN, Infinity or not UTF-8, it is refused in time linear in its bytes.
- A results.jsonl line is split, measured and parsed once.

`read_json_file` returns a file's one JSON document; `read_json_lines` each line's object, or None
where a line is not one (too long, torn, not JSON): the caller decides what such a line means.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from mlknobs.errors import SweepFileError
from mlknobs.files import open_regular, read_bounded
from mlknobs.files.jsonl import NotJson, read_strict_json

MAX_JSON_DEPTH = 16               # sweep.json needs 3 levels (document, grid, values), a results line 2


def read_file(path: Path, limit: int, kind: str) -> bytes | None:
    """The bytes of `path` if it is a regular file of at most `limit` bytes; None if there is no such file.

    SweepFileError names the file and what it is instead (a FIFO, a character device, too large).
    """
    path = Path(path)
    if not os.path.lexists(path):
        return None
    prefix = f"{path}: "

    def error(message: str) -> SweepFileError:
        return SweepFileError(path, message.removeprefix(prefix))

    with open_regular(path, limit, error=error, kind=kind) as stream:
        return read_bounded(stream, limit, str(path), error=error, kind=kind)


def read_json_file(path: Path, limit: int, kind: str):
    """The JSON document of `path` (at most `limit` bytes); None if there is no such file.

    SweepFileError if the file cannot be read or is not one plain JSON value.
    """
    data = read_file(path, limit, kind)
    if data is None:
        return None
    try:
        return read_strict_json(data, max_size=limit, max_depth=MAX_JSON_DEPTH)
    except NotJson as e:
        raise SweepFileError(path, str(e)) from None


def read_json_lines(path: Path, limit: int, line_limit: int, kind: str) -> Iterator[object | None]:
    """Each line of `path` as its JSON value, or None for a line that is not one or is over `line_limit` bytes.

    Nothing is yielded if there is no such file; SweepFileError if it cannot be read at all.
    """
    data = read_file(path, limit, kind)
    for line in (data or b"").splitlines():
        if not line.strip():
            continue
        try:
            yield read_strict_json(line, max_size=line_limit, max_depth=MAX_JSON_DEPTH)
        except NotJson:
            yield None

