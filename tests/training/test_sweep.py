"""training.sweep: the grid and its run ids, the results file, both backends (joblib's pool and a real
Dask LocalCluster on loopback), failed runs, Ctrl-C and resume, lost Dask workers.

The runs train on the synthetic digits, registered as "mnist" in this process only: the sweep
looks the dataset's spec up here and sends it with every run, so worker processes verify the
same files without the registry patch.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

import pytest

import mlknobs.training.loop
from mlknobs.config import TrainConfig
from mlknobs.errors import SettingsError
from mlknobs.training.sweep import (
    Grid,
    NoSweepToResume,
    SweepData,
    SweepError,
    SweepExists,
    SweepGridDiffers,
    SweepInterrupted,
    load_sweep,
    rank,
    read_results,
    run_id,
    sweep,
)

SMALL = {"hidden_size": [16], "epochs": [1], "val_size": [2000]}
RESULT_KEYS = ("run", "settings", "status", "val_accuracy", "val_loss", "test_accuracy", "error")


def small_grid(**values) -> Grid:
    return Grid.of({**SMALL, **values})


def results(result) -> dict:
    """Each run's outcome without what legitimately differs between backends and folders (time, path)."""
    return {r["run"]: {k: r.get(k) for k in RESULT_KEYS} for r in result.records}


