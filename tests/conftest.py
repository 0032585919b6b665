"""Fixtures shared by the whole suite: tiny generated IDX data, a synthetic stand-in for MNIST and a
small model trained on it, the real MNIST mirror and a small model trained on that.

Tests of behaviour (training, resume, predict, eval, plots) use the synthetic digits, so they run
on any machine; tests marked `real_data` check figures that only real MNIST can give, and skip
without ../shared/data (or MLKNOBS_SHARED_DATA).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# One BLAS thread everywhere: on shared 2-core machines two threads can be 30-90x slower.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from clirun import run  # noqa: E402
from mlknobs.data import datasets, idx  # noqa: E402
from mlknobs.data.datasets import DatasetSpec  # noqa: E402
from mlknobs.data.splits import Split, load_split  # noqa: E402
from mlknobs.data.synthetic import write_mirror  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MLKNOBS_SHARED_DATA", REPO.parent / "shared" / "data"))
# Enough for `train --val-size 5000` to keep 5000 to train on; one epoch of H=32 reaches 94.4 %.
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 10_000, 2_000


def _clear_mlknobs_settings(monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith("MLKNOBS_") and name != "MLKNOBS_SHARED_DATA":
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    """No test may pick up a developer's MLKNOBS_* settings, except where it sets them itself."""
    _clear_mlknobs_settings(monkeypatch)


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


# --- the synthetic stand-in for MNIST -------------------------------------------------------------

@dataclass(frozen=True)
class SyntheticMnist:
    """This session's synthetic digits (mlknobs.data.synthetic), standing in for MNIST."""

    spec: DatasetSpec    # "mnist" with the synthetic files' own sums and sizes, and no mirrors
    mirror: Path         # a local mirror: mirror/mnist/<the official file names>
    data_dir: Path       # the data dir they were loaded into; use it through `synthetic_data_dir`
    train: Split
    test: Split


@contextmanager
def registered_as_mnist(spec: DatasetSpec):
    """`spec` stands in for MNIST (and no developer's MLKNOBS_* setting applies) inside the block."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(datasets.DATASETS, "mnist", spec)
        _clear_mlknobs_settings(patch)
        yield


@pytest.fixture(scope="session")
def synthetic_mnist(tmp_path_factory) -> SyntheticMnist:
    """10,000 training and 2,000 test digits, written as a mirror and loaded through the real
    download path (copy, checksum, parse, cache) once per session."""
    root = tmp_path_factory.mktemp("synthetic")
    mirror, data_dir = root / "mirror", root / "data"
    sums = write_mirror(mirror, SYNTHETIC_TRAIN, SYNTHETIC_TEST, seed=0)
    spec = DatasetSpec(name="mnist", sha256=sums,
                       sizes={name: (mirror / "mnist" / name).stat().st_size for name in sums},
                       class_names=tuple(str(d) for d in range(10)), mirrors=())
    with registered_as_mnist(spec):
        train, test = (load_split("mnist", split, data_dir, mirrors=[str(mirror)], progress=False)
                       for split in ("train", "test"))
    return SyntheticMnist(spec, mirror, data_dir, train, test)


@pytest.fixture
def synthetic_data_dir(synthetic_mnist, monkeypatch) -> Path:
    """A data dir holding the synthetic digits as "mnist", registered as MNIST for this test.

    Anything that loads "mnist" from it (the CLI's train, eval, plot) gets the synthetic digits,
    checked against their own sums. Never write into it: other tests share it.
    """
    monkeypatch.setitem(datasets.DATASETS, "mnist", synthetic_mnist.spec)
    return synthetic_mnist.data_dir


@pytest.fixture(scope="session")
def synthetic_splits(synthetic_mnist) -> tuple[Split, Split]:
    """The synthetic (train, test) splits: 10,000 and 2,000 digits."""
    return synthetic_mnist.train, synthetic_mnist.test


@pytest.fixture(scope="session")
def synthetic_model_path(synthetic_mnist, tmp_path_factory) -> Path:
    """A small model (H=32, 1 epoch) trained on the synthetic digits through the real CLI; 94.4 % test
    accuracy, so it reads most digits and still gets some wrong."""
    out = tmp_path_factory.mktemp("synthetic-model") / "small.npz"
    with registered_as_mnist(synthetic_mnist.spec):
        result = run("train", "--epochs", "1", "--hidden-size", "32", "--lr", "0.5",
                     "--data-dir", synthetic_mnist.data_dir, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


# --- real MNIST --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real MNIST / Fashion-MNIST mirror folder (../shared/data); tests skip without it."""
    if not (SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mnist_data_dir(shared_data, tmp_path_factory) -> Path:
    """A data dir holding real MNIST, fetched once per session through the local-folder mirror."""
    data_dir = tmp_path_factory.mktemp("data")
    for split in ("train", "test"):
        load_split("mnist", split, data_dir, mirrors=[str(shared_data)], progress=False)
    return data_dir


@pytest.fixture(scope="session")
def small_model_path(mnist_data_dir, tmp_path_factory) -> Path:
    """A small model (H=32, 1 epoch) trained on real MNIST through the real CLI; ~93 % test accuracy."""
    out = tmp_path_factory.mktemp("model") / "small.npz"
    result = run("train", "--epochs", "1", "--hidden-size", "32", "--lr", "0.5",
                 "--data-dir", mnist_data_dir, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def http_server():
    """A loopback HTTP server (tests/httpserver.py) on 127.0.0.1, shut down when the test ends."""
    from httpserver import LoopbackServer

    with LoopbackServer() as server:
        yield server


@pytest.fixture
def no_hang():
    """Fail (instead of hanging the suite) if the test blocks for more than 20 s: for reads that must
    be bounded (FIFOs, devices, endless streams)."""
    import signal

    def alarm(signum, frame):
        raise TimeoutError("blocked: the call did not return within 20 s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# --- the serve tests' browser -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    """One headless Chromium (Debian's, driven by Playwright) for a module's browser tests; skipped
    without Playwright or /usr/bin/chromium. Per module, not per session: Playwright's sync API keeps
    an event loop marked running in the main thread while it lives, which would break any later
    test that starts its own loop (Starlette's TestClient) if the browser outlived its module."""
    from serving import CHROMIUM, CHROMIUM_ARGS

    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser extra (playwright) is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
