#!/usr/bin/env python3
"""Benchmark mlknobs' training on this machine against PyTorch CPU, scikit-learn and the GEMM floor.

For each hidden size H and thread count, four contenders train the same 784 -> H sigmoid -> 10
network on MNIST (batch 128, cross-entropy, SGD with momentum 0.9 at a constant rate, float32):

  mlknobs   mlknobs.training.loop.fit itself; its per-epoch "seconds" from the history
  torch     the same MLP written plainly in PyTorch (nn.Linear, optim.SGD), if torch is installed
  sklearn   MLPClassifier(activation="logistic", solver="sgd"), one partial_fit per epoch
  floor     only the step's five matrix products (np.matmul at the same shapes): the time no
            training loop can beat on this machine with this BLAS and thread count

Each runs in a fresh process of its own (clean peak RSS, thread pools sized before loading), and
their epochs are interleaved round-robin (mlknobs, torch, sklearn, floor, then again, rotating who
goes first), so a busy machine slows them all alike and the ratios hold even when absolute times
are noisy. Ratios are medians of the per-round ratios, with the ratios of the best epochs beside
them for runs where load came in bursts longer than a round. Then it times start-up: `mlknobs --help`,
`mlknobs predict` on one image (when that command exists) and loading MNIST from the warm cache.

Prints Markdown tables and writes everything as JSON (--out-json). The peers come with the `bench`
extra (pip install -e '.[bench]'; on Linux install torch's CPU build first, see pyproject.toml); a
missing peer is skipped with a note. Other load on the machine slows every contender, and more so
with more threads: compare the ratios, and rerun when the absolute times matter.

Examples:
  python scripts/bench.py --quick --mirror ../shared/data
  python scripts/bench.py --hidden-sizes 128 --threads 1 --contenders mlknobs,floor
  MLKNOBS_MIRROR=/data/mirror python scripts/bench.py --out-json bench-results/full.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import bench_contenders as contenders
from machine import cpu_name

CONTENDERS = {
    # name: (worker function, package it needs, label in the tables)
    "mlknobs": (contenders.run_mlknobs, "mlknobs", "mlknobs"),
    "torch": (contenders.run_torch, "torch", "PyTorch"),
    "sklearn": (contenders.run_sklearn, "sklearn", "scikit-learn"),
    "floor": (contenders.run_floor, "numpy", "GEMM floor"),
}
DISTRIBUTIONS = {"mlknobs": "mlknobs", "torch": "torch", "sklearn": "scikit-learn", "numpy": "numpy"}

# The goals of issue 5; each is checked only where its configuration was measured.
TARGET_VS_TORCH = 0.75       # mlknobs epoch time <= 0.75 x PyTorch's at H=128
TARGET_VS_SKLEARN = 0.5      # and <= 0.5 x scikit-learn's
TARGET_FLOOR_ONE_THREAD = 0.65   # >= 65 % of the GEMM floor at H=128, one thread
TARGET_FLOOR_ALL_CORES = 0.50    # >= 50 % at H=800, all cores
TARGET_HELP_SECONDS = 0.25
TARGET_PREDICT_SECONDS = 0.5
# A contender whose slowest epoch took this many times its fastest ran beside bursts of other load.
NOISY_SPREAD = 1.5


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="Smoke run: 2 epochs on 10000 samples and 3 start-up repeats unless given "
                             "explicitly.")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="Interleaved epochs per contender (default 5, or 2 with --quick).")
    parser.add_argument("--train-samples", type=_positive_int, default=None,
                        help="Train on the first N MNIST training samples (default all 60000, or 10000 "
                             "with --quick).")
    parser.add_argument("--repeats", type=_positive_int, default=None,
                        help="Runs per start-up timing (default 9, or 3 with --quick).")
    parser.add_argument("--hidden-sizes", type=_int_list, default=[128, 800], metavar="H[,H...]",
                        help="Hidden layer sizes to benchmark (default 128,800).")
    parser.add_argument("--threads", type=_thread_list, default=[1, usable_cores()], metavar="N[,N...]",
                        help="Thread counts for BLAS / OpenMP / torch; 'all' means every usable core, "
                             f"{usable_cores()} here (default 1,all).")
    parser.add_argument("--contenders", type=_contender_list, default=list(CONTENDERS), metavar="NAME[,NAME...]",
                        help=f"Which of {','.join(CONTENDERS)} to run (default all).")
    parser.add_argument("--batch-size", type=_positive_int, default=128, help="Samples per step (default 128).")
    parser.add_argument("--lr", type=float, default=0.1, help="Constant learning rate (default 0.1).")
    parser.add_argument("--momentum", type=float, default=0.9, help="Classical momentum (default 0.9).")
    parser.add_argument("--seed", type=int, default=0, help="Seed for weights and shuffling (default 0).")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MLKNOBS_DATA_DIR") or "data"),
                        help="mlknobs data dir holding (or receiving) mnist/ (default $MLKNOBS_DATA_DIR or ./data).")
    parser.add_argument("--mirror", dest="mirrors", action="append",
                        default=None, metavar="URL_OR_DIR",
                        help="Mirror for the MNIST files, repeatable (default: the list in $MLKNOBS_MIRROR).")
    parser.add_argument("--out-json", type=Path, default=Path("bench-results/bench.json"),
                        help="Where to write all results as JSON (default bench-results/bench.json).")
    parser.add_argument("--skip-startup", action="store_true",
                        help="Skip the start-up and latency timings.")
    args = parser.parse_args(argv)
    if args.mirrors is None:
        args.mirrors = os.environ.get("MLKNOBS_MIRROR", "").split()
    if args.epochs is None:
        args.epochs = 2 if args.quick else 5
    if args.repeats is None:
        args.repeats = 3 if args.quick else 9
    if args.train_samples is None and args.quick:
        args.train_samples = 10_000
    return args


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        return _unique(_positive_int(item) for item in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas: {text!r} ({e})") from e


def _thread_list(text: str) -> list[int]:
    return _int_list(",".join(str(usable_cores()) if item.strip() == "all" else item for item in text.split(",")))


def _contender_list(text: str) -> list[str]:
    names = _unique(item.strip() for item in text.split(","))
    unknown = [name for name in names if name not in CONTENDERS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown contender {', '.join(unknown)} (known: {', '.join(CONTENDERS)})")
    return names


def _unique(items) -> list:
    return list(dict.fromkeys(items))


# --- machine ----------------------------------------------------------------------------------------

def machine_info() -> dict:
    import numpy  # noqa: F401  (loaded so threadpool_info sees its BLAS)
    from threadpoolctl import threadpool_info

    info = {"cpu": cpu_name(), "logical_cores": os.cpu_count(), "usable_cores": usable_cores(),
            "physical_cores": None, "memory_gib": None, "platform": platform.platform(),
            "python": platform.python_version(),
            "versions": {name: _version(dist) for name, dist in DISTRIBUTIONS.items()},
            "numpy_blas": [{key: pool.get(key) for key in ("internal_api", "version", "architecture",
                                                           "threading_layer", "num_threads")}
                           | {"library": Path(pool["filepath"]).name}
                           for pool in threadpool_info() if pool.get("user_api") == "blas"],
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    try:
        import psutil
        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


# --- training: interleaved contenders ---------------------------------------------------------------

class Worker:
    """One contender in its own spawned process, spoken to over a pipe (see bench_contenders)."""

    def __init__(self, name: str, job: dict):
        context = multiprocessing.get_context("spawn")
        self.name = name
        self.conn, child_end = context.Pipe()
        self.process = context.Process(target=CONTENDERS[name][0], args=(child_end, job),
                                       name=f"bench-{name}", daemon=True)
        self.process.start()
        child_end.close()

    def receive(self) -> dict:
        try:
            return self.conn.recv()
        except EOFError:
            self.process.join(5)
            return {"error": f"worker process ended unexpectedly (exit code {self.process.exitcode})"}

    def request(self, command: str) -> dict:
        try:
            self.conn.send(command)
        except (BrokenPipeError, OSError):
            return {"error": "worker process is gone"}
        return self.receive()

    def close(self) -> None:
        self.conn.close()
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()


def run_group(hidden_size: int, threads: int, names: list[str], base_job: dict, epochs: int,
              save_model: Path | None) -> dict:
    """Train every available contender for `epochs` interleaved epochs; return their summaries."""
    job = {**base_job, "hidden_size": hidden_size, "threads": threads, "epochs": epochs}
    results, workers = {}, {}
    for name in names:
        package = CONTENDERS[name][1]
        if importlib.util.find_spec(package) is None:
            results[name] = {"skipped": f"{DISTRIBUTIONS[package]} is not installed "
                                        "(pip install -e '.[bench]')"}
            continue
        extra = {"save_model": str(save_model)} if name == "mlknobs" and save_model else {}
        workers[name] = Worker(name, {**job, **extra})
    for name, worker in list(workers.items()):
        ready = worker.receive()
        if not ready.get("ready"):
            results[name] = {"error": ready.get("error", "did not start")}
            worker.close()
            del workers[name]
        else:
            results[name] = {"base_rss_mb": ready["base_rss_mb"], "info": ready["info"], "epochs": []}

    try:
        for round_index in range(epochs):
            if not workers:
                break
            running = list(workers)
            first = round_index % len(running)      # rotate, so no one always runs right after the same one
            order = running[first:] + running[:first]
            line = []
            for name in order:
                reply = workers[name].request("epoch")
                if "error" in reply:
                    results[name] = {"error": reply["error"]}
                    workers.pop(name).close()
                    line.append(f"{name} failed")
                    continue
                results[name]["epochs"].append(reply)
                line.append(f"{name} {reply['seconds']:.2f} s")
            _note(f"[H={hidden_size} threads={threads}] round {round_index + 1}/{epochs}: " + "  ".join(line))
        for name, worker in workers.items():
            final = worker.request("finish")
            if "error" in final:
                results[name] = {"error": final["error"]}
            else:
                results[name].update(final)
    finally:
        for worker in workers.values():
            worker.close()
    ordered = {name: results[name] for name in names}
    return summarise_group(hidden_size, threads, ordered, base_job)


def summarise_group(hidden_size: int, threads: int, results: dict, job: dict) -> dict:
    """Medians and bests per contender, and the ratios between them two ways.

    The ratios the targets are judged on are medians of per-round ratios (the interleaving's
    point). When other load comes and goes in bursts longer than a round, as it does on shared
    machines and above all with more than one thread, rounds get slowed unevenly; the ratios of
    the best (fastest) epochs are then the steadier guide, since load only ever adds time.
    """
    flops_per_epoch = contenders.flops_per_sample(hidden_size) * job["n_train"]
    for entry in results.values():
        seconds = [epoch["seconds"] for epoch in entry.get("epochs", [])]
        if not seconds:
            continue
        median = statistics.median(seconds)
        entry.update(epoch_seconds=seconds, median_epoch_seconds=median, best_epoch_seconds=min(seconds),
                     samples_per_second=job["n_train"] / median, gflops=flops_per_epoch / median / 1e9,
                     final_train_loss=entry["epochs"][-1]["train_loss"])
        del entry["epochs"]

    pairs = {"mlknobs_over_torch": ("mlknobs", "torch"), "mlknobs_over_sklearn": ("mlknobs", "sklearn"),
             "floor_fraction": ("floor", "mlknobs")}
    spreads = [max(entry["epoch_seconds"]) / min(entry["epoch_seconds"])
               for entry in results.values() if entry.get("epoch_seconds")]
    return {"hidden_size": hidden_size, "threads": threads, "flops_per_epoch": flops_per_epoch,
            "contenders": results,
            "ratios": {key: _paired_median(results, *pair) for key, pair in pairs.items()},
            "best_ratios": {key: _best_ratio(results, *pair) for key, pair in pairs.items()},
            "epoch_time_spread": max(spreads, default=None)}


def _paired_median(results: dict, numerator: str, denominator: str) -> float | None:
    """Median over rounds of numerator's epoch time / denominator's in the same round."""
    a = results.get(numerator, {}).get("epoch_seconds")
    b = results.get(denominator, {}).get("epoch_seconds")
    if not a or not b:
        return None
    return statistics.median(x / y for x, y in zip(a, b))


def _best_ratio(results: dict, numerator: str, denominator: str) -> float | None:
    a = results.get(numerator, {}).get("best_epoch_seconds")
    b = results.get(denominator, {}).get("best_epoch_seconds")
    return a / b if a and b else None


# --- start-up and latency ---------------------------------------------------------------------------

def mlknobs_command() -> list[str]:
    """The installed console script beside this interpreter, else on PATH, else `python -m mlknobs`."""
    beside = Path(sys.executable).with_name("mlknobs.exe" if os.name == "nt" else "mlknobs")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("mlknobs")
    return [found] if found else [sys.executable, "-m", "mlknobs"]


def wall_seconds(command: list[str], repeats: int) -> dict:
    """Median wall time of `command` over `repeats` runs, after one untimed warm-up run."""
    times = []
    for attempt in range(repeats + 1):
        started = time.perf_counter()
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            return {"error": f"exit code {done.returncode}: {last}"}
        if attempt:
            times.append(elapsed)
    return {"median_seconds": statistics.median(times), "seconds": times}


def time_startup(repeats: int, model_path: Path | None, image: Path | None, train_loader) -> dict:
    mlknobs = mlknobs_command()
    timings = {
        "python -c pass": wall_seconds([sys.executable, "-c", "pass"], repeats),
        "python -c 'import numpy'": wall_seconds([sys.executable, "-c", "import numpy"], repeats),
        "mlknobs --help": wall_seconds(mlknobs + ["--help"], repeats),
    }
    has_predict = subprocess.run(mlknobs + ["predict", "--help"], stdin=subprocess.DEVNULL,
                                 capture_output=True).returncode == 0
    if not has_predict:
        timings["mlknobs predict (one image)"] = {"error": "n/a: this mlknobs has no predict command"}
    elif model_path is None or not model_path.exists() or image is None:
        timings["mlknobs predict (one image)"] = {"error": "n/a: no model was trained in this run "
                                                           "(include the mlknobs contender)"}
    else:
        timings["mlknobs predict (one image)"] = wall_seconds(
            mlknobs + ["predict", str(image), "--model", str(model_path)], repeats)

    times = []
    for attempt in range(repeats + 1):
        started = time.perf_counter()
        train_loader()
        if attempt:
            times.append(time.perf_counter() - started)
    timings["load MNIST train+test (warm cache, in process)"] = {"median_seconds": statistics.median(times),
                                                                "seconds": times}
    return timings


# --- report -----------------------------------------------------------------------------------------

def check_targets(groups: list[dict], startup: dict | None, all_cores: int) -> list[dict]:
    targets = []

    def add(name: str, goal: str, measured, met, shown: str, best=None, best_shown: str = "") -> None:
        targets.append({"target": name, "goal": goal, "measured": measured, "met": met, "shown": shown,
                        "from_best_epochs": best, "best_shown": best_shown})

    for group in groups:
        h, t, ratios, best = group["hidden_size"], group["threads"], group["ratios"], group["best_ratios"]
        where = f"H={h}, {t} thread{'s' if t > 1 else ''}"
        if h == 128:
            for key, peer, goal in (("mlknobs_over_torch", "PyTorch", TARGET_VS_TORCH),
                                    ("mlknobs_over_sklearn", "scikit-learn", TARGET_VS_SKLEARN)):
                add(f"mlknobs ÷ {peer} epoch time, {where}", f"≤ {goal}", ratios[key],
                    None if ratios[key] is None else ratios[key] <= goal, _shown(ratios[key], "{:.2f}"),
                    best[key], _shown(best[key], "{:.2f}"))
        if (h, t) == (128, 1) or (h == 800 and t == all_cores):
            goal = TARGET_FLOOR_ONE_THREAD if (h, t) == (128, 1) else TARGET_FLOOR_ALL_CORES
            fraction = ratios["floor_fraction"]
            add(f"GEMM floor ÷ mlknobs epoch time, {where}", f"≥ {goal:.0%}", fraction,
                None if fraction is None else fraction >= goal, _shown(fraction, "{:.0%}"),
                best["floor_fraction"], _shown(best["floor_fraction"], "{:.0%}"))
    if startup:
        for key, name, goal in (("mlknobs --help", "`mlknobs --help` wall time", TARGET_HELP_SECONDS),
                                ("mlknobs predict (one image)", "`mlknobs predict` one image, wall time",
                                 TARGET_PREDICT_SECONDS)):
            value = startup[key].get("median_seconds")
            add(name, f"< {goal} s", value, None if value is None else value < goal,
                startup[key].get("error", "n/a") if value is None else f"{value:.3f} s")
    return targets


def _shown(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def markdown(report: dict) -> str:
    machine, settings = report["machine"], report["settings"]
    versions = machine["versions"]
    blas = ", ".join(f"{pool['internal_api']} {pool['version']} ({pool['architecture']})"
                     for pool in machine["numpy_blas"]) or "unknown BLAS"
    lines = [f"### mlknobs benchmark: {machine['cpu']}, {machine['usable_cores']} usable cores",
             "",
             f"numpy {versions['numpy']} with {blas}; torch {versions['torch'] or 'not installed'}; "
             f"scikit-learn {versions['sklearn'] or 'not installed'}; mlknobs {versions['mlknobs']}; "
             f"Python {machine['python']}.  ",
             f"MNIST {settings['n_train']} train / {settings['n_test']} test, 784 -> H sigmoid -> 10, "
             f"batch {settings['batch_size']}, cross-entropy, SGD lr {settings['learning_rate']} constant, "
             f"momentum {settings['momentum']}, float32; {settings['epochs']} epoch(s) per contender "
             "interleaved round-robin. Epoch: median (best); samples/s and GFLOP/s from the median; "
             "ratios: median of per-round ratios (ratio of best epochs).",
             "",
             "| H | threads | contender | epoch s | samples/s | GFLOP/s | test acc | peak RSS MiB (base) "
             "| mlknobs time ÷ this |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    noisy = []
    for group in report["training"]:
        ratios, best = group["ratios"], group["best_ratios"]
        for name, entry in group["contenders"].items():
            head = f"| {group['hidden_size']} | {group['threads']} | {CONTENDERS[name][2]} |"
            if "median_epoch_seconds" not in entry:
                lines.append(f"{head} {entry.get('skipped') or 'failed: ' + entry.get('error', '?')} | | | | | |")
                continue
            accuracy = "—" if entry.get("test_accuracy") is None else f"{entry['test_accuracy']:.2%}"
            memory = "—" if name == "floor" else f"{entry['peak_rss_mb']:.0f} ({entry['base_rss_mb']:.0f})"
            key = {"torch": "mlknobs_over_torch", "sklearn": "mlknobs_over_sklearn"}.get(name)
            if key and ratios[key] is not None:
                versus = f"{ratios[key]:.2f} ({best[key]:.2f})"
            elif name == "floor" and ratios["floor_fraction"]:
                versus = (f"{1 / ratios['floor_fraction']:.2f} ({1 / best['floor_fraction']:.2f}): mlknobs at "
                          f"{ratios['floor_fraction']:.0%} ({best['floor_fraction']:.0%}) of floor")
            else:
                versus = "—"
            lines.append(f"{head} {entry['median_epoch_seconds']:.3f} ({entry['best_epoch_seconds']:.3f}) "
                         f"| {entry['samples_per_second']:,.0f} | {entry['gflops']:.1f} | {accuracy} | {memory} "
                         f"| {versus} |")
        if group["epoch_time_spread"] and group["epoch_time_spread"] > NOISY_SPREAD:
            noisy.append(f"H={group['hidden_size']} with {group['threads']} thread(s) "
                         f"{group['epoch_time_spread']:.1f}x")
    lines += ["",
              "GFLOP/s counts only the step's matrix products (4·784·H + 6·10·H per sample), so it is comparable "
              "across contenders. Peak RSS: each contender runs in a fresh process of its own, so the figure is "
              "its imports, data and training alone; base is the peak after imports and data, before the first "
              "epoch (scikit-learn needs a float32 copy of the training set)."]
    if noisy:
        lines += ["", "**Noisy** (a contender's slowest epoch ÷ its fastest): " + ", ".join(noisy)
                  + ". Other load came and went during these rounds; there the best-epoch figures in "
                    "parentheses are the steadier guide (rerun to confirm)."]

    if report.get("floor_products"):
        lines += ["", "GEMM floor, each product alone at the full batch (best of 5):", "",
                  "| H | threads | product | µs | GFLOP/s |", "|---:|---:|---|---:|---:|"]
        for (h, t), products in report["floor_products"]:
            for product, timing in products.items():
                lines.append(f"| {h} | {t} | {product} | {timing['microseconds']:.1f} | {timing['gflops']:.1f} |")

    if report.get("startup"):
        lines += ["", "| start-up / latency | median wall (s) | runs |", "|---|---:|---:|"]
        for what, timing in report["startup"].items():
            if "median_seconds" in timing:
                lines.append(f"| {what} | {timing['median_seconds']:.3f} | {len(timing['seconds'])} |")
            else:
                lines.append(f"| {what} | {timing['error']} | 0 |")

    if report["targets"]:
        lines += ["", "| target | goal | measured | from best epochs | met |", "|---|---:|---:|---:|:---:|"]
        for target in report["targets"]:
            met = {True: "yes", False: "**no**", None: "n/a"}[target["met"]]
            lines.append(f"| {target['target']} | {target['goal']} | {target['shown']} "
                         f"| {target['best_shown'] or '—'} | {met} |")
    return "\n".join(lines)


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- main -------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    args = parse_args(argv)
    # This process only loads data and orchestrates; the contenders pin their own thread counts.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"

    from mlknobs.data.splits import Split, load_split
    from mlknobs.errors import MlknobsError
    from mlknobs.nn.model import InputScaling

    def load_mnist():
        return (load_split("mnist", "train", args.data_dir, args.mirrors, progress=False),
                load_split("mnist", "test", args.data_dir, args.mirrors, progress=False))

    try:
        train, test = load_mnist()   # fetches through the mirror on first use; the workers then load warm
    except (MlknobsError, ValueError) as e:
        print(f"Error: cannot load MNIST: {e}", file=sys.stderr)
        return 1
    train = Split(train.images[:args.train_samples], train.labels[:args.train_samples])
    scaling = InputScaling.fit(train.images)
    base_job = {"batch_size": args.batch_size, "learning_rate": args.lr, "momentum": args.momentum,
                "seed": args.seed, "data_dir": str(args.data_dir), "mirrors": list(args.mirrors),
                "pixel_mean": scaling.mean, "pixel_std": scaling.std, "n_train": len(train)}
    report = {"machine": machine_info(),
              "settings": {**{k: v for k, v in base_job.items() if k not in ("pixel_mean", "pixel_std")},
                           "n_test": len(test), "epochs": args.epochs, "hidden_sizes": args.hidden_sizes,
                           "threads": args.threads, "contenders": args.contenders, "quick": args.quick,
                           "dtype": "float32", "schedule": "constant", "loss": "cross-entropy",
                           "repeats": args.repeats},
              "training": [], "floor_products": [], "startup": None, "targets": []}

    with tempfile.TemporaryDirectory(prefix="mlknobs-bench-") as scratch:
        model_path, image_path = Path(scratch) / "model.npz", Path(scratch) / "digit.png"
        for hidden_size in args.hidden_sizes:
            for threads in args.threads:
                wants_model = not args.skip_startup and not model_path.exists() and not report["training"]
                group = run_group(hidden_size, threads, args.contenders, base_job, args.epochs,
                                  model_path if wants_model else None)
                report["training"].append(group)
                products = group["contenders"].get("floor", {}).pop("products", None)
                if products:
                    report["floor_products"].append(((hidden_size, threads), products))
        if not args.skip_startup:
            from PIL import Image

            Image.fromarray(test.images[0].reshape(28, 28)).save(image_path)
            report["startup"] = time_startup(args.repeats, model_path if model_path.exists() else None,
                                             image_path, load_mnist)

    report["targets"] = check_targets(report["training"], report["startup"], usable_cores())
    print(markdown(report))
    write_json(args.out_json, report)
    _note(f"wrote {args.out_json}")
    return 0


def write_json(path: Path, report: dict) -> None:
    from mlknobs.files import atomic_write

    serialisable = {**report, "floor_products": [{"hidden_size": h, "threads": t, "products": products}
                                                 for (h, t), products in report["floor_products"]]}
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(serialisable, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


if __name__ == "__main__":
    sys.exit(main())
