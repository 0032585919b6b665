"""Why a connection failed, in a few words ('connection refused'), from the chain of wrapped errors."""

from __future__ import annotations

from mlknobs.text import error_line


def _causes(error: BaseException):
    """The error and everything behind it: requests wraps urllib3, which wraps the socket error."""
    seen, stack = set(), [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        stack += [a for a in e.args if isinstance(a, BaseException)]


def find_cause(error: BaseException, kind: type) -> BaseException | None:
    return next((e for e in _causes(error) if isinstance(e, kind)), None)


def connection_reason(error: BaseException) -> str:
    """'connection refused', 'connection reset', … rather than urllib3's paragraph about pools."""
    for e in _causes(error):
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, (ConnectionResetError, ConnectionAbortedError)):
            return "connection reset"
        if type(e).__name__ == "IncompleteRead":
            return "connection closed mid-transfer"
        if isinstance(e, OSError) and e.strerror:
            return e.strerror.lower()
    return error_line(error, 160)
