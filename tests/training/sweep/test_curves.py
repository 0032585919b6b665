"""A sweep's results.jsonl keeps each run's curve as `step_losses`: a failed run's up to the blow-up,
an ok run's when --log-every is given."""

import json

from clirun import run
from mlknobs.training.sweep.worker import MAX_CURVE_PAIRS, curve_for_line


def test_a_diverged_sweep_run_keeps_its_curve_and_ok_runs_keep_theirs_with_log_every(synthetic_data_dir, tmp_path):
    out = tmp_path / "s"
    result = run("sweep", "--hidden-size", "8", "--epochs", "1", "--val-size", "500", "--train-size", "2000",
                 "--lr", "0.5,1000", "--log-every", "3", "--jobs", "1", "--data-dir", synthetic_data_dir,
                 "--out-dir", out, "--quiet", "--json")
    assert result.exit_code == 0, result.output
    lines = {line["settings"]["learning_rate"]: line
             for line in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    failed, ok = lines[1000.0], lines[0.5]
    assert failed["status"] == "failed" and ok["status"] == "ok"
    for line in (failed, ok):
        steps = [step for step, _ in line["step_losses"]]
        assert steps and steps == sorted(steps)
    assert [step for step, _ in ok["step_losses"]] == [3, 6, 9, 12]        # 1,500 digits: 12 batches of 128


def test_a_long_curve_is_thinned_for_the_line_keeping_its_last_pair():
    pairs = [[step, 1.0 / step] for step in range(1, 5001)] + [[5001, None]]
    thinned = curve_for_line(pairs)
    assert len(thinned) == MAX_CURVE_PAIRS and thinned[0][0] == 1 and thinned[-1] == [5001, None]
    assert curve_for_line([]) is None
