"""The contenders of scripts/bench.py, each run in a fresh process of its own.

Every contender is one function `run_<name>(conn, job)` that the benchmark starts in a spawned
process. Running each in its own process keeps its peak RSS its own (the kernel's ru_maxrss of that
process holds only its imports, its data and its training) and lets its BLAS / OpenMP thread pool
be sized before the library that owns it is loaded.

The protocol over the pipe `conn` is the same for all of them:

    child  -> {"ready": True, "base_rss_mb": ..., "info": {...}}     after imports, data and model
    parent -> "epoch"       child -> {"seconds": ..., "train_loss": ..., "train_accuracy": ...}
    ...                     (exactly job["epochs"] times; the parent interleaves the contenders)
    parent -> "finish"      child -> {"test_accuracy": ..., "peak_rss_mb": ..., ...}

Any failure is sent back as {"error": "..."} and ends the process.

`job` is a plain dict (so nothing from NumPy is unpickled before the thread count is set):
hidden_size, batch_size, learning_rate, momentum, epochs, seed, threads, data_dir, mirrors,
pixel_mean and pixel_std (of pixel/255 over the training samples used, shared by all contenders so
they see identical inputs), n_train (how many training samples to use), and for mlknobs optionally
save_model (a path for the predict timing).
"""

from __future__ import annotations

import os
import sys
import time
import traceback

INPUT_SIZE = 28 * 28
OUTPUT_SIZE = 10


def flops_per_sample(hidden_size: int) -> int:
    """Multiply-adds x2 of one training step per sample, without an input gradient.

    forward 784->H and H->10, backward dW2 (H x 10), dA1 (10 -> H) and dW1 (784 x H):
    2*784*H + 2*H*10 + 2*H*10 + 2*10*H + 2*784*H = 4*784*H + 6*10*H.
    """
    return 4 * INPUT_SIZE * hidden_size + 6 * OUTPUT_SIZE * hidden_size


def pin_threads(count: int) -> None:
    """Size every thread pool before NumPy, OpenBLAS, MKL or OpenMP is loaded in this process.

    OpenBLAS reads its variable once, at load time, as the most threads it will ever use; so this
    must run first thing in the child. threadpoolctl then pins the pools again after loading.
    """
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                 "NUMEXPR_NUM_THREADS"):
        os.environ[name] = str(count)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    On Linux this is VmHWM, the high-water mark of this process image's own memory. Not ru_maxrss:
    Linux carries that across fork and exec, so a spawned child would report its parent's peak
    whenever the parent's was larger.
    """
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10        # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:      # Windows: psutil knows the peak working set
        import psutil
        return psutil.Process().memory_info().peak_wset / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10   # bytes on macOS, KiB elsewhere


def _expect(conn, command: str) -> None:
    received = conn.recv()
    if received != command:
        raise RuntimeError(f"expected {command!r} from the benchmark, got {received!r}")


def _serve(conn, job: dict, setup) -> None:
    """Run a parent-driven contender: setup() -> (info, run_epoch, finish), then answer commands."""
    try:
        pin_threads(job["threads"])
        info, run_epoch, finish = setup(job)
        conn.send({"ready": True, "base_rss_mb": peak_rss_mb(), "info": info})
        for _ in range(job["epochs"]):
            _expect(conn, "epoch")
            conn.send(run_epoch())
        _expect(conn, "finish")
        conn.send({**finish(), "peak_rss_mb": peak_rss_mb()})
    except BaseException as e:   # the parent must hear about it, whatever it was
        _report_failure(conn, e)
    finally:
        conn.close()


def _report_failure(conn, e: BaseException) -> None:
    try:
        conn.send({"error": _describe(e)})
    except OSError:
        pass   # the parent is gone (closed the pipe or was interrupted): nobody left to tell


def _describe(e: BaseException) -> str:
    where = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    place = f" (at {os.path.basename(where[0].filename)}:{where[0].lineno})" if where else ""
    return f"{type(e).__name__}: {e}{place}"


def _load_mnist(job: dict):
    """MNIST's test split and the first job["n_train"] training samples (all of them but in --quick)."""
    from mlknobs.data.splits import Split, load_split

    train = load_split("mnist", "train", job["data_dir"], job["mirrors"], progress=False)
    test = load_split("mnist", "test", job["data_dir"], job["mirrors"], progress=False)
    n = job["n_train"]
    return Split(train.images[:n], train.labels[:n]), test


# --- mlknobs: the real product, mlknobs.training.loop.fit --------------------------------------------------

