"""training/sweep/results.py: the one schema of a results line, the sweep.json checks, and what
`--resume` retries (runs that failed for a reason outside the run) and what it does not (diverged).

The runs train on the synthetic digits registered as "mnist" (synthetic_data_dir).
"""

from __future__ import annotations

import json
import time

import pytest

import mlknobs.training.loop
from mlknobs.errors import SweepFileError
from mlknobs.files import OutputLock
from mlknobs.training.sweep import Grid, SweepData, load_sweep, sweep
from mlknobs.training.sweep.results import MAX_RESULT_LINE_BYTES, is_final, of_grid, parse_record, read_results

SMALL = {"hidden_size": [16], "epochs": [1], "val_size": [2000]}
GOOD = {"run": "lr0.5-0123abcd", "settings": {"learning_rate": 0.5}, "status": "ok", "val_accuracy": 0.9,
        "val_loss": 0.3, "test_accuracy": 0.91, "seconds": 1.5, "model": "/m/lr0.5.npz"}


def small_grid(**values) -> Grid:
    return Grid.of({**SMALL, **values})


# --- the schema -------------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [
    {"val_accuracy": "x"}, {"val_accuracy": 1.5}, {"val_accuracy": -0.1}, {"val_accuracy": True},
    {"val_accuracy": None}, {"val_accuracy": 1e999}, {"test_accuracy": "0.9"}, {"val_loss": -1.0},
    {"val_loss": [0.3]}, {"settings": []}, {"settings": "lr=0.5"}, {"settings": {"learning_rate": [0.5]}},
    {"settings": {"learning_rate": {"x": 1}}}, {"settings": None}, {"seconds": None}, {"seconds": -1},
    {"seconds": "1"}, {"status": "done"}, {"status": None}, {"run": 7}, {"run": ""}, {"run": "x" * 5000},
    {"model": 3}, {"model": ["a"]}, {"error": {"m": 1}}, {"error": "e" * 5000}, {"retryable": "yes"},
    {"step_losses": "xy"}, {"step_losses": [[1, "a"]]}, {"step_losses": [[1]]}, {"step_losses": [[1, 0.5, 2]]},
    {"step_losses": [["a", 0.5]]}, {"step_losses": [[-1, 0.5]]}, {"step_losses": [[1.5, 0.5]]},
    {"step_losses": [[1, -0.5]]}, {"step_losses": {"1": 0.5}}, {"step_losses": None},
    {"step_losses": [[step, 0.5] for step in range(1001)]},
])
def test_a_record_with_a_wrong_field_is_no_record(change):
    assert parse_record({**GOOD, **change}) is None


@pytest.mark.parametrize("missing", ["run", "settings", "status", "seconds", "val_accuracy"])
def test_a_record_missing_a_field_is_no_record(missing):
    assert parse_record({k: v for k, v in GOOD.items() if k != missing}) is None


@pytest.mark.parametrize("value", [None, [], "text", 3, [GOOD]])
def test_a_line_that_is_not_an_object_is_no_record(value):
    assert parse_record(value) is None


def test_good_records_pass_whole_and_say_whether_they_settle_their_run():
    assert parse_record(GOOD) == GOOD and is_final(GOOD)
    curved = {**GOOD, "step_losses": [[3, 2.3], [6, 1.1], [9, None]]}
    assert parse_record(curved) == curved
    failed = {**GOOD, "status": "failed", "val_accuracy": None, "val_loss": None, "test_accuracy": None,
              "model": None, "error": "diverged at step 3"}
    assert parse_record(failed) == failed and is_final(failed)                  # older files: no `retryable`
    assert is_final({**failed, "retryable": False}) and not is_final({**failed, "retryable": True})
    assert not is_final(None)


def test_read_results_keeps_valid_lines_and_the_last_of_each_run(tmp_path):
    path = tmp_path / "results.jsonl"
    later = {**GOOD, "seconds": 2.0}
    path.write_text("\n".join([json.dumps(GOOD), json.dumps({**GOOD, "run": "b", "val_accuracy": "x"}),
                               "[" * 200_000, json.dumps({**GOOD, "run": "c", "settings": []}),
                               json.dumps({"run": "d", "x": "y" * MAX_RESULT_LINE_BYTES}), json.dumps(later)]) + "\n")
    started = time.perf_counter()
    assert read_results(path) == {GOOD["run"]: later}
    assert time.perf_counter() - started < 1.0


def test_of_grid_drops_records_of_other_runs_and_of_other_settings():
    grid = small_grid(learning_rate=[0.5, 1.0])
    ids, configs = grid.run_ids(), grid.configs()
    mine = {**GOOD, "run": ids[0], "settings": configs[0].to_dict()}
    forged = {**GOOD, "run": ids[1], "settings": {**configs[1].to_dict(), "learning_rate": 7.0}}
    stranger = {**GOOD, "run": "lr9-00000000", "settings": configs[0].to_dict()}
    records = {r["run"]: r for r in (mine, forged, stranger)}
    assert of_grid(records, grid) == {ids[0]: mine}


