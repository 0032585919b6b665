"""mlknobs serve: a local web page to draw a digit on and watch the network read it."""

from __future__ import annotations

import errno
from pathlib import Path

import click

from mlknobs.cli.options import model_option
from mlknobs.cli.output import note, printable, say


@click.command("serve")
@model_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback (e.g. 0.0.0.0) lets other machines in.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on; 0 picks a free one (the address printed says which).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the web browser.")
def command(model_path: Path, host: str, port: int, open_browser: bool) -> None:
    """Draw a digit in your browser and watch the network read it, live.

    Starts a local web server and prints the page's address. The page has a canvas to draw on
    (mouse, touch or pen) and takes pictures too (file picker or drag and drop); as you draw it
    shows the prediction, every class's probability, the 28x28 input the network sees (made
    exactly as `mlknobs predict` makes it) and the hidden units that fire most, with what each
    looks for. Everything is served from the package: it works offline. Ctrl-C stops it.
    The same answers are a JSON API: POST a picture to /api/predict (see the README).

    \b
    Examples:
      mlknobs serve --open
      mlknobs serve --model runs/h800.npz --port 8080
      mlknobs serve --port 0                  # any free port
      curl --data-binary @my-digit.png http://127.0.0.1:8000/api/predict
    """
    from mlknobs.serve import require_extra

    require_extra()
    from mlknobs.io.modelfile import load_model
    from mlknobs.serve import server
    from mlknobs.serve.app import create_app

    model = load_model(model_path)
    try:
        sock = server.listen(host, port)
    except OSError as e:
        hint = "; pick another --port (0 picks a free one)" if e.errno == errno.EADDRINUSE else ""
        raise click.ClickException(f"cannot listen on {printable(host)} port {port}: {e.strerror or e}{hint}") from e
    with sock:
        loopback = server.is_loopback(sock)
        app = create_app(model, model_path, allowed_hosts=server.LOOPBACK_NAMES if loopback else None)
        url = server.page_url(sock)
        if not loopback:
            note(f"Warning: listening on {printable(host)}, not only on this machine: anyone who can reach "
                 f"it can use the page and read the model's metadata")
        say(f"mlknobs serve: {url} (Ctrl-C to stop)")
        if open_browser:
            _open_soon(url)
        try:
            server.run(app, sock)
        except KeyboardInterrupt:       # uvicorn stopped gracefully on Ctrl-C and raised it again
            pass
    note("mlknobs serve: stopped")


def _open_soon(url: str) -> None:
    """Open the page in a thread: some browsers' launchers block until the browser exits."""
    import threading
    import webbrowser

    threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
