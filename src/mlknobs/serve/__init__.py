"""The web page: draw a digit and watch the network (`mlknobs serve`).

    report.py   one picture through the network, with what the page shows beside the answer:
                the 28x28 input, the hidden units that fire most and their input weights
                (NumPy only: usable and testable without a web framework)
    app.py      the Starlette app: the page, its static files and the JSON API, built from a
                loaded Model by create_app(model, model_path, training=...)
    server.py   the listening socket and uvicorn around the app (file-descriptor limit, quiet logs)
    connections.py  uvicorn's HTTP protocol: deadlines per phase, caps on connections and on bodies arriving
    settings.py     the training settings the panel offers (from mlknobs.config) and their checks
    trainer.py      one training run at a time in a worker thread: its state and its records
    feed.py         those records to every event-stream reader, none of which can slow training
    train_api.py    the training panel's routes: /api/train, its events, stop
    static/     index.html, style.css and the scripts: shared.js (helpers), app.js (the drawing),
                train-form.js (the settings form), train.js (a run, followed through its event
                stream), train-chart.js (the loss chart and the snapshots): plain files served
                by the package itself (no CDN, no external fonts or scripts), so the page works offline

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
