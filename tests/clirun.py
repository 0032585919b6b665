"""Run the real `mlknobs` command in-process through click's CliRunner, as the CLI tests do."""

from __future__ import annotations

from click.testing import CliRunner, Result

from mlknobs.cli import cli


def run(*args, input: bytes | str | None = None, env: dict[str, str | None] | None = None) -> Result:
    """`mlknobs ARGS...`, each argument passed through str() (so paths and numbers may be given).

    `input` is what the command reads on stdin; `env` sets (None: unsets) environment variables for
    the run. An exception the command lets escape is caught into result.exception, as click does
    by default, so a test sees the exit code and output of a crash as well as of an error.
    """
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=env)