@pytest.fixture(scope="module")
def dask_scheduler():
    """A real distributed.LocalCluster on loopback: two worker processes of one thread, closed afterwards."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


# --- the grid ---------------------------------------------------------------------------------------

def test_grid_expands_every_combination_in_order_with_stable_readable_ids():
    grid = Grid.of({"learning_rate": [0.1, 1], "hidden_size": [16, 32], "seed": [0, 1, 2]})
    assert len(grid) == 12 and grid.varying == ("hidden_size", "learning_rate", "seed")
    configs = grid.configs()
    assert [(c.hidden_size, c.learning_rate, c.seed) for c in configs[:4]] == \
        [(16, 0.1, 0), (16, 0.1, 1), (16, 0.1, 2), (16, 1.0, 0)]
    assert all(c.val_size == 10_000 and c.epochs == 3 for c in configs)     # a sweep's defaults
    ids = grid.run_ids()
    assert len(set(ids)) == 12 and ids == Grid.of(grid.to_dict()).run_ids()
    assert ids[3].startswith("h16-lr1-seed0-") and len(ids[3].rsplit("-", 1)[1]) == 8
    assert Grid.of({"learning_rate": [1, 2]}).run_ids() == Grid.of({"learning_rate": [1.0, 2.0]}).run_ids()
    assert run_id(TrainConfig()) != run_id(TrainConfig(seed=1))            # every setting is in the hash


@pytest.mark.parametrize("values, setting", [
    ({"learning_rate": [0.5, -1.0]}, "learning_rate"),
    ({"seed": [0, 1, 0]}, "seed"),
    ({"val_size": [0]}, "val_size"),
    ({"hidden_size": []}, "hidden_size"),
    ({"momentum": [0.0, 0.9], "nesterov": [True]}, "nesterov"),
])
def test_grid_refuses_bad_values_naming_the_setting(values, setting):
    with pytest.raises(SettingsError) as refused:
        Grid.of(values)
    assert setting in refused.value.settings


@pytest.mark.parametrize("values", [
    {"learning_rate": [0.1 + i / 1e6 for i in range(100_000)]},                   # one long list
    {"learning_rate": [0.1 + i / 1e6 for i in range(5_000)], "seed": [0, 1, 2]},  # a long product
    {"seed": list(range(9_999)) + [0]},                                           # a repeat at the end
])
def test_a_huge_grid_is_refused_in_linear_time(values):
    started = time.perf_counter()
    with pytest.raises(SettingsError):
        Grid.of(values)
    assert time.perf_counter() - started < 1.0


def test_ranking_uses_validation_never_test_accuracy():
    records = [{"run": "a", "status": "ok", "val_accuracy": 0.90, "val_loss": 0.3, "test_accuracy": 0.99},
               {"run": "b", "status": "failed", "val_accuracy": None},
               {"run": "c", "status": "ok", "val_accuracy": 0.95, "val_loss": 0.2, "test_accuracy": 0.80},
               {"run": "d", "status": "ok", "val_accuracy": 0.95, "val_loss": 0.1, "test_accuracy": 0.70}]
    assert [r["run"] for r in rank(records)] == ["d", "c", "a", "b"]


# --- running ----------------------------------------------------------------------------------------

def test_a_diverging_run_is_recorded_failed_and_the_others_finish(synthetic_data_dir, tmp_path):
    seen = []

    def callback(progress):
        if progress.event == "run":     # the line is in the file, whole, by the time we hear of the run
            lines = (tmp_path / "s" / "results.jsonl").read_text().splitlines()
            seen.append(len(lines))
            assert json.loads(lines[-1]) == progress.record

    result = sweep(small_grid(learning_rate=[0.5, 1000.0]), tmp_path / "s", data=SweepData(synthetic_data_dir),
                   jobs=1, callback=callback)
    assert seen == [1, 2]
    ok, failed = rank(result.records)
    assert ok["status"] == "ok" and ok["settings"]["learning_rate"] == 0.5 and 0.8 < ok["val_accuracy"] <= 1
    assert 0.8 < ok["test_accuracy"] <= 1 and ok["model"].endswith(f"runs/{ok['run']}.npz")
    assert (tmp_path / "s" / "runs" / f"{ok['run']}.npz").is_file()
    assert failed["status"] == "failed" and failed["model"] is None
    assert "diverged" in failed["error"] or "collapsed" in failed["error"]
    assert result.best == ok
    description = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert description["grid"]["learning_rate"] == [0.5, 1000.0] and description["varying"] == ["learning_rate"]
    assert description["runs"] == [r["run"] for r in result.records]
    assert set(ok["settings"]) == set(TrainConfig().to_dict())


def test_local_pool_and_dask_give_identical_results(synthetic_data_dir, tmp_path, dask_scheduler):
    grid = small_grid(learning_rate=[0.5, 1000.0], seed=[0, 1])
    data = SweepData(synthetic_data_dir)
    in_process = sweep(grid, tmp_path / "one", data=data, jobs=1)
    pool = sweep(grid, tmp_path / "pool", data=data, jobs=2)
    dask = sweep(grid, tmp_path / "dask", data=data, backend="dask", scheduler=dask_scheduler)
    assert len(results(in_process)) == 4
    assert results(pool) == results(in_process)
    assert results(dask) == results(in_process)
    assert sum(r["status"] == "failed" for r in dask.records) == 2


def test_dask_without_an_address_starts_and_closes_a_local_cluster(synthetic_data_dir, tmp_path):
    grid = small_grid(seed=[0])
    reference = sweep(grid, tmp_path / "local", data=SweepData(synthetic_data_dir), jobs=1)
    started = sweep(grid, tmp_path / "dask", data=SweepData(synthetic_data_dir), backend="dask", jobs=1)
    assert results(started) == results(reference)


def test_a_scheduler_address_needs_the_dask_backend(synthetic_data_dir, tmp_path):
    with pytest.raises(SettingsError):
        sweep(small_grid(), tmp_path / "s", backend="local", scheduler="tcp://127.0.0.1:1")


# --- Ctrl-C and resume ------------------------------------------------------------------------------

def test_interrupted_then_resumed_runs_each_combination_exactly_once(synthetic_data_dir, tmp_path, monkeypatch):
    grid = small_grid(learning_rate=[0.3, 0.5, 0.7], epochs=[2])
    data = SweepData(synthetic_data_dir)
    whole = sweep(grid, tmp_path / "whole", data=data, jobs=1)

    trained = []            # (learning rate, epoch) of every epoch trained, across both calls
    real_run_epoch = mlknobs.training.loop._Fit.run_epoch

    def counting_run_epoch(self, epoch):
        if (self.config.learning_rate, epoch) == (0.5, 1) and not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt          # Ctrl-C in the second epoch of the second run
        trained.append((self.config.learning_rate, epoch))
        return real_run_epoch(self, epoch)

    interrupted = []
    monkeypatch.setattr(mlknobs.training.loop._Fit, "run_epoch", counting_run_epoch)
    out = tmp_path / "s"
    with pytest.raises(SweepInterrupted) as stopped:
        sweep(grid, out, data=data, jobs=1)
    assert (stopped.value.recorded, stopped.value.total) == (1, 3)
    assert len(read_results(out / "results.jsonl")) == 1
    assert len(list((out / "runs").glob("*.ckpt.npz"))) == 1       # the interrupted run's epoch 1

    resumed = sweep(None, out, data=data, jobs=1, resume=True, given={"learning_rate": [0.3, 0.5, 0.7]})
    assert sorted(trained) == sorted((lr, e) for lr in (0.3, 0.5, 0.7) for e in (0, 1))    # each epoch once
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["run"] for r in lines) == sorted(grid.run_ids())          # each run recorded once
    assert results(resumed) == results(whole)       # the continued run ends as if never interrupted
    assert not list((out / "runs").glob("*.ckpt.npz"))

    again = sweep(None, out, data=data, jobs=1, resume=True)                   # nothing left: nothing runs
    assert results(again) == results(whole) and len(trained) == 6


def test_resume_refuses_another_grid_naming_what_differs(synthetic_data_dir, tmp_path):
    out = tmp_path / "s"
    sweep(small_grid(learning_rate=[0.5]), out, data=SweepData(synthetic_data_dir), jobs=1)
    with pytest.raises(SweepGridDiffers) as refused:
        sweep(None, out, resume=True, given={"learning_rate": [0.5, 1.0], "hidden_size": [16]})
    assert set(refused.value.differences) == {"learning_rate"}
    assert "learning_rate: saved 0.5, given 0.5,1" in str(refused.value)


def test_resume_refuses_a_sweep_whose_run_ids_another_version_made(synthetic_data_dir, tmp_path):
    out = tmp_path / "s"
    sweep(small_grid(), out, data=SweepData(synthetic_data_dir), jobs=1)
    description = json.loads((out / "sweep.json").read_text())
    (out / "sweep.json").write_text(json.dumps({**description, "runs": ["run-0badc0de"], "mlknobs": "0.0.1"}))
    with pytest.raises(SweepError, match="written by mlknobs 0.0.1, whose run ids differ"):
        sweep(None, out, resume=True)


def test_a_new_sweep_refuses_a_folder_that_holds_one_and_resume_needs_one(synthetic_data_dir, tmp_path):
    out = tmp_path / "s"
    sweep(small_grid(), out, data=SweepData(synthetic_data_dir), jobs=1)
    with pytest.raises(SweepExists) as refused:
        sweep(small_grid(), out, jobs=1)
    assert (refused.value.recorded, refused.value.total) == (1, 1)
    with pytest.raises(NoSweepToResume):
        sweep(None, tmp_path / "empty", resume=True)
    assert [r["run"] for r in load_sweep(out).records] == small_grid().run_ids()


def test_a_torn_last_line_is_skipped_and_its_run_runs_again(synthetic_data_dir, tmp_path):
    grid = small_grid(seed=[0, 1])
    out = tmp_path / "s"
    whole = sweep(grid, out, data=SweepData(synthetic_data_dir), jobs=1)
    text = (out / "results.jsonl").read_text()
    (out / "results.jsonl").write_text(text[:len(text) - 20])        # as if the writer died mid-line
    resumed = sweep(None, out, data=SweepData(synthetic_data_dir), jobs=1, resume=True)
    assert results(resumed) == results(whole)
    assert len(read_results(out / "results.jsonl")) == 2


# --- a lost Dask worker -----------------------------------------------------------------------------

@pytest.mark.parametrize("allowed_failures, status", [(0, "failed"), (3, "ok")])
def test_a_lost_dask_worker_means_its_run_is_retried_or_recorded_failed(synthetic_data_dir, tmp_path,
                                                                        allowed_failures, status):
    import dask
    from distributed import Client, LocalCluster

    grid = small_grid(hidden_size=[256], epochs=[2], seed=[0, 1])          # ~1 s a run: time to kill one
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster) as client:
        pids = client.run(os.getpid)                      # worker address -> its process id
        killed = []

        def kill_a_busy_worker():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                for address, keys in client.processing().items():
                    if keys and address in pids:
                        os.kill(pids[address], signal.SIGKILL)
                        killed.append(next(iter(keys)))
                        return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
        killer.start()
        result = sweep(grid, tmp_path / "s", data=SweepData(synthetic_data_dir), backend="dask",
                       scheduler=cluster.scheduler_address)
        killer.join(timeout=5)
    assert killed, "no worker was caught running a task"
    lost = next(r for r in result.records if killed[0].startswith(f"mlknobs-{r['run']}-"))
    assert len(result.records) == 2                                          # never silently missing
    assert lost["status"] == status
    # The scheduler may have queued a second run on the killed worker: it shares the first one's fate.
    for record in result.records:
        assert record["status"] == "ok" or record["error"].startswith("lost its Dask worker: KilledWorker")
    if status == "ok":
        assert all(record["status"] == "ok" for record in result.records)
