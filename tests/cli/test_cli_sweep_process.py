"""What only a whole `mlknobs sweep` process shows: its pool's workers end with it, kill -9 included.

The sweep runs in a subprocess (the real console entry point, `main`), on the synthetic digits
standing in for MNIST: a small driver registers their spec in that process, and the sweep sends
the spec to its workers with every run, as it always does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DRIVER = """
import json, sys
from mlknobs.data import datasets
from mlknobs.data.datasets import DatasetSpec

spec = json.loads(sys.argv[1])
datasets.DATASETS["mnist"] = DatasetSpec(name="mnist", sha256=spec["sha256"], sizes=spec["sizes"],
                                         class_names=tuple(spec["class_names"]), mirrors=())
sys.argv = ["mlknobs", *sys.argv[2:]]
from mlknobs.cli import main
main()
"""
WORKERS_GONE_WITHIN = 5.0      # seconds after the kill: the workers check their parent twice a second


def children_of(pid: int) -> dict[int, str]:
    """The live (not zombie) processes whose parent is `pid`: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process parents from /proc")
@pytest.mark.parametrize("backend, engine", [("local", "joblib"), ("dask", "distributed")])
def test_kill_9_of_a_sweep_ends_its_workers(synthetic_mnist, tmp_path, backend, engine):
    pytest.importorskip(engine)
    spec = synthetic_mnist.spec
    out = tmp_path / "s"
    args = ["sweep", "--lr", "0.3,0.5", "--hidden-size", "256", "--epochs", "25", "--val-size", "2000",
            "--jobs", "2", "--backend", backend, "--data-dir", synthetic_mnist.data_dir, "--out-dir", out, "--quiet"]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    registered = json.dumps({"sha256": spec.sha256, "sizes": spec.sizes, "class_names": list(spec.class_names)})
    workers = {}
    sweep = subprocess.Popen([sys.executable, "-c", DRIVER, registered, *map(str, args)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((out / "runs").glob("*.ckpt.npz")):
            assert sweep.poll() is None, sweep.stderr.read().decode()
            time.sleep(0.1)
        workers = children_of(sweep.pid)          # the pool's workers (and its helpers: all must end)
        assert len(workers) >= 2, workers         # both runs are training, each in its worker process
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=10)
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < WORKERS_GONE_WITHIN and any(alive(pid) for pid in workers):
            time.sleep(0.05)
        survivors = [pid for pid in workers if alive(pid)]
        gone_after = time.monotonic() - killed_at
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
        for pid in workers:            # this test's own processes, should the check below fail
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not survivors, f"workers {survivors} still run {gone_after:.1f} s after their sweep was killed"
    models = [p for p in (out / "runs").glob("*.npz") if not p.name.endswith(".ckpt.npz")]
    assert not models, "an orphaned worker went on to save its model"
    # Nothing holds the runs' locks any more: a resumed sweep continues both runs from their checkpoints.
    resumed = subprocess.run([sys.executable, "-c", DRIVER, registered, *map(str, args), "--resume", "--json"],
                             env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert [run["status"] for run in json.loads(resumed.stdout)["runs"]] == ["ok", "ok"]
