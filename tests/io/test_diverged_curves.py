"""io/curves.py: the curve a diverged run leaves (<out>.diverged.json), and `plot history` on it
(named test_diverged_curves: tests/training/sweep/ holds a test_curves.py).

A hostile or damaged file in its place is one line and exit 1, never a traceback or a warning:
deep nesting, NaN, a FIFO, a link to /dev/zero, a file past the cap, values that are not numbers.
"""

from __future__ import annotations

import json
import os
import warnings

import pytest

from clirun import run
from mlknobs.config import TrainConfig
from mlknobs.errors import ModelFileError, TrainingDiverged
from mlknobs.io.curves import MAX_BYTES, load_diverged, save_diverged

CONFIG = TrainConfig(hidden_size=8, epochs=3, learning_rate=1000.0)
HISTORY = [{"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.3, "learning_rate": 1000.0, "seconds": 0.5},
           {"epoch": 2, "train_loss": float("nan"), "train_accuracy": 0.1, "learning_rate": 1000.0}]
STEPS = [[25, 2.3], [50, 9.5], [75, float("inf")]]


@pytest.fixture
def curve(tmp_path):
    path = tmp_path / "big.diverged.json"
    save_diverged(path, CONFIG, TrainingDiverged("training diverged", 1000.0, STEPS, HISTORY))
    return path


def record_of(path):
    return json.loads(path.read_text())


def test_a_saved_curve_loads_without_the_blow_up_itself(curve):
    assert '"train_loss": null' in curve.read_text() and "NaN" not in curve.read_text()
    model = load_diverged(curve)
    assert model.params is None and model.config == CONFIG
    assert model.step_losses == [[25, 2.3], [50, 9.5]]           # the non-finite loss cannot be drawn
    assert model.history == HISTORY[:1]                           # nor the epoch that ended in it


@pytest.mark.parametrize("change, words", [
    (lambda r: r["history"][0].update(train_loss="abc"), "history epoch 1 train_loss must be a number"),
    (lambda r: r["history"][0].update(train_accuracy=[0.5]), "train_accuracy must be a number"),
    (lambda r: r["history"].insert(0, "epoch 0"), "every history entry needs an epoch number"),
    (lambda r: r["history"][0].update(epoch=2), "history entry 1 is for epoch 2"),
    (lambda r: r.update(history={"epoch": 1}), "history must be a list"),
    (lambda r: r["step_losses"].insert(0, [1, "low"]), "step_losses loss at step 1 must be a number"),
    (lambda r: r["step_losses"].insert(0, "1, 2"), "step_losses must be a list of [step, loss] pairs"),
    (lambda r: r["step_losses"].append([10, 1.0]), "step_losses step"),         # steps must rise
    (lambda r: r["config"].update(hidden_size=-1), "hidden_size"),
    (lambda r: r.update(format="mlknobs-model"), "not a mlknobs-diverged record"),
    (lambda r: r.pop("step_losses"), "missing 'step_losses'"),
])
def test_a_damaged_curve_is_one_error_naming_the_field(curve, change, words):
    record = record_of(curve)
    change(record)
    curve.write_text(json.dumps(record))
    with pytest.raises(ModelFileError) as refused:
        load_diverged(curve)
    assert str(refused.value).startswith(f"{curve}: not a diverged run's curve")
    assert words in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b"[" * 200_000), "nested deeper than 8 levels"),
    (lambda p: p.write_text('{"format": "mlknobs-diverged", "history": [], "step_losses": [[1, NaN]]}'),
     "NaN is not a JSON number"),
    (lambda p: p.write_bytes(b'{"format": "\xff"}'), "not UTF-8"),
    (lambda p: p.write_bytes(b"{"), "not valid JSON"),
    (lambda p: os.mkfifo(p), "FIFO"),
    (lambda p: os.symlink("/dev/zero", p), "character device"),
    (lambda p: os.truncate(p, MAX_BYTES + 1) if p.touch() is None else None, "too large"),     # sparse: costs nothing
])
def test_plot_history_of_a_hostile_file_is_one_line_exit_1(tmp_path, no_hang, make, words):
    path = tmp_path / "x.diverged.json"
    make(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = run("plot", "history", path, "--out", tmp_path / "h.png")
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "h.png").exists()


def test_plot_history_draws_a_real_diverged_run_without_a_warning(synthetic_data_dir, tmp_path):
    pytest.importorskip("matplotlib")
    trained = run("train", "--hidden-size", "8", "--epochs", "2", "--train-size", "1000", "--lr", "1000",
                  "--data-dir", synthetic_data_dir, "--out", tmp_path / "big.npz", "--quiet")
    assert trained.exit_code == 1 and (tmp_path / "big.diverged.json").exists(), trained.output
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # a matplotlib UserWarning (a null drawn) fails the test
        result = run("plot", "history", tmp_path / "big.diverged.json", "--out", tmp_path / "h.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
