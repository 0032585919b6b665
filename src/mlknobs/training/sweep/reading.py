"""The one way a sweep reads its files (sweep.json, results.jsonl): bounded in memory and in time.

- Only a regular file is read: a FIFO, a device (a link to /dev/zero), a socket or a folder in
  its place is refused by name, without blocking (files.open_regular).
- At most a cap of bytes is read, however large the file grows while it is read.
- A JSON text nested deeper than MAX_JSON_DEPTH is refused before the parser sees it, by one
  linear pass over its brackets (a line of 200,000 `[` costs a scan, not a RecursionError).
- NaN and Infinity are not JSON: a file holding them is refused like any other malformed text.
- Every cost is linear in the bytes read: a results.jsonl line is split, measured and parsed once.

`read_json_file` returns a file's one JSON document; `read_json_lines` each line's object, or None
where a line is not one (too long, torn, not JSON): the caller decides what such a line means.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path

from mlknobs.errors import SweepFileError
from mlknobs.files import open_regular, read_bounded
from mlknobs.text import error_line

MAX_JSON_DEPTH = 16               # sweep.json needs 3 levels (document, grid, values), a results line 2

# Inside a JSON string a bracket is text, not nesting: escapes go first (so an escaped quote cannot end
# a string), then whole strings, then everything but brackets. Each pass is a plain linear scan.
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_A_BRACKET = re.compile(rb"[^\[\]{}]+")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class NotJson(ValueError):
    """A text that is not one plain JSON value (malformed, nested too deep, NaN or Infinity)."""


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
        return loads(data)
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
        if len(line) > line_limit:
            yield None
            continue
        try:
            yield loads(line)
        except NotJson:
            yield None


def loads(data: bytes):
    """One JSON value from `data`, refusing nesting deeper than MAX_JSON_DEPTH, NaN and Infinity (NotJson)."""
    if nested_deeper_than(data, MAX_JSON_DEPTH):
        raise NotJson(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:        # UnicodeDecodeError is a ValueError too
        raise NotJson(f"not valid JSON ({error_line(e, 200)})") from None


def nested_deeper_than(data: bytes, limit: int) -> bool:
    """Does the JSON text `data` nest more than `limit` levels deep? (A text with few brackets cannot.)"""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _NOT_A_BRACKET.sub(b"", _STRING.sub(b"", _ESCAPE.sub(b"", data)))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")
