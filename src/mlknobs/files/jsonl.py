"""One line of strict JSON, for stdout and for .jsonl files."""

from __future__ import annotations

import json
import math


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
