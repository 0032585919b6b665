"""mlknobs serve: a local web page to draw a digit on and watch the network read it."""

from __future__ import annotations

import errno
from pathlib import Path

import click

from mlknobs.cli.options import data_options, model_option
from mlknobs.cli.output import note, printable, say


@click.command("serve")
@model_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback (e.g. 0.0.0.0) lets other machines in.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on; 0 picks a free one (the address printed says which).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the web browser.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
              help="Where the page's training runs save their models (run-DATE-TIME.npz).")
@data_options
def command(model_path: Path, host: str, port: int, open_browser: bool, out_dir: Path, data_dir: Path,
            mirrors: tuple[str, ...]) -> None:
    """Draw a digit in your browser and watch the network read it, live; or train one and watch it learn.

    Starts a local web server and prints the page's address. The page has a canvas to draw on
    (mouse, touch or pen) and takes pictures too (file picker or drag and drop); as you draw it
    shows the prediction, every class's probability, the 28x28 input the network sees (made
    exactly as `mlknobs predict` makes it) and the hidden units that fire most, with what each
    looks for. Its training panel trains a new network as `mlknobs train` does (one run at a
    time, saved in --out-dir, data from --data-dir and --mirror), showing the loss, accuracy,
    weights and guesses as it learns; the model it saves is then the one you draw on.
    Everything is served from the package: it works offline. Ctrl-C stops it (and a run, whose
    last finished epoch stays in its checkpoint). The same is a JSON API (see the README).

    \b
    Examples:
      mlknobs serve --open
      mlknobs serve --model runs/h800.npz --port 8080
      mlknobs serve --port 0                  # any free port
      mlknobs serve --out-dir runs            # the training panel saves its models there
      curl --data-binary @my-digit.png http://127.0.0.1:8000/api/predict
      curl -H 'Content-Type: application/json' -d '{"hidden_size": 64}' http://127.0.0.1:8000/api/train
    """
    from mlknobs.serve import require_extra

    require_extra()
    from mlknobs.io.modelfile import load_model
    from mlknobs.serve import server
    from mlknobs.serve.app import create_app
    from mlknobs.serve.train_api import TrainingPanel
    from mlknobs.training.run import DataSource

    model = load_model(model_path)
    try:
        sock = server.listen(host, port)
    except OSError as e:
        hint = "; pick another --port (0 picks a free one)" if e.errno == errno.EADDRINUSE else ""
        raise click.ClickException(f"cannot listen on {printable(host)} port {port}: {e.strerror or e}{hint}") from e
    limits = server.connection_limits(server.raise_fd_limit())
    with sock:
        loopback = server.is_loopback(sock)
        panel = TrainingPanel(out_dir, DataSource(_given(data_dir, "data_dir"), mirrors, progress=False),
                              setting_flags())
        app = create_app(model, model_path, allowed_hosts=server.LOOPBACK_NAMES if loopback else None,
                         training=panel)
        url = server.page_url(sock)
        if not loopback:
            note(f"Warning: listening on {printable(host)}, not only on this machine: anyone who can reach "
                 f"it can use the page and read the model's metadata")
        say(f"mlknobs serve: {url} (Ctrl-C to stop)")
        if open_browser:
            _open_soon(url)
        try:
            server.run(app, sock, limits)
        except KeyboardInterrupt:       # uvicorn stopped gracefully on Ctrl-C and raised it again
            pass
    _say_how_the_run_ended(app.state.trainer.state())
    note("mlknobs serve: stopped")


def setting_flags() -> dict[str, tuple[str, str]]:
    """Each training setting's flag and help, as `mlknobs train` has them, for the page to show."""
    from mlknobs.cli.options import SETTINGS
    from mlknobs.cli.train import command as train_command

    flags = {}
    for param in train_command.params:
        if isinstance(param, click.Option) and (param.name in SETTINGS or param.name == "augment"):
            flags[param.name] = (param.opts[0], param.help or "")
    return flags


def _given(value, name: str):
    """`value`, or None where it is the option's default: the page's resume command then leaves it out."""
    source = click.get_current_context().get_parameter_source(name)
    return None if source is click.core.ParameterSource.DEFAULT else value


def _say_how_the_run_ended(state: dict) -> None:
    """A run the shutdown stopped: where its checkpoint is and how to resume it."""
    if state.get("status") == "stopped" and state.get("stopping"):
        resume = f"; resume with: {printable(state['resume'])}" if state.get("resume") else ""
        note(f"training run {state['run']} stopped: {printable(state['message'])}{resume}")


def _open_soon(url: str) -> None:
    """Open the page in a thread: some browsers' launchers block until the browser exits."""
    import threading
    import webbrowser

    threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
