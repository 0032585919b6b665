"""The `mlknobs` command line: a thin layer over the library.

Each command lives in its own module here: it parses options, calls one library function, and
prints. Library errors (MlknobsError) become one-line messages in one place, `MlknobsGroup.invoke`
(exit 1, or 2 for a usage mistake); `main()` adds what only a process has: Ctrl-C -> 130, a
reader that leaves early -> 0, out of memory and unwritable output -> one line.
Heavy imports (NumPy, requests, Pillow) happen inside the commands so `mlknobs --help` is quick.
"""

from __future__ import annotations

import errno
import os
import sys

import click

from mlknobs import __version__
from mlknobs.cli.output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, BestEffortStream
from mlknobs.errors import MlknobsError


class MlknobsGroup(click.Group):
    """Turns every library error raised by a command into a one-line message and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MlknobsError as error:
            from mlknobs.cli.messages import to_click

            sub = ctx.invoked_subcommand
            command = self.get_command(ctx, sub) if sub else None
            raise to_click(error, command) from error


@click.group(cls=MlknobsGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mlknobs")
def cli() -> None:
    """Train, check, evaluate and use a handwritten-digit classifier built from scratch in NumPy.

    \b
    Quick start:
      mlknobs train --epochs 3          # downloads MNIST, trains, saves model.npz
      mlknobs eval                      # accuracy, per-class report, confusion matrix
      mlknobs predict my-digit.png      # what the network sees in your picture
      mlknobs gradcheck                 # backprop vs. nudging each knob by h

    Offline: --mirror DIR (or MLKNOBS_MIRROR=DIR) with DIR/mnist/*.gz.
    """


def _register() -> None:
    from mlknobs.cli import download, evaluate, explain, export, gradcheck, info, lr_find, plot, predict, serve, sweep, train

    for module in (download, train, sweep, lr_find, info, evaluate, predict, explain, serve, export, gradcheck, plot):
        cli.add_command(module.command)


_register()


def main() -> None:
    """Console-script entry point: the commands, plus what only a whole process can handle."""
    # Progress output must never cost a run its result: every command's stderr (bars, epoch lines,
    # notes) goes through this one best-effort wrapper.
    sys.stderr = BestEffortStream(sys.stderr)
    try:
        # Not cli.main(): click's own EPIPE handling exits 1 before ours could say 0.
        with cli.make_context("mlknobs", sys.argv[1:]) as ctx:
            cli.invoke(ctx)
        if sys.stdout is not None:
            sys.stdout.flush()                     # a broken pipe shows here, inside the handler
    except click.exceptions.Exit as e:             # --help, --version
        _exit(e.exit_code)
    except click.exceptions.Abort:                 # Ctrl-C outside training (where `train` handles it)
        click.echo("Aborted.", err=True)
        _exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("Aborted.", err=True)
        _exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        _exit(e.exit_code)
    except MemoryError:
        click.echo("Error: not enough memory; try a smaller --hidden-size or --batch-size", err=True)
        _exit(EXIT_FAILED)
    except OSError as e:
        if e.errno == errno.EPIPE:                 # `mlknobs ... | head`: the reader left; nothing to report
            _silence_stdout()
            _exit(EXIT_OK)
        click.echo(f"Error: cannot write the output ({e.strerror or e})", err=True)   # e.g. a full disk
        _exit(EXIT_FAILED)
    _exit(EXIT_OK)


def _exit(code: int) -> None:
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as e:
        if e.errno == errno.EPIPE:
            _silence_stdout()
        else:
            code = code or EXIT_FAILED
    sys.exit(code)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass
