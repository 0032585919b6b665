"""lesson_settings.py: explain's and gradcheck's defaults and limits, the same in the CLI, the Python
API and the library, and readable without NumPy (for --help)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import click
import pytest

import mlknobs
from mlknobs import lesson_settings as settings
from mlknobs.cli import explain, gradcheck
from mlknobs.nn import explain as nn_explain
from mlknobs.nn import gradcheck as nn_gradcheck


def option(command: click.Command, name: str) -> click.Option:
    return next(p for p in command.params if p.name == name)


def test_gradchecks_options_are_the_settings_ranges_and_defaults():
    for name, bounds in settings.GRADCHECK_RANGES.items():
        kind = option(gradcheck.command, name).type
        assert (kind.min, kind.max, kind.min_open) == (bounds.low, bounds.high, bounds.low_open), name
    api = inspect.signature(mlknobs.gradcheck).parameters
    library = inspect.signature(nn_gradcheck.gradcheck).parameters
    for name in ("loss", "hidden_size", "batch_size", "eps", "seed", "tolerance", "dropout"):
        assert option(gradcheck.command, name).default == api[name].default == library[name].default, name


def test_explains_h_and_learning_rate_are_the_settings_ranges_and_defaults():
    for name, bounds in (("h", settings.H_RANGE), ("learning_rate", settings.STEP_RATE_RANGE)):
        kind = option(explain.command, name).type
        assert (kind.min, kind.max, kind.min_open) == (bounds.low, bounds.high, bounds.low_open), name
    assert option(explain.command, "h").default == inspect.signature(mlknobs.explain).parameters["h"].default \
        == nn_explain.DEFAULT_H == settings.DEFAULT_H


@pytest.mark.parametrize("name, value", [("hidden_size", settings.MAX_GRADCHECK_HIDDEN_SIZE + 1),
                                         ("batch_size", 0), ("eps", 0.0), ("dropout", 0.95)])
def test_the_api_refuses_what_the_command_refuses(name, value):
    with pytest.raises(mlknobs.InputError, match=f"{name} must be") as refused:
        mlknobs.gradcheck(**{name: value})
    assert refused.value.name == name


def test_the_settings_load_without_numpy():
    code = "import sys, mlknobs.lesson_settings; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
