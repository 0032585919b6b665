"""`mlknobs sweep` and `mlknobs plot sweep` through the real CLI, on the synthetic digits standing in for MNIST."""

from __future__ import annotations

import importlib.util
import json
import logging

import pytest

import mlknobs.training.loop
from clirun import run


def sweep_args(data_dir, out_dir, *extra):
    return ["sweep", "--hidden-size", "16", "--epochs", "1", "--val-size", "2000", "--data-dir", data_dir,
            "--out-dir", out_dir, "--quiet", *extra]


def outcomes(report: dict) -> dict:
    return {r["run"]: (r["status"], r["val_accuracy"], r["val_loss"], r["test_accuracy"]) for r in report["runs"]}


@pytest.fixture(scope="module")
def dask_scheduler():
    """A real distributed.LocalCluster on loopback, started and closed around this module's tests."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


def test_sweep_json_ranks_by_validation_and_records_a_failed_run(synthetic_data_dir, tmp_path):
    out = tmp_path / "s"
    result = run(*sweep_args(synthetic_data_dir, out, "--lr", "0.2,0.5,1000", "--jobs", "2", "--json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    runs = report["runs"]
    assert [r["status"] for r in runs] == ["ok", "ok", "failed"]
    assert runs[0]["val_accuracy"] >= runs[1]["val_accuracy"]
    assert report["best"] == runs[0] and 0.8 < report["best"]["test_accuracy"] <= 1
    assert set(runs[0]) == {"run", "settings", "status", "val_accuracy", "val_loss", "test_accuracy", "seconds",
                            "model"}
    assert runs[2]["error"] and runs[2]["settings"]["learning_rate"] == 1000
    lines = (out / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["run"] for line in lines) == sorted(r["run"] for r in runs)
    assert (out / "sweep.json").is_file()
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(f"{r['run']}.npz" for r in runs[:2])


def test_sweep_prints_a_table_best_first_and_names_the_best_run(synthetic_data_dir, tmp_path):
    result = run(*sweep_args(synthetic_data_dir, tmp_path / "s", "--lr", "0.5,1000", "--seed", "0,1", "--jobs", "1"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["rank", "run", "lr", "seed"] and "val acc" in lines[0] and "test acc" in lines[0]
    assert lines[1].split()[0] == "1" and lines[3].split()[0] == "-" and "failed" in lines[3]
    assert lines[-1].startswith("best: lr0.5-seed") and "validation accuracy" in lines[-1] \
        and "test accuracy" in lines[-1]


@pytest.mark.parametrize("args, flag", [
    (["--lr", "0.1,-1"], "--lr"),
    (["--hidden-size", "16,abc"], "--hidden-size"),
    (["--schedule", "cosine,bogus"], "--schedule"),
    (["--seed", "0,,1"], "--seed"),
    (["--seed", "1,1"], "--seed"),
    (["--val-size", "0"], "--val-size"),
    (["--momentum", "0,0.9", "--nesterov"], "--nesterov"),
    (["--jobs", "0"], "--jobs"),
    (["--scheduler", "tcp://127.0.0.1:1"], "--backend dask"),
])
def test_a_bad_value_is_a_usage_error_naming_the_option(synthetic_data_dir, tmp_path, args, flag):
    result = run(*sweep_args(synthetic_data_dir, tmp_path / "s", *args))
    assert result.exit_code == 2, result.output
    assert flag in result.output
    assert not (tmp_path / "s").exists()            # refused before anything is written


def test_ctrl_c_keeps_finished_runs_and_resume_runs_only_the_missing_ones(synthetic_data_dir, tmp_path,
                                                                          monkeypatch):
    out = tmp_path / "s"
    args = sweep_args(synthetic_data_dir, out, "--lr", "0.3,0.5,0.7", "--jobs", "1")
    real_run_epoch = mlknobs.training.loop._Fit.run_epoch
    trained = []

    def ctrl_c_in_the_second_run(self, epoch):
        if self.config.learning_rate == 0.5 and not trained.count("interrupted"):
            trained.append("interrupted")
            raise KeyboardInterrupt
        trained.append(self.config.learning_rate)
        return real_run_epoch(self, epoch)

    monkeypatch.setattr(mlknobs.training.loop._Fit, "run_epoch", ctrl_c_in_the_second_run)
    stopped = run(*args)
    assert stopped.exit_code == 130, stopped.output
    assert "1 of 3 runs finished" in stopped.stderr and f"mlknobs sweep --resume --out-dir {out}" in stopped.stderr
    assert len((out / "results.jsonl").read_text().splitlines()) == 1

    resumed = run(*args, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert trained == [0.3, "interrupted", 0.5, 0.7]                     # every run trained exactly once
    assert len(json.loads(resumed.stdout)["runs"]) == 3
    lines = [json.loads(line)["run"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == len(set(lines)) == 3


def test_resume_with_another_grid_is_refused_naming_the_option(synthetic_data_dir, tmp_path):
    out = tmp_path / "s"
    assert run(*sweep_args(synthetic_data_dir, out, "--lr", "0.5", "--jobs", "1")).exit_code == 0
    refused = run(*sweep_args(synthetic_data_dir, out, "--lr", "0.5,1", "--resume"))
    assert refused.exit_code == 1
    assert "--lr 0.5,1 (the sweep has 0.5)" in refused.output
    again = run(*sweep_args(synthetic_data_dir, out, "--lr", "0.5"))
    assert again.exit_code == 1 and "--resume" in again.output and "already holds a sweep" in again.output
    nothing = run(*sweep_args(synthetic_data_dir, tmp_path / "none", "--resume"))
    assert nothing.exit_code == 1 and "nothing to resume" in nothing.output


def test_dask_backend_on_a_cluster_gives_the_same_results_as_local(synthetic_data_dir, tmp_path, dask_scheduler):
    grid = ["--lr", "0.5,1000", "--seed", "0,1", "--json"]
    local = run(*sweep_args(synthetic_data_dir, tmp_path / "local", *grid, "--jobs", "2"))
    dask = run(*sweep_args(synthetic_data_dir, tmp_path / "dask", *grid, "--backend", "dask",
                           "--scheduler", dask_scheduler))
    assert local.exit_code == 0 and dask.exit_code == 0, local.output + dask.output
    assert outcomes(json.loads(dask.stdout)) == outcomes(json.loads(local.stdout))


def test_a_missing_extra_is_one_line_with_the_pip_hint(synthetic_data_dir, tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "distributed" else real_find_spec(name, *a))
    result = run(*sweep_args(synthetic_data_dir, tmp_path / "s", "--backend", "dask"))
    assert result.exit_code == 1
    assert "a sweep on Dask needs distributed" in result.output
    assert 'pip install "mlknobs[sweep]"' in result.output


def test_every_run_failing_exits_1_after_the_table(synthetic_data_dir, tmp_path):
    result = run(*sweep_args(synthetic_data_dir, tmp_path / "s", "--lr", "1000", "--jobs", "1"))
    assert result.exit_code == 1
    assert "failed" in result.stdout and "none of the 1 runs finished" in result.stderr


# --- plot sweep -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_way_sweep(synthetic_mnist, tmp_path_factory):
    """A finished sweep over --lr (one value diverges) and --hidden-size."""
    from conftest import registered_as_mnist

    out = tmp_path_factory.mktemp("sweep") / "s"
    with registered_as_mnist(synthetic_mnist.spec):
        result = run(*sweep_args(synthetic_mnist.data_dir, out, "--lr", "0.5,1000", "--hidden-size", "8,16",
                                 "--jobs", "1"))
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("extra", [[], ["--seed", "0,1"]])
def test_plot_sweep_draws_a_heatmap_or_panels(two_way_sweep, synthetic_data_dir, tmp_path, extra):
    pytest.importorskip("matplotlib")
    folder = two_way_sweep
    if extra:        # three swept settings: one panel each, a line per value of another
        folder = tmp_path / "three"
        made = run(*sweep_args(synthetic_data_dir, folder, "--lr", "0.3,0.5", "--hidden-size", "8,16", *extra,
                               "--jobs", "1"))
        assert made.exit_code == 0, made.output
    picture = tmp_path / "sweep.png"
    result = run("plot", "sweep", "--sweep", folder, "--out", picture)
    assert result.exit_code == 0, result.output
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_sweep_needs_a_sweep_folder(tmp_path):
    pytest.importorskip("matplotlib")
    missing = run("plot", "sweep", "--out", tmp_path / "s.png")
    assert missing.exit_code == 2 and "--sweep" in missing.output
    empty = run("plot", "sweep", "--sweep", tmp_path, "--out", tmp_path / "s.png")
    assert empty.exit_code == 1 and "sweep.json" in empty.output
