"""The web page: draw a digit and watch the network (`mlknobs serve`).

    report.py   one picture through the network, with what the page shows beside the answer:
                the 28x28 input, the hidden units that fire most and their input weights
                (NumPy only: usable and testable without a web framework)
    app.py      the Starlette app: the page, its static files and the JSON API, built from a
                loaded Model by create_app(model, model_path)
    server.py   the listening socket and uvicorn around the app
    static/     index.html, app.js, style.css: plain files served by the package itself (no CDN,
                no external fonts or scripts), so the page works offline

Starlette and uvicorn come with the `serve` extra; require_extra() says which is missing.
"""

from __future__ import annotations

import importlib.util

from mlknobs.errors import MissingExtra

FEATURE = "mlknobs serve"
EXTRA = "serve"
# (import name, what to call it in the message); python-multipart's import name changed in 0.0.13.
REQUIRED = (("starlette", "starlette"), ("uvicorn", "uvicorn"), (("python_multipart", "multipart"), "python-multipart"))


def require_extra() -> None:
    """Raise MissingExtra naming the first package of the `serve` extra that is not installed."""
    for modules, package in REQUIRED:
        names = (modules,) if isinstance(modules, str) else modules
        if not any(importlib.util.find_spec(name) is not None for name in names):
            raise MissingExtra(feature=FEATURE, extra=EXTRA, module=package)
