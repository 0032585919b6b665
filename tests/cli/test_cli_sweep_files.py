"""`mlknobs sweep --resume` and `mlknobs plot sweep` on hostile or broken sweep folders, bad scheduler
addresses and environment defaults, through the real CLI: one line, the right exit code (1 for a
file's problem, 2 for the user's words), escaped text, nothing left behind, never a traceback."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import time

import pytest

from clirun import run
from mlknobs.training.sweep import executors

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def sweep_args(data_dir, out_dir, *extra):
    return ["sweep", "--hidden-size", "16", "--epochs", "1", "--val-size", "2000", "--data-dir", data_dir,
            "--out-dir", out_dir, "--quiet", *extra]


def assert_one_line_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error") or "Error:" in line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and "\x1b" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture
def finished_sweep(synthetic_data_dir, tmp_path):
    """A finished two-run sweep over --lr; returns its folder."""
    out = tmp_path / "s"
    result = run(*sweep_args(synthetic_data_dir, out, "--lr", "0.5,0.7", "--jobs", "1"))
    assert result.exit_code == 0, result.output
    return out


# --- results.jsonl ----------------------------------------------------------------------------------

HOSTILE_LINES = ["[" * 200_000, '{"run": RUN, "val_accuracy": "x"}', '{"run": RUN, "settings": []}',
                 '{"run": RUN, "status": "ok"}', "MISSING_SECONDS", "MISSING_STATUS", '"just text"', "{",
                 "CURVE_OF_TEXT", "CURVE_OF_WORDS"]


@pytest.mark.parametrize("line", HOSTILE_LINES)
def test_hostile_results_lines_neither_break_resume_nor_plot(synthetic_data_dir, finished_sweep, tmp_path, line):
    out = finished_sweep
    first, second = (json.loads(text) for text in (out / "results.jsonl").read_text().splitlines())
    hostile = {"MISSING_SECONDS": {k: v for k, v in second.items() if k != "seconds"},
               "MISSING_STATUS": {k: v for k, v in second.items() if k != "status"},
               "CURVE_OF_TEXT": {**second, "step_losses": "xy"},
               "CURVE_OF_WORDS": {**second, "step_losses": [[1, "a"], [2, "b"]]}}
    text = json.dumps(hostile[line]) if line in hostile else line.replace("RUN", json.dumps(second["run"]))
    first["step_losses"] = [[3, 2.3], [6, 1.1]]
    (out / "results.jsonl").write_text(json.dumps(first) + "\n" + text + "\n")
    if HAS_MATPLOTLIB:
        for extra in ([], ["--curves"]):
            drawn = run("plot", "sweep", "--sweep", out, "--out", tmp_path / "p.png", *extra)
            assert drawn.exit_code == 0, drawn.output
    resumed = run(*sweep_args(synthetic_data_dir, out, "--resume", "--json"))
    assert resumed.exit_code == 0, resumed.output
    assert sorted(r["run"] for r in json.loads(resumed.stdout)["runs"]) == sorted([first["run"], second["run"]])


def test_text_from_results_jsonl_reaches_the_terminal_escaped(synthetic_data_dir, finished_sweep):
    out = finished_sweep
    records = [json.loads(text) for text in (out / "results.jsonl").read_text().splitlines()]
    best = max(records, key=lambda r: r["val_accuracy"])
    other = next(r for r in records if r is not best)
    forged = [{**best, "model": "\x1b]0;pwned\x07m.npz\nbest: forged 99.99 %"},
              {**other, "status": "failed", "val_accuracy": None, "val_loss": None, "test_accuracy": None,
               "model": None, "error": "\x1b[2Jgone\rforged line", "retryable": False}]
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in forged))
    result = run(*sweep_args(synthetic_data_dir, out, "--resume"))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output and "\r" not in result.output
    best_lines = [line for line in result.stdout.splitlines() if line.startswith("best:")]
    assert len(best_lines) == 1 and "\\x1b]0;pwned\\x07m.npz\\nbest: forged" in best_lines[0]
    assert "\\x1b[2Jgone\\rforged line" in result.stdout


@pytest.mark.parametrize("make, words", [
    (lambda p: os.mkfifo(p), "FIFO"),
    (lambda p: os.symlink("/dev/zero", p), "character device"),
])
@pytest.mark.parametrize("name", ["results.jsonl", "sweep.json"])
def test_a_sweep_file_that_is_no_regular_file_is_refused_by_name(synthetic_data_dir, finished_sweep, tmp_path,
                                                                no_hang, make, words, name):
    out = finished_sweep
    (out / name).unlink()
    make(out / name)
    resumed = run(*sweep_args(synthetic_data_dir, out, "--resume"))
    assert_one_line_error(resumed, 1, str(out / name), words)
    if HAS_MATPLOTLIB:
        drawn = run("plot", "sweep", "--sweep", out, "--out", tmp_path / "p.png")
        assert_one_line_error(drawn, 1, str(out / name), words)


@pytest.mark.parametrize("grid, words", [
    ({"learning_rate": [0.1 + i / 1e6 for i in range(100_000)]}, "more than"),
    ({"learning_rate": json.loads("[" * 20 + "0.5" + "]" * 20)}, "nested"),
    ({"learning_rate": [-1.0]}, "learning_rate"),
    ({"learning_rate": [[0.5]]}, "not lists"),
    ({"learning_rate": []}, "at least one value"),
])
def test_a_problem_in_sweep_json_exits_1_fast(synthetic_data_dir, finished_sweep, tmp_path, grid, words):
    out = finished_sweep
    saved = json.loads((out / "sweep.json").read_text())
    (out / "sweep.json").write_text(json.dumps({**saved, "grid": {**saved["grid"], **grid}}))
    started = time.perf_counter()
    resumed = run(*sweep_args(synthetic_data_dir, out, "--resume"))
    assert time.perf_counter() - started < 5.0
    assert_one_line_error(resumed, 1, str(out / "sweep.json"), words)
    if HAS_MATPLOTLIB:
        drawn = run("plot", "sweep", "--sweep", out, "--out", tmp_path / "p.png")
        assert_one_line_error(drawn, 1, str(out / "sweep.json"), words)


def test_a_deeply_nested_sweep_json_exits_1(synthetic_data_dir, finished_sweep):
    (finished_sweep / "sweep.json").write_text("[" * 200_000)
    assert_one_line_error(run(*sweep_args(synthetic_data_dir, finished_sweep, "--resume")), 1, "nested")


# --- --scheduler ------------------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["bogus://127.0.0.1:1", "inproc://1.2.3.4/5/6", "tcp://[::1",
                                     "tcp://127.0.0.1:99999", "tcp://host", "\x1b]0;x\x07://h:1"])
def test_a_scheduler_address_that_names_no_cluster_is_a_usage_error(synthetic_data_dir, tmp_path, address):
    pytest.importorskip("distributed")
    result = run(*sweep_args(synthetic_data_dir, tmp_path / "s", "--backend", "dask", "--scheduler", address))
    assert_one_line_error(result, 2, "--scheduler")
    assert not (tmp_path / "s").exists()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", ["ucx://127.0.0.1:1", "tls://127.0.0.1:1", f"tcp://127.0.0.1:{closed_port()}"])
def test_an_unreachable_scheduler_is_one_line_and_leaves_no_sweep_json(synthetic_data_dir, tmp_path, monkeypatch,
                                                                       address):
    pytest.importorskip("distributed")
    monkeypatch.setattr(executors, "DASK_CONNECT_TIMEOUT", "1s")
    args = sweep_args(synthetic_data_dir, tmp_path / "s", "--backend", "dask", "--scheduler", address)
    assert_one_line_error(run(*args), 1, "cannot reach the Dask scheduler")
    assert not (tmp_path / "s" / "sweep.json").exists()
    again = run(*args)                                   # the same command, again: not "already holds a sweep"
    assert_one_line_error(again, 1, "cannot reach the Dask scheduler")


# --- environment defaults ---------------------------------------------------------------------------

@pytest.mark.parametrize("variable, value, flag", [
    ("MLKNOBS_THREADS", "1,2", "--threads"),
    ("MLKNOBS_DATASET", "mnist,fashion-mnist", "--dataset"),
])
def test_an_environment_variable_sets_one_value_never_a_grid(synthetic_data_dir, tmp_path, variable, value, flag):
    result = run(*sweep_args(synthetic_data_dir, tmp_path / "s", "--jobs", "1"), env={variable: value})
    assert_one_line_error(result, 2, variable, flag)
    assert not (tmp_path / "s").exists()


def test_an_environment_variable_still_sets_its_one_value(synthetic_data_dir, tmp_path):
    result = run(*sweep_args(synthetic_data_dir, tmp_path / "s", "--jobs", "1", "--json"),
                 env={"MLKNOBS_THREADS": "1"})
    assert result.exit_code == 0, result.output
    assert [r["settings"]["threads"] for r in json.loads(result.stdout)["runs"]] == [1]