def run_mlknobs(conn, job: dict) -> None:
    """mlknobs.training.loop.fit itself; epoch times are fit's own per-epoch 'seconds' from its history.

    fit drives its own epoch loop, so the interleaving happens in its callback's epoch events: after each
    epoch it reports and waits for the parent's next "epoch". The wait lies outside the timed span.
    """
    try:
        pin_threads(job["threads"])
        from mlknobs.config import TrainConfig
        from mlknobs.data.datasets import get_dataset
        from mlknobs.io.modelfile import save_model
        from mlknobs.training.loop import fit

        train, test = _load_mnist(job)
        config = TrainConfig(epochs=job["epochs"], hidden_size=job["hidden_size"],
                             batch_size=job["batch_size"], learning_rate=job["learning_rate"],
                             momentum=job["momentum"], nesterov=False, weight_decay=0.0,
                             schedule="constant", loss="cross-entropy", val_size=0, seed=job["seed"],
                             threads=job["threads"])
        conn.send({"ready": True, "base_rss_mb": peak_rss_mb(), "info": {"dtype": "float32"}})

        def on_epoch(progress) -> None:
            if progress.event != "epoch":
                return
            entry = progress.entry
            conn.send({"seconds": entry["seconds"], "train_loss": entry["train_loss"],
                       "train_accuracy": entry["train_accuracy"]})
            if entry["epoch"] < config.epochs:
                _expect(conn, "epoch")

        _expect(conn, "epoch")
        model = fit(config, train, test, get_dataset("mnist").class_names, callback=on_epoch)
        _expect(conn, "finish")
        if job.get("save_model"):
            save_model(job["save_model"], model)
        conn.send({"test_accuracy": model.results["test_accuracy"], "peak_rss_mb": peak_rss_mb()})
    except BaseException as e:
        _report_failure(conn, e)
    finally:
        conn.close()


# --- PyTorch CPU: the same MLP written plainly ----------------------------------------------------

def torch_mlp(job: dict):
    """The PyTorch peer's network and optimizer, as mlknobs has them: 784 -> H sigmoid -> 10, Glorot
    weights, zero biases, SGD with momentum (job: hidden_size, learning_rate, momentum)."""
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(INPUT_SIZE, job["hidden_size"]), nn.Sigmoid(),
                          nn.Linear(job["hidden_size"], OUTPUT_SIZE))
    for layer in (model[0], model[2]):
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    return model, torch.optim.SGD(model.parameters(), lr=job["learning_rate"], momentum=job["momentum"])


def run_torch(conn, job: dict) -> None:
    _serve(conn, job, _setup_torch)


def _setup_torch(job: dict):
    """nn.Linear + sigmoid + CrossEntropyLoss + optim.SGD, float32, a uint8 dataset standardised per batch.

    Batches are drawn by indexing with a fresh torch.randperm each epoch rather than through a
    DataLoader, whose per-sample __getitem__ and collate would make PyTorch look slower than a
    careful user's loop. Weights start Glorot-uniform with zero biases, as mlknobs' do, so the test
    accuracies compare like with like.
    """
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(job["threads"])
    torch.manual_seed(job["seed"])
    train, test = _load_mnist(job)
    images = torch.from_numpy(train.images)                       # uint8 (N, 784)
    labels = torch.from_numpy(train.labels.astype(np.int64))      # (N,)
    mean, std = job["pixel_mean"], job["pixel_std"]
    batch_size, n = job["batch_size"], len(images)

    model, optimizer = torch_mlp(job)
    loss_fn = nn.CrossEntropyLoss()

    def run_epoch() -> dict:
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            x = (images[rows].float() / 255 - mean) / std         # (B, 784) float32
            y = labels[rows]
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "train_loss": loss_sum / n, "train_accuracy": correct / n}

    def finish() -> dict:
        model.eval()
        with torch.no_grad():
            x = (torch.from_numpy(test.images).float() / 255 - mean) / std
            predicted = model(x).argmax(1).numpy()
        return {"test_accuracy": float(np.mean(predicted == test.labels))}

    info = {"torch_threads": torch.get_num_threads(), "mkl": torch.backends.mkl.is_available(),
            "mkldnn": torch.backends.mkldnn.is_available()}
    return info, run_epoch, finish


# --- scikit-learn: MLPClassifier, one partial_fit per epoch ---------------------------------------

def run_sklearn(conn, job: dict) -> None:
    _serve(conn, job, _setup_sklearn)


