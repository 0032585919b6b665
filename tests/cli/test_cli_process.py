"""What only a whole `mlknobs` process shows: broken pipes, closed streams, a full stderr, escapes.

These run the installed console script in a subprocess (CliRunner replaces the streams, so it
cannot show how the real ones fail).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from clirun import run
from mlknobs.cli.output import BestEffortStream, printable
from mlknobs.io.modelfile import load_model, save_model

MLKNOBS = [sys.executable, "-m", "mlknobs"]
TIMEOUT = 120


def mlknobs(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([*MLKNOBS, *map(str, args)], env=env, timeout=TIMEOUT, **kwargs)


def test_a_reader_that_leaves_early_is_not_an_error(synthetic_model_path):
    read_end, write_end = os.pipe()
    os.close(read_end)                        # the reader is gone before anything is written (| head -c 0)
    try:
        result = mlknobs("info", synthetic_model_path, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""               # no "Exception ignored ... BrokenPipeError"


def test_a_closed_stdout_is_an_error(synthetic_model_path):
    result = mlknobs("info", synthetic_model_path, "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     preexec_fn=lambda: os.close(1))
    assert result.returncode == 1
    assert b"stdout is closed" in result.stderr and b"Traceback" not in result.stderr


@pytest.mark.real_data
@pytest.mark.parametrize("stderr", ["full", "closed"])
def test_a_full_or_closed_stderr_does_not_cost_the_model(mnist_data_dir, tmp_path, stderr):
    out = tmp_path / "m.npz"
    args = ["train", "--epochs", "1", "--hidden-size", "8", "--data-dir", mnist_data_dir, "--out", out]
    if stderr == "full":
        with open("/dev/full", "w") as full:
            result = mlknobs(*args, stdout=subprocess.PIPE, stderr=full)
    else:
        result = mlknobs(*args, stdout=subprocess.PIPE, preexec_fn=lambda: os.close(2))
    assert result.returncode == 0
    assert b"test accuracy" in result.stdout and load_model(out).results["test_accuracy"] > 0.5


def test_best_effort_stream_drops_what_it_cannot_write(tmp_path):
    full = open("/dev/full", "w", buffering=1)    # line-buffered: each line fails as it is written
    stream = BestEffortStream(full)
    assert stream.write("epoch 1/3\n") == len("epoch 1/3\n")
    stream.flush()                                # the disk is full: silenced, not raised
    stream.write("more\n")
    try:
        full.close()
    except OSError:
        pass
    closed = BestEffortStream(None)
    assert closed.write("x") == 1 and not closed.isatty()


HOSTILE_NAMES = ["\x1b]0;pwned\x07zero", "one\nforged: 99.9 %", "\x1b[2Jtwo", "three\r", "four\x9b",
                 "five", "six", "seven", "eight", "nine"]


def test_class_names_from_a_file_reach_the_terminal_escaped(synthetic_model_path, tmp_path):
    model = load_model(synthetic_model_path)
    hostile = tmp_path / "hostile.npz"
    save_model(hostile, replace(model, class_names=HOSTILE_NAMES))
    shown = run("info", hostile).stdout
    for raw in ("\x1b", "\x07", "\r", "\x9b", "one\nforged"):
        assert raw not in shown
    assert printable(HOSTILE_NAMES[0]) in shown and "\\x1b]0;pwned\\x07zero" in shown
    assert "one\\nforged" in shown
    # JSON keeps the names as they are (JSON escapes them itself).
    assert run("info", hostile, "--json").stdout.count("\\u001b") >= 2


def test_predict_escapes_a_hostile_file_name_and_class_name(synthetic_model_path, tmp_path):
    from PIL import Image

    model = load_model(synthetic_model_path)
    hostile = tmp_path / "hostile.npz"
    save_model(hostile, replace(model, class_names=HOSTILE_NAMES))
    picture = tmp_path / "digit\x1b[31m.png"
    canvas = Image.new("L", (60, 60), 255)
    canvas.paste(0, (28, 10, 34, 50))                 # a vertical bar
    canvas.save(picture)
    result = run("predict", "--model", hostile, picture)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "digit\\x1b[31m.png" in result.stdout


def test_printable_keeps_ordinary_text_and_escapes_the_rest():
    assert printable("Ankle boot") == "Ankle boot"
    assert printable("a\tb\x00c\udc80") == "a\\tb\\x00c\\udc80"
    assert Path(printable("\u200b")).name == "\\u200b"
