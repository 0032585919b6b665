"""Fixtures shared by the whole suite: tiny generated IDX data, the real MNIST mirror, a small model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# One BLAS thread everywhere: on shared 2-core machines two threads can be 30-90x slower.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from mlknobs.data import idx  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MLKNOBS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    """No test may pick up a developer's MLKNOBS_* settings, except where it sets them itself."""
    for name in list(os.environ):
        if name.startswith("MLKNOBS_") and name != "MLKNOBS_SHARED_DATA":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real MNIST / Fashion-MNIST mirror folder (../shared/data); tests skip without it."""
    if not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


def make_idx_dataset(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict[str, bytes]:
    """Write the four IDX .gz files of a tiny random dataset into `folder`; return name -> bytes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    contents = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            path = folder / f"{prefix}-{kind}-ubyte.gz"
            idx.write_idx(path, array)
            contents[path.name] = path.read_bytes()
    return contents


@pytest.fixture(scope="session")
def mnist_data_dir(shared_data, tmp_path_factory) -> Path:
    """A data dir holding real MNIST, fetched once per session through the local-folder mirror."""
    from mlknobs.data.splits import load_split

    data_dir = tmp_path_factory.mktemp("data")
    for split in ("train", "test"):
        load_split("mnist", split, data_dir, mirrors=[str(shared_data)], progress=False)
    return data_dir


@pytest.fixture(scope="session")
def small_model_path(mnist_data_dir, tmp_path_factory) -> Path:
    """A small model (H=32, 1 epoch) trained on real MNIST through the real CLI; ~93 % test accuracy."""
    from click.testing import CliRunner

    from mlknobs.cli import cli

    out = tmp_path_factory.mktemp("model") / "small.npz"
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--hidden-size", "32", "--lr", "0.5",
                                      "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def http_server():
    """A loopback HTTP server (tests/httpserver.py) on 127.0.0.1, shut down when the test ends."""
    from httpserver import LoopbackServer

    with LoopbackServer() as server:
        yield server
