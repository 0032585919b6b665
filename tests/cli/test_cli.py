"""The command group itself: help, version, `python -m mlknobs`."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from mlknobs import __version__
from mlknobs.cli import cli


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "mlknobs", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and __version__ in result.stdout


def test_help_lists_the_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("download", "train", "info", "gradcheck"):
        assert command in result.output


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help_with_examples(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output


def test_unknown_command_is_a_usage_error():
    assert CliRunner().invoke(cli, ["fly"]).exit_code == 2
