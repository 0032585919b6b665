"""Strict JSON out and in: the one writer of JSON lines and the one reader of JSON from outside.

    strict_json(obj) -> str                       one line for stdout or a .jsonl file (NaN written as null)
    read_strict_json(data, max_size, max_depth)   one JSON value from a file, a line or a request body

Everything mlknobs reads as JSON (model metadata, a sweep's files, a diverged run's curve, the
training panel's requests) goes through `read_strict_json`, which is bounded in memory and time:
- at most `max_size` (the caller's cap, in bytes; in characters for a str) is parsed;
- a text nested deeper than `max_depth` is refused before the parser sees it, by one linear pass
  over its brackets (200,000 `[` cost a scan, not a RecursionError);
- NaN, Infinity and numbers too large for a float (1e999) are refused: they are not JSON numbers;
- bytes must be UTF-8, and no string may hold a lone surrogate ("\\udc80", which no output can print).
Duplicate keys are allowed, the last one winning, as in the json module.
Anything else raises NotJson, which each caller turns into its own typed error (naming the file).
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate

from mlknobs.text import error_line, one_line

MAX_DEPTH = 32          # a caller with a flatter format passes less


class NotJson(ValueError):
    """A text that is not one strict JSON value; the message reads after "the text is": `nested deeper than 32 levels`."""


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


# --- reading --------------------------------------------------------------------------------------------

def read_strict_json(data: bytes | str, *, max_size: int, max_depth: int = MAX_DEPTH):
    """The one JSON value of `data`; NotJson if it is longer than `max_size`, nested deeper than
    `max_depth`, not UTF-8, not JSON, or holds NaN, Infinity, an out-of-range number or a lone surrogate."""
    if len(data) > max_size:
        unit = "bytes" if isinstance(data, (bytes, bytearray)) else "characters"
        raise NotJson(f"longer than {max_size:,} {unit}")
    if isinstance(data, (bytes, bytearray)):
        try:
            text = bytes(data).decode("utf-8")       # strict: an encoded surrogate is refused here too
        except UnicodeDecodeError as e:
            raise NotJson(f"not UTF-8 (byte {e.start:,} is {data[e.start:e.start + 1].hex()})") from None
    else:
        text = data
    if nested_deeper_than(text, max_depth):
        raise NotJson(f"nested deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:                       # cannot happen after the scan; kept as a last guard
        raise NotJson(f"nested deeper than {max_depth} levels") from None
    except ValueError as e:
        raise NotJson(f"not valid JSON ({error_line(e)})") from None
    if _MAYBE_SURROGATE.search(text):
        _check_unicode(value, "")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of a number's range")
    return value


# Inside a JSON string a bracket is text, not nesting: escapes go first (so an escaped quote cannot end
# a string), then whole strings, then everything but brackets. Each pass is a plain linear scan.
_ESCAPE = re.compile(r"\\.", re.DOTALL)
_STRING = re.compile(r'"[^"]*"')
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nested_deeper_than(text: str, limit: int) -> bool:
    """Does the JSON text nest more than `limit` levels deep? Linear in its length; exact for valid
    JSON, and the parser stops at the first character that makes a text invalid."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_A_BRACKET.sub("", _STRING.sub("", _ESCAPE.sub("", text)))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


# A surrogate can only come from a \uD800..\uDFFF escape (or, in a str, the character itself): only
# then is the parsed value searched for one that no pair completes.
_MAYBE_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF]|[\ud800-\udfff]")


def _check_unicode(value, where: str) -> None:
    """Refuse a string (key or value) holding a lone surrogate, naming where it is: ['created'], [3]."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise NotJson(f"not valid Unicode at {where or 'the top'} "
                          f"({value[e.start:e.end]!a} is a lone surrogate)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key, f"{where} (a key)")
            _check_unicode(item, f"{where}[{one_line(repr(key), 40)}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_unicode(item, f"{where}[{i}]")
