"""`mlknobs lr-find` through the real CLI, on the synthetic digits standing in for MNIST."""

from __future__ import annotations

import json

import pytest

from clirun import run


def lr_find_args(data_dir, *extra):
    return ["lr-find", "--hidden-size", "32", "--steps", "60", "--data-dir", data_dir, "--quiet", *extra]


def test_json_gives_the_curve_and_a_suggestion_inside_the_range_and_no_file_is_written(synthetic_data_dir,
                                                                                    tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*lr_find_args(synthetic_data_dir, "--start-lr", "1e-4", "--end-lr", "5", "--json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"suggested_lr", "rule", "lr", "loss", "stopped_at"}
    assert 1e-4 <= report["suggested_lr"] <= 5 and report["rule"] == "minimum/10"
    assert len(report["lr"]) == len(report["loss"]) <= 60 and report["lr"][0] == pytest.approx(1e-4)
    assert report["stopped_at"] is None or report["stopped_at"] <= 5
    assert list(tmp_path.iterdir()) == []              # never a model file (nor anything else)


def test_text_names_the_suggestion_and_the_rule(synthetic_data_dir):
    result = run(*[a for a in lr_find_args(synthetic_data_dir) if a != "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("suggested learning rate: ")
    assert "rule: the smoothed loss's minimum divided by 10" in result.stdout
    assert "try: mlknobs train --lr" in result.stderr


def test_plot_draws_the_curve(synthetic_data_dir, tmp_path):
    pytest.importorskip("matplotlib")
    picture = tmp_path / "lr.png"
    result = run(*lr_find_args(synthetic_data_dir, "--plot", picture))
    assert result.exit_code == 0, result.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, flag", [(["--start-lr", "1", "--end-lr", "0.1"], "--start-lr"),
                                        (["--steps", "5"], "--steps"), (["--hidden-size", "0"], "--hidden-size"),
                                        (["--plot", "lr.gif"], "lr.gif")])
def test_bad_options_are_refused(synthetic_data_dir, tmp_path, monkeypatch, args, flag):
    monkeypatch.chdir(tmp_path)
    result = run(*lr_find_args(synthetic_data_dir, *args))
    assert result.exit_code in (1, 2) and flag in result.output


@pytest.mark.parametrize("args, flag", [
    (["--steps", "1000000000"], "--steps"), (["--steps", "1e26"], "--steps"),
    (["--steps", "100000000000000000000000000"], "--steps"),
    (["--start-lr", "1e-308", "--end-lr", "1e308"], "--start-lr"), (["--end-lr", "1e308"], "--end-lr"),
    (["--end-lr", "inf"], "--end-lr"), (["--start-lr", "nan"], "--start-lr"), (["--start-lr", "1e-11"], "--start-lr"),
])
def test_steps_and_learning_rates_beyond_their_bounds_are_usage_errors_naming_the_option(synthetic_data_dir,
                                                                                        args, flag):
    result = run(*lr_find_args(synthetic_data_dir, *args))
    assert result.exit_code == 2 and flag in result.stderr, result.output
    assert "Traceback" not in result.output and "RuntimeWarning" not in result.output


def test_help_states_the_bounds():
    from mlknobs.training.lr_find_settings import MAX_LR, MAX_STEPS, MIN_LR, MIN_STEPS

    text = " ".join(run("lr-find", "--help").stdout.split())
    assert f"{MIN_STEPS}<=x<={MAX_STEPS}" in text and f"{MIN_LR}<=x<={MAX_LR}" in text
    assert all(flag in text for flag in ("--dropout", "--input-scaling", "--init-scale", "--train-size"))


def test_the_widest_range_gives_a_finite_suggestion(synthetic_data_dir):
    result = run(*lr_find_args(synthetic_data_dir, "--start-lr", "1e-10", "--end-lr", "1e6", "--json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert isinstance(report["suggested_lr"], float) and 0 < report["suggested_lr"] < 1e6
    assert "Warning" not in result.stderr


def test_dropout_reaches_the_range_test(synthetic_data_dir):
    plain = json.loads(run(*lr_find_args(synthetic_data_dir, "--json")).stdout)
    dropped = json.loads(run(*lr_find_args(synthetic_data_dir, "--dropout", "0.5", "--json")).stdout)
    assert plain["lr"][:5] == dropped["lr"][:5] and plain["loss"][0] != dropped["loss"][0]


def test_the_lessons_raw_inputs_run_and_suggest_another_rate_than_standardized_ones(synthetic_data_dir):
    """Lesson 7's `train --input-scaling raw` diverges and the error points at lr-find "(same settings)":
    lr-find takes those settings, and raw pixels (255 times larger inputs) call for a smaller rate
    (on real MNIST, at the lesson's settings: 0.036 against 0.47)."""
    lesson = ["--hidden-size", "32", "--train-size", "5000"]
    raw = run(*lr_find_args(synthetic_data_dir, *lesson, "--input-scaling", "raw", "--json"))
    assert raw.exit_code == 0, raw.output
    standardized = json.loads(run(*lr_find_args(synthetic_data_dir, *lesson, "--json")).stdout)
    suggested = json.loads(raw.stdout)["suggested_lr"]
    assert suggested < standardized["suggested_lr"] / 2


@pytest.mark.parametrize("args", [["--init-scale", "0.25"], ["--train-size", "500"], ["--input-scaling", "unit"]])
def test_the_settings_that_shape_the_network_and_its_digits_reach_the_range_test(synthetic_data_dir, args):
    plain = json.loads(run(*lr_find_args(synthetic_data_dir, "--json")).stdout)
    changed = run(*lr_find_args(synthetic_data_dir, *args, "--json"))
    assert changed.exit_code == 0, changed.output
    assert json.loads(changed.stdout)["loss"][0] != plain["loss"][0]


@pytest.mark.parametrize("args, flag", [
    (["--train-size", "10001"], "--train-size"), (["--train-size", "0"], "--train-size"),
    (["--init-scale", "0"], "--init-scale"), (["--input-scaling", "none"], "--input-scaling"),
    (["--val-size", "600", "--train-size", "500"], "--val-size"),
])
def test_settings_out_of_range_are_usage_errors_naming_the_flag(synthetic_data_dir, args, flag):
    result = run(*lr_find_args(synthetic_data_dir, *args))
    assert result.exit_code == 2 and flag in result.stderr, result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.stderr.splitlines() if line.startswith("Error")]) == 1
