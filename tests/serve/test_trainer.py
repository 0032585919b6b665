"""The pieces of a page's training run (mlknobs.serve.trainer): the bounded loss curve, the
weight tiles and the batch digits a snapshot carries, the resume command and the diverged hint."""

from __future__ import annotations

import base64
import shlex
from pathlib import Path

import numpy as np

from mlknobs.errors import TrainingDiverged
from mlknobs.serve.trainer import DIVERGED_HINT, Curve, batch_digits, resume_command, weight_tiles
from mlknobs.training.run import DataSource


def test_the_curve_keeps_every_step_until_full_then_averages_neighbours():
    curve = Curve(max_points=8)
    for step in range(1, 8):
        curve.add(step, float(step))
    assert curve.to_dict() == {"steps": list(range(1, 8)), "losses": [float(s) for s in range(1, 8)], "stride": 1}
    curve.add(8, 8.0)                                   # full: pairs merge, each point now two steps
    assert curve.to_dict() == {"steps": [2, 4, 6, 8], "losses": [1.5, 3.5, 5.5, 7.5], "stride": 2}
    curve.add(9, 9.0)
    curve.add(10, 10.0)
    assert curve.to_dict()["steps"][-1] == 10 and curve.to_dict()["losses"][-1] == 9.5


def test_the_curve_stays_bounded_for_any_run_length():
    curve = Curve(max_points=100)
    for step in range(1, 100_001):
        curve.add(step, 1.0)
    assert len(curve.steps) < 100 and curve.stride == 1024
    assert all(b - a == curve.stride for a, b in zip(curve.steps, curve.steps[1:], strict=False))


def test_weight_tiles_are_each_units_weights_scaled_to_its_largest():
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(784, 50)).astype(np.float32)
    w1[:, 3] = 0                                        # an all-zero unit stays zero
    shown = weight_tiles(w1, count=36)
    tiles = np.frombuffer(base64.b64decode(shown["tiles"]), np.int8).reshape(36, 784)
    assert shown["units"] == 36
    assert np.abs(tiles).max(axis=1).tolist() == [127] * 3 + [0] + [127] * 32
    expected = w1[:, 0] / np.abs(w1[:, 0]).max() * 127
    assert np.abs(tiles[0] - expected).max() <= 0.5


def test_batch_digits_are_the_first_of_the_batch_with_labels_and_guesses():
    pixels = np.arange(20 * 784, dtype=np.int64).reshape(20, 784).astype(np.uint8)
    labels, guesses = np.arange(20) % 10, np.zeros(20, np.intp)
    shown = batch_digits(pixels, labels, guesses, count=8)
    assert np.array_equal(np.frombuffer(base64.b64decode(shown["pixels"]), np.uint8).reshape(8, 784), pixels[:8])
    assert shown["labels"] == list(range(8)) and shown["guesses"] == [0] * 8
    assert len(batch_digits(pixels[:3], labels[:3], guesses[:3])["labels"]) == 3


def test_the_resume_command_is_quoted_for_a_shell_and_carries_the_data_options():
    out = Path("my runs/run-1's.npz")
    assert resume_command(Path("runs/run-1.npz"), DataSource()) == "mlknobs train --resume --out runs/run-1.npz"
    command = resume_command(out, DataSource(Path("data dir"), ("/mirrors/one", "http://m/$x y")))
    assert shlex.split(command) == ["mlknobs", "train", "--resume", "--out", str(out), "--data-dir", "data dir",
                                    "--mirror", "/mirrors/one", "--mirror", "http://m/$x y"]


def test_a_diverged_runs_hint_is_worded_as_train_words_it():
    """The page's line below a diverged run's message says what `mlknobs train` adds to it."""
    from mlknobs.cli import messages

    worded = str(messages.to_click(TrainingDiverged("training diverged", learning_rate=1000.0), None).message)
    assert DIVERGED_HINT[0].lower() + DIVERGED_HINT[1:].rstrip(".") in worded