def _setup_sklearn(job: dict):
    """MLPClassifier with logistic hidden units and plain-momentum SGD at a constant rate, alpha=0.

    MLPClassifier takes only float input, so the standardised float32 training set (188 MB for
    MNIST) is made once up front; that copy counts in its RSS, as it would for any user. Each
    partial_fit is one shuffled pass over the data.
    """
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=job["threads"], user_api="blas")
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    train, test = _load_mnist(job)

    def standardised(pixels: np.ndarray) -> np.ndarray:
        x = pixels.astype(np.float32)
        x /= 255
        x -= job["pixel_mean"]
        x /= job["pixel_std"]
        return x

    x_train, y_train = standardised(train.images), train.labels
    classifier = MLPClassifier(hidden_layer_sizes=(job["hidden_size"],), activation="logistic", solver="sgd",
                               batch_size=job["batch_size"], learning_rate="constant",
                               learning_rate_init=job["learning_rate"], momentum=job["momentum"],
                               nesterovs_momentum=False, alpha=0.0, shuffle=True, random_state=job["seed"])
    classes = np.arange(OUTPUT_SIZE)

    def run_epoch() -> dict:
        started = time.perf_counter()
        classifier.partial_fit(x_train, y_train, classes=classes)
        seconds = time.perf_counter() - started
        # sklearn tracks the epoch's mean loss but not its training accuracy.
        return {"seconds": seconds, "train_loss": float(classifier.loss_), "train_accuracy": None}

    def finish() -> dict:
        return {"test_accuracy": float(classifier.score(standardised(test.images), test.labels))}

    return {"dtype": str(x_train.dtype)}, run_epoch, finish


# --- the machine's floor: the step's GEMMs alone, at the same shapes ------------------------------

def run_floor(conn, job: dict) -> None:
    _serve(conn, job, _setup_floor)


def _setup_floor(job: dict):
    """One epoch's matrix products and nothing else: np.matmul at the shapes a training step uses.

    Each step does the five products of the forward and backward pass in float32, with the
    transposed operands as views (no copies), into preallocated outputs:

        (B, 784) @ (784, H)   forward, hidden layer          (B, H) @ (H, 10)    forward, output
        (H, B)   @ (B, 10)    dW2                            (B, 10) @ (10, H)   dA1
        (784, B) @ (B, H)     dW1

    over the same batch sizes as an epoch (N // B full batches and the remainder). No sigmoid,
    softmax, loss, optimizer update or data movement: a time no real training loop can beat.
    """
    import numpy as np
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=job["threads"], user_api="blas")
    rng = np.random.default_rng(job["seed"])
    hidden, batch_size, n = job["hidden_size"], job["batch_size"], job["n_train"]

    def randn(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    x, w1, w2 = randn(batch_size, INPUT_SIZE), randn(INPUT_SIZE, hidden) * 0.05, randn(hidden, OUTPUT_SIZE)
    a1, a2 = np.empty((batch_size, hidden), np.float32), np.empty((batch_size, OUTPUT_SIZE), np.float32)
    dz2, dz1 = randn(batch_size, OUTPUT_SIZE), np.empty((batch_size, hidden), np.float32)
    dw1, dw2 = np.empty_like(w1), np.empty_like(w2)
    batches = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])

    def products(rows: int):
        return (("forward (B,784)@(784,H)", x[:rows], w1, a1[:rows]),
                ("forward (B,H)@(H,10)", a1[:rows], w2, a2[:rows]),
                ("dW2 (H,B)@(B,10)", a1[:rows].T, dz2[:rows], dw2),
                ("dA1 (B,10)@(10,H)", dz2[:rows], w2.T, dz1[:rows]),
                ("dW1 (784,B)@(B,H)", x[:rows].T, dz1[:rows], dw1))

    def run_epoch() -> dict:
        started = time.perf_counter()
        for rows in batches:
            np.matmul(x[:rows], w1, out=a1[:rows])
            np.matmul(a1[:rows], w2, out=a2[:rows])
            np.matmul(a1[:rows].T, dz2[:rows], out=dw2)
            np.matmul(dz2[:rows], w2.T, out=dz1[:rows])
            np.matmul(x[:rows].T, dz1[:rows], out=dw1)
        return {"seconds": time.perf_counter() - started, "train_loss": None, "train_accuracy": None}

    def finish() -> dict:
        """Each product alone at the full batch size: where the floor's time goes."""
        shapes = {}
        for name, left, right, out in products(batch_size):
            flops = 2 * left.shape[0] * left.shape[1] * right.shape[1]
            started = time.perf_counter()
            np.matmul(left, right, out=out)
            once = time.perf_counter() - started
            repeats = max(10, min(2000, int(0.05 / max(once, 1e-7))))   # about 50 ms per try
            times = []
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(repeats):
                    np.matmul(left, right, out=out)
                times.append((time.perf_counter() - started) / repeats)
            best = min(times)
            shapes[name] = {"microseconds": best * 1e6, "gflops": flops / best / 1e9}
        return {"test_accuracy": None, "products": shapes}

    return {"dtype": "float32", "batches_per_epoch": len(batches)}, run_epoch, finish
