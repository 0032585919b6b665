"""How much faster does `mlknobs sweep` run with more jobs, and does Dask cost anything over joblib?

Runs the same small grid (by default 8 runs: --lr 0.1,0.2,0.5,1 x --seed 0,1, H=256, 2 epochs, on
real MNIST) as whole `mlknobs sweep` processes, so every figure includes what a user waits for:
interpreter start, the worker pool or LocalCluster, data loading in each worker, training, saving.
The configurations are interleaved (local --jobs 1, local --jobs 2, dask --jobs 2, then again), so
a change in the machine's load hits them all alike; the median of the repeats is reported.

Targets (on an otherwise idle 2-core machine): local --jobs 2 at least 1.7x faster than --jobs 1;
dask (a LocalCluster) within 15 % of local --jobs 2. Every configuration must also give the same
validation and test accuracies, run for run (training is deterministic given seed and threads).

    python scripts/bench_sweep.py --mirror ../shared/data
    python scripts/bench_sweep.py --mirror ../shared/data --quick          # a check that it works: ~1 min
    python scripts/bench_sweep.py --mirror ../shared/data --repeats 5 --out-json sweep-bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # shared machines: one BLAS thread per run

CONFIGURATIONS = {   # name: extra `mlknobs sweep` options
    "local-1": ["--backend", "local", "--jobs", "1"],
    "local-2": ["--backend", "local", "--jobs", "2"],
    "dask-2": ["--backend", "dask", "--jobs", "2"],
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", default=None, help="Local mirror folder holding mnist/*.gz (e.g. ../shared/data).")
    parser.add_argument("--data-dir", default=None, help="Data cache folder (default: a temporary one).")
    parser.add_argument("--lr", default="0.1,0.2,0.5,1", help="Learning rates of the grid.")
    parser.add_argument("--seeds", default="0,1", help="Seeds of the grid.")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="Rounds of every configuration, interleaved.")
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS),
                        help=f"Which to time, of {', '.join(CONFIGURATIONS)}.")
    parser.add_argument("--quick", action="store_true", help="4 runs of H=32, 1 epoch, one round: checks the script.")
    parser.add_argument("--out-json", default=None, help="Also write the figures here.")
    args = parser.parse_args(argv)
    unknown = [c for c in args.configurations.split(",") if c not in CONFIGURATIONS]
    if unknown:
        parser.error(f"unknown configuration {', '.join(unknown)} (known: {', '.join(CONFIGURATIONS)})")
    if args.quick:
        args.lr, args.seeds, args.hidden_size, args.epochs, args.repeats = "0.2,0.5", "0,1", 32, 1, 1
    return args


def mlknobs() -> list[str]:
    return [sys.executable, "-m", "mlknobs"]


def time_sweep(args, configuration: str, data_dir: str, out_dir: Path) -> tuple[float, dict]:
    """Seconds of one whole `mlknobs sweep` process, and each run's (status, val and test accuracy)."""
    command = [*mlknobs(), "sweep", "--lr", args.lr, "--seed", args.seeds, "--hidden-size", str(args.hidden_size),
               "--epochs", str(args.epochs), "--data-dir", data_dir, "--out-dir", str(out_dir), "--quiet", "--json",
               *CONFIGURATIONS[configuration]]
    if args.mirror:
        command += ["--mirror", args.mirror]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{configuration} failed (exit {done.returncode}):\n{done.stderr}")
    report = json.loads(done.stdout)
    return seconds, {r["run"]: (r["status"], r["val_accuracy"], r["test_accuracy"]) for r in report["runs"]}


def main(argv=None) -> None:
    args = parse_args(argv)
    configurations = args.configurations.split(",")
    runs = len(args.lr.split(",")) * len(args.seeds.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        data_dir = args.data_dir or str(Path(scratch) / "data")
        # Download (or copy from the mirror) and cache the data once, outside the timings.
        warm = [*mlknobs(), "download", "--data-dir", data_dir, *(["--mirror", args.mirror] if args.mirror else [])]
        subprocess.run(warm, check=True, capture_output=True, timeout=600)
        load = os.getloadavg()[0]
        print(f"{runs} runs (lr {args.lr} x seed {args.seeds}, H={args.hidden_size}, {args.epochs} epoch(s)); "
              f"{os.cpu_count()} cores; load average {load:.2f} before the first round", flush=True)
        times = {c: [] for c in configurations}
        outcomes = {}
        for round_ in range(args.repeats):
            for configuration in configurations:
                out_dir = Path(scratch) / f"{configuration}-{round_}"
                seconds, outcome = time_sweep(args, configuration, data_dir, out_dir)
                times[configuration].append(seconds)
                outcomes.setdefault(configuration, outcome)
                print(f"round {round_ + 1}: {configuration:<8} {seconds:7.2f} s", flush=True)
    median = {c: statistics.median(t) for c, t in times.items()}
    print("\nmedian seconds: " + ", ".join(f"{c} {m:.2f}" for c, m in median.items()))
    figures = {"runs": runs, "hidden_size": args.hidden_size, "epochs": args.epochs, "seconds": times,
               "median_seconds": median, "load_average_before": load}
    if "local-1" in median and "local-2" in median:
        figures["speedup_jobs_2"] = median["local-1"] / median["local-2"]
        print(f"local --jobs 2 vs --jobs 1: {figures['speedup_jobs_2']:.2f}x faster (target >= 1.7x)")
    if "dask-2" in median and "local-2" in median:
        figures["dask_over_local"] = median["dask-2"] / median["local-2"] - 1
        print(f"dask --jobs 2 vs local --jobs 2: {figures['dask_over_local'] * 100:+.1f} % (target within 15 %)")
    reference = next(iter(outcomes.values()))
    figures["identical_results"] = all(o == reference for o in outcomes.values())
    print("identical validation and test accuracies on every configuration: "
          f"{'yes' if figures['identical_results'] else 'NO'}")
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
