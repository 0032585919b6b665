"""Checks on the paths a command is given, in the command line's words (usage errors, exit 2)."""

from __future__ import annotations

from pathlib import Path

import click

from mlknobs.cli.output import printable


def refuse_output_over_input(outputs: dict[str, Path | None], inputs: dict[str, Path | None]) -> None:
    """A usage error if an output option names a file that an input option names too
    (files.same_file: the same path, a symlink or a hard link), before any work: writing the
    output would replace what the command reads, e.g. `export --model m.npz --out m.npz`.

    Keys are the options as the user typed them (--out, --model, PICTURE); None values are skipped.
    """
    from mlknobs.files import same_file  # here, not at the top: keeps `mlknobs --help` quick

    for out_option, out in outputs.items():
        for in_option, source in inputs.items():
            if out is not None and source is not None and same_file(out, source):
                raise click.UsageError(f"{out_option} {printable(str(out))} is the same file as {in_option} "
                                       f"{printable(str(source))}: writing it would replace it; choose "
                                       f"another {out_option}")