# --- what a sweep reads -----------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "[" * 200_000, '{"run": RUN, "val_accuracy": "x"}', '{"run": RUN, "settings": []}', '{"run": RUN}',
    "MISSING_SECONDS", "MISSING_STATUS", "OTHER_SETTINGS",
])
def test_a_hostile_results_line_is_skipped_and_its_run_runs_again(synthetic_data_dir, tmp_path, line):
    grid = small_grid(learning_rate=[0.5, 0.7])
    out = tmp_path / "s"
    whole = sweep(grid, out, data=SweepData(synthetic_data_dir), jobs=1)
    first, second = (json.loads(text) for text in (out / "results.jsonl").read_text().splitlines())
    hostile = {"MISSING_SECONDS": {k: v for k, v in second.items() if k != "seconds"},
               "MISSING_STATUS": {k: v for k, v in second.items() if k != "status"},
               "OTHER_SETTINGS": {**second, "settings": first["settings"]}}
    text = json.dumps(hostile[line]) if line in hostile else line.replace("RUN", json.dumps(second["run"]))
    (out / "results.jsonl").write_text(json.dumps(first) + "\n" + text + "\n")
    assert [r["run"] for r in load_sweep(out).records] == [first["run"]]            # what plot sweep draws
    resumed = sweep(None, out, data=SweepData(synthetic_data_dir), jobs=1, resume=True)
    assert [r["val_accuracy"] for r in resumed.records] == [r["val_accuracy"] for r in whole.records]


@pytest.mark.parametrize("description, words", [
    ({"grid": {"learning_rate": [0.1 + i / 1e6 for i in range(100_000)]}}, "more than"),
    ({"grid": {"learning_rate": [[0.5]]}}, "not lists"),
    ({"grid": {"learning_rate": [{"x": 1}]}}, "not lists"),
    ({"grid": {"learning_rate": []}}, "at least one value"),
    ({"grid": {"learning_rate": [-1.0]}}, "learning_rate"),
    ({"grid": {"learning_rate": [10 ** 400]}}, "too large"),
    ({"grid": {"learning_rate": "0.5"}}, "not an object of lists"),
    ({"grid": {"colour": [1]}}, "unknown training settings"),
    ({"grid": []}, "not an object of lists"),
    ({"runs": list(range(20_000))}, "list of runs"),
    ({"version": 99}, "version 99"),
    ({"format": "other"}, "does not describe"),
])
def test_a_bad_sweep_json_is_a_file_error_found_fast(synthetic_data_dir, tmp_path, description, words):
    out = tmp_path / "s"
    sweep(small_grid(), out, data=SweepData(synthetic_data_dir), jobs=1)
    saved = json.loads((out / "sweep.json").read_text())
    (out / "sweep.json").write_text(json.dumps({**saved, **description}))
    for read in (lambda: sweep(None, out, resume=True), lambda: load_sweep(out)):
        started = time.perf_counter()
        with pytest.raises(SweepFileError) as refused:
            read()
        assert time.perf_counter() - started < 2.0
        assert refused.value.path == out / "sweep.json" and words in str(refused.value)
        assert "\n" not in str(refused.value) and len(str(refused.value)) < 600


# --- what --resume retries --------------------------------------------------------------------------

def test_resume_retries_a_run_that_failed_outside_itself_but_not_one_that_diverged(synthetic_data_dir, tmp_path,
                                                                                   monkeypatch):
    grid = small_grid(learning_rate=[0.5, 1000.0, 0.7])
    out = tmp_path / "s"
    data = SweepData(synthetic_data_dir)
    busy_run = grid.run_ids()[2]
    (out / "runs").mkdir(parents=True)
    with OutputLock(out / "runs" / f"{busy_run}.npz"):      # another process writes that run's model
        first = {r["run"]: r for r in sweep(grid, out, data=data, jobs=1).records}
    assert first[busy_run]["status"] == "failed" and first[busy_run]["retryable"] is True
    assert "being written" in first[busy_run]["error"]
    diverged = grid.run_ids()[1]
    assert first[diverged]["status"] == "failed" and first[diverged]["retryable"] is False

    trained = []
    real_run_epoch = mlknobs.training.loop._Fit.run_epoch

    def counting_run_epoch(self, epoch):
        trained.append(self.config.learning_rate)
        return real_run_epoch(self, epoch)

    monkeypatch.setattr(mlknobs.training.loop._Fit, "run_epoch", counting_run_epoch)
    again = {r["run"]: r for r in sweep(None, out, data=data, jobs=1, resume=True).records}
    assert trained == [0.7]                                    # the blocked run only: not the diverged one
    assert again[busy_run]["status"] == "ok" and again[diverged] == first[diverged]
    assert sweep(None, out, data=data, jobs=1, resume=True).records == list(again.values())
    assert trained == [0.7]                                    # nothing left to retry


def test_an_unwritable_runs_folder_fails_runs_retryably(synthetic_data_dir, tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    out = tmp_path / "s"
    (out / "runs").mkdir(parents=True)
    (out / "runs").chmod(0o500)
    try:
        result = sweep(small_grid(), out, data=SweepData(synthetic_data_dir), jobs=1)
    finally:
        (out / "runs").chmod(0o700)
    assert [(r["status"], r["retryable"]) for r in result.records] == [("failed", True)]
    assert [r["status"] for r in sweep(None, out, data=SweepData(synthetic_data_dir), jobs=1, resume=True).records] \
        == ["ok"]


def test_an_output_in_the_way_fails_its_run_retryably_and_resume_finishes_it(synthetic_data_dir, tmp_path):
    grid = small_grid()
    out = tmp_path / "s"
    blocked = out / "runs" / f"{grid.run_ids()[0]}.npz"
    blocked.mkdir(parents=True)                      # a folder where the run's model must go (even root cannot)
    [failed] = sweep(grid, out, data=SweepData(synthetic_data_dir), jobs=1).records
    assert (failed["status"], failed["retryable"]) == ("failed", True) and str(blocked) in failed["error"]
    blocked.rmdir()
    [done] = sweep(None, out, data=SweepData(synthetic_data_dir), jobs=1, resume=True).records
    assert done["status"] == "ok" and blocked.is_file()
