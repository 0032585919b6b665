"""Text for people: a setting's value as a user types it, and anything from outside on one safe line.

    value_text(True) -> 'true'      values_text([1e-05, 0.1]) -> '1e-05,0.1'
    one_line(name, 60)              the name, an ESC shown as \\x1b, at most 60 characters
    value_repr(value, 40)           repr of a value from outside, escaped and cut the same way
    error_line(error)               the error's message on one line, or its type if it has none

Text that comes from files, servers or other processes (class names, error messages, file names)
is shown with its control characters escaped, so it cannot move the cursor, retitle the terminal
or forge output lines, and cut to a length, so a megabyte-long name cannot flood a message.
No imports beyond the standard library: errors.py and every layer above may use it.
"""

from __future__ import annotations

from collections.abc import Iterable

ELLIPSIS = "…"


def value_text(value) -> str:
    """A setting's value as the command line takes it: true/false, 0.5 and 1e-05 (not 1e-05.0), cosine."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def values_text(values: Iterable) -> str:
    """A list of values as the command line takes it: 0.1,0.5,1."""
    return ",".join(value_text(v) for v in values)


def printable(text: str) -> str:
    """`text` with control characters, lone surrogates and other unprintables escaped (\\x1b, \\n, ...)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


def one_line(text: str, limit: int = 200, *, keep_end: bool = False) -> str:
    """`text` escaped (see `printable`: a line break shows as \\n) and cut to at most `limit` characters.

    The cut gives way to an ellipsis at the end, or in the middle with `keep_end` (a file name keeps
    its suffix: 'a-very-lo…-name.npz').
    """
    text = printable(str(text))
    if len(text) <= limit:
        return text
    if keep_end:
        return text[:limit // 2 - 1] + ELLIPSIS + text[len(text) - limit // 2:]
    return text[:limit - 1] + ELLIPSIS


def value_repr(value, limit: int = 40) -> str:
    """repr of a value from a file, the environment or a client, cut short like `one_line` (a
    megabyte-long string); an integer too long for repr is "a very large number"."""
    try:
        text = repr(value)
    except ValueError:                 # int beyond sys.get_int_max_str_digits()
        return "a very large number"
    return one_line(text, limit)


def error_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message as one line (its line breaks and indents become single spaces), or its type."""
    text = " ".join(str(error).split())
    return one_line(text or type(error).__name__, limit)
