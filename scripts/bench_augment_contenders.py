"""mlknobs `train --augment` against PyTorch + torchvision: the same MLP, the same distortions, one run.

Two contenders train the same 784 -> H sigmoid -> 10 network on distorted MNIST digits, each in a
process of its own, and their epochs are interleaved round-robin (mlknobs, torch, then torch,
mlknobs, ...) so that load from elsewhere on the machine slows both alike:

  mlknobs   mlknobs.training.loop.fit itself with `--augment`'s distortions: its augmentation
            worker thread distorts a chunk of digits while the main thread trains (one BLAS thread)
  torch     nn.Linear + nn.Sigmoid + CrossEntropyLoss + optim.SGD, fed by a DataLoader with
            num_workers=1 whose Dataset applies torchvision's RandomAffine then ElasticTransform
            to each digit (torch.set_num_threads(1) in the trainer; the worker is single-threaded
            as DataLoader makes it)

So each has one core training and one core distorting: on a 2-core machine, both cores.

What is kept the same (the fairness argument):
- The network and its start: 784 -> H (default 512, mlknobs' default) -> 10, sigmoid hidden units,
  softmax with cross-entropy (mean over the batch), Glorot-uniform weights and zero biases, float32.
- The optimizer: SGD with classical momentum 0.9, batch 128, the same peak learning rate and the
  same schedule (default mlknobs' one-cycle, rebuilt for torch with LambdaLR from the same formula,
  stepped once per batch; PyTorch's and mlknobs' SGD are the same update, see nn/optim.py).
- The inputs: the same IDX bytes (read by this script's tiny IDX reader in both processes; torchvision's
  MNIST class would want the internet), standardised with the mean and std of pixel/255 over the
  training digits used, as mlknobs' `standardize` scaling does.
- The distortions: mlknobs' `--augment` defaults (config.AUGMENT_DEFAULTS), mapped onto torchvision:
    rotate r deg         RandomAffine(degrees=r)
    scale s              RandomAffine(scale=(1 - s, 1 + s))
    shear k (a slant)    RandomAffine(shear=atan(k) in degrees): torchvision shears x by tan(angle),
                         so the slant factor is in [-k, k] for both (8.53 deg for k = 0.15)
    shift t px           RandomAffine(translate=(t / 28, t / 28)). torchvision rounds each shift to
                         whole pixels (mlknobs draws it continuously): with t = 1.5 a digit moves by
                         -1, 0 or +1 px in x and in y (and +-2 px with probability ~0).
    elastic e px, sigma  ElasticTransform(alpha, sigma), same sigma. Its field is U[-1, 1] noise
                         blurred by torchvision's gaussian_blur (8 sigma + 1 taps, reflect padding),
                         times alpha / 28 in grid_sample units of 14 px. mlknobs' `elastic` is the
                         displacement's standard deviation in pixels, so alpha is computed (exactly,
                         from the blur's linear map; see elastic_alpha) to make that std e pixels
                         in the central 20 x 20 box, where MNIST's ink is: alpha ~ 46 for e = 1,
                         sigma = 4. Reflect padding makes torchvision's field larger near the edges,
                         where mlknobs keeps it e; the torch process measures and prints the std it
                         gets in the central box and over the whole field.
  Both resample bilinearly with black outside. mlknobs composes the affine map and the elastic field
  into one resampling; torchvision resamples twice (affine, then elastic): a little more blur.
- The threads: one for training in each (one BLAS thread; torch.set_num_threads(1)), one
  distorting (mlknobs' worker thread; the DataLoader's one worker process). OPENBLAS_CORETYPE and
  OPENBLAS_L2_SIZE are removed from both processes' environment, so OpenBLAS picks its kernel for
  the real CPU; each process prints its BLAS kernel (threadpoolctl) and the CPU model.
- The timing: an epoch's seconds are from the start of its first batch's fetch to its last step,
  including the wait for distorted digits (mlknobs: fit's own per-epoch `seconds`; torch: around the
  `for x, y in loader` loop). The test accuracy after each epoch is measured outside that span, and
  time to an accuracy is the sum of the epochs' seconds up to the first epoch whose test accuracy
  reaches it (DAWNBench's measure, without start-up, which is printed apart).

Choices made for PyTorch as a careful user would: a persistent DataLoader worker (no new process
per epoch), the digits held as one uint8 tensor in the Dataset, torchvision.transforms.v2 on tensors
(`--torch-transforms pil` uses the classic v1 transforms on PIL images, as torchvision's MNIST class
hands them out; the elastic step, which costs the most, is the same tensor code in both).

The torch side runs under another interpreter (`--torch-python`), so that PyTorch need not be in
mlknobs' environment: this file is the child program for both sides (`--child`), and needs only the
standard library at the top level. Make the torch environment once, then run the parent with
mlknobs' environment:

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy threadpoolctl
    python scripts/bench_augment_contenders.py --torch-python /tmp/torchvenv/bin/python \\
        --mnist-dir ../shared/data/mnist --epochs 10 --target 98.5 --json bench-augment-contenders.json

torchvision distorts about a digit a millisecond on one core, so each PyTorch epoch of 60,000 digits
takes a minute or more, waiting on its worker: 10 epochs take some 12-15 minutes on a quiet machine.
A smoke test (under a minute): add --epochs 1 --train-size 2000.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

from bench_contenders import torch_mlp
from machine import cpu_name

SIDE = 28
INPUT_SIZE = SIDE * SIDE
OUTPUT_SIZE = 10
ONE_CYCLE_WARMUP = 0.3
CONTENDERS = {"mlknobs": "mlknobs", "torch": "PyTorch + torchvision"}
# Removed from the children's environment: they would pin OpenBLAS to a kernel other than the CPU's.
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                    "NUMEXPR_NUM_THREADS")


# --- shared by both children: stdlib + NumPy only ---------------------------------------------------

def read_idx(path: Path):
    """A uint8 IDX file (gzipped or not) as a NumPy array: images (N, 28, 28) or labels (N,).

    The header is a magic number 0x000008DD (type 0x08 = unsigned byte, D = number of dimensions)
    and D big-endian uint32 sizes; the bytes follow.
    """
    import numpy as np

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    if magic >> 8 != 0x08 or not 1 <= magic & 0xFF <= 3:
        raise ValueError(f"not a uint8 IDX file: bad magic 0x{magic:08x} in {path}")
    ndim = magic & 0xFF
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    if len(body) != math.prod(shape):
        raise ValueError(f"{path}: the header says {shape} ({math.prod(shape)} bytes), the file holds {len(body)}")
    return np.frombuffer(body, np.uint8).reshape(shape).copy()      # writable, as torch.from_numpy wants


def load_mnist(mnist_dir: str, train_size: int):
    """(train images (N, 784), train labels (N,), test images (10000, 784), test labels), uint8."""
    def find(stem: str) -> Path:
        for name in (f"{stem}.gz", stem):
            if (Path(mnist_dir) / name).exists():
                return Path(mnist_dir) / name
        raise FileNotFoundError(f"no {stem}[.gz] in {mnist_dir}")

    train_images = read_idx(find("train-images-idx3-ubyte")).reshape(-1, INPUT_SIZE)
    train_labels = read_idx(find("train-labels-idx1-ubyte"))
    test_images = read_idx(find("t10k-images-idx3-ubyte")).reshape(-1, INPUT_SIZE)
    test_labels = read_idx(find("t10k-labels-idx1-ubyte"))
    n = train_size or len(train_labels)
    return train_images[:n], train_labels[:n], test_images, test_labels


def pixel_mean_std(images) -> tuple[float, float]:
    """Mean and std of pixel/255 over uint8 images, in float64: mlknobs' InputScaling.fit."""
    import numpy as np

    x = images.astype(np.float64).reshape(-1)
    mean = x.sum() / x.size / 255.0
    variance = (x @ x) / x.size / 255.0**2 - mean**2
    return float(mean), float(np.sqrt(max(variance, 1e-12)))


def one_cycle(t: float) -> float:
    """mlknobs' one-cycle (nn/schedules.py) for a peak of 1: the learning rate at progress t in [0, 1)."""
    start, end = 1 / 25, 1 / 25e4
    if t < ONE_CYCLE_WARMUP:
        return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * t / ONE_CYCLE_WARMUP))
    u = (t - ONE_CYCLE_WARMUP) / (1 - ONE_CYCLE_WARMUP)
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * u))


def blas_kernels() -> list[str]:
    from threadpoolctl import threadpool_info

    return [f"{p['internal_api']} {p.get('version')} ({p.get('architecture')}, {p.get('num_threads')} thread(s))"
            for p in threadpool_info()]


# --- the child program: a line of JSON per message on stdin / stdout --------------------------------

class ParentGone(Exception):
    """stdin closed: the benchmark stopped (the other contender failed, or Ctrl-C); nobody to answer."""


class Channel:
    """The child's end: commands arrive on stdin; answers go to the real stdout, which nothing else
    may write to (print and library chatter go to stderr instead)."""

    def __init__(self):
        self.out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def send(self, message: dict) -> None:
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    def expect(self, command: str) -> None:
        received = sys.stdin.readline()
        if not received:
            raise ParentGone
        received = received.strip()
        if received != command:
            raise RuntimeError(f"expected {command!r} from the benchmark, got {received!r}")


def child(name: str, job: dict) -> None:
    channel = Channel()
    try:
        {"mlknobs": child_mlknobs, "torch": child_torch}[name](channel, job)
    except ParentGone:
        pass
    except BaseException as e:   # the parent must hear about it, whatever it was
        import traceback
        traceback.print_exc()
        channel.send({"error": f"{type(e).__name__}: {e}"})


def child_mlknobs(channel: Channel, job: dict) -> None:
    """mlknobs.training.loop.fit with the distortions; per-epoch test accuracy from its epoch callback.

    fit drives its own epochs, so the interleaving happens in the callback: after each epoch it
    measures the test accuracy, reports, and waits for the parent's next "epoch". The callback runs
    after fit has taken the epoch's `seconds`, so neither lies inside the timed span.
    """
    import numpy as np

    from mlknobs.config import TrainConfig
    from mlknobs.data.augment import Distorter, Distortions
    from mlknobs.data.splits import Split
    from mlknobs.nn.evaluate import accuracy_and_loss
    from mlknobs.nn.model import InputScaling
    from mlknobs.training.loop import fit

    started = time.perf_counter()
    train_images, train_labels, test_images, test_labels = load_mnist(job["mnist_dir"], job["train_size"])
    train, test = Split(train_images, train_labels), Split(test_images, test_labels)
    config = TrainConfig(epochs=job["epochs"], hidden_size=job["hidden_size"], batch_size=job["batch_size"],
                         learning_rate=job["learning_rate"], momentum=job["momentum"], nesterov=False,
                         weight_decay=0.0, schedule=job["schedule"], loss="cross-entropy", val_size=0,
                         seed=job["seed"], threads=1, **job["distortions"])
    scaling = InputScaling.fit(train.images)      # what fit's fresh_start fits, for the per-epoch test accuracy

    # The worker's cost per digit: a Distorter (buffers made once, as the worker keeps one per epoch)
    # on a chunk of 4096 digits, the best of three.
    chunk = train.images[:4096]
    distorter, times = Distorter(len(chunk), Distortions(**job["distortions"])), []
    for k in range(3):
        began = time.perf_counter()
        distorter(chunk, np.random.default_rng(k))
        times.append(time.perf_counter() - began)
    per_digit = min(times) / len(chunk)
    channel.send({"ready": True, "setup_seconds": time.perf_counter() - started, "info": {
        "cpu": cpu_name(), "blas": blas_kernels(), "numpy": np.__version__, "pixel_mean_std": [scaling.mean, scaling.std],
        "distort_microseconds_per_digit": per_digit * 1e6}})

    def on_epoch(progress) -> None:
        if progress.event != "epoch":
            return
        entry = progress.entry
        test_accuracy, _ = accuracy_and_loss(progress.params, config.loss, scaling, test.images, test.labels)
        channel.send({"seconds": entry["seconds"], "train_loss": entry["train_loss"],
                      "train_accuracy": entry["train_accuracy"], "test_accuracy": test_accuracy})
        if entry["epoch"] < config.epochs:
            channel.expect("epoch")

    channel.expect("epoch")
    model = fit(config, train, test, [str(d) for d in range(10)], callback=on_epoch)
    channel.expect("finish")
    channel.send({"test_accuracy": model.results["test_accuracy"],
                  "scaling_matches": [model.scaling.mean, model.scaling.std] == [scaling.mean, scaling.std]})


def elastic_alpha(elastic: float, sigma: float) -> float:
    """torchvision ElasticTransform's alpha for a displacement of std `elastic` pixels where the ink is.

    ElasticTransform.get_params blurs U[-1, 1] noise (variance 1/3) with torchvision's own
    gaussian_blur (8 sigma + 1 taps, reflect padding): a linear map M of the 784 noise values, so the
    blurred value at pixel p has std sqrt(1/3) |row p of M|. M's columns are the blurs of the 784
    unit impulses. The field is then scaled by alpha / 28 in grid_sample units of 14 px, so a
    displacement's std in pixels is alpha / 2 times the blurred std: alpha is chosen to make that
    std's root mean square over the central 20 x 20 box (where MNIST's digits are) `elastic` pixels.
    """
    import torch
    from torchvision.transforms import functional

    taps = int(8 * sigma + 1) | 1                                     # get_params' kernel size, made odd
    impulses = torch.eye(INPUT_SIZE, dtype=torch.float64).reshape(INPUT_SIZE, 1, SIDE, SIDE)
    columns = functional.gaussian_blur(impulses, [taps, taps], [sigma, sigma])    # (784, 1, 28, 28): M e_i
    blurred_std = math.sqrt(1 / 3) * columns.pow(2).sum(0)[0].sqrt()              # (28, 28) per pixel
    central = float(blurred_std[4:24, 4:24].pow(2).mean().sqrt())
    return 2 * elastic / central


def torch_transforms(job: dict, mean: float, std: float):
    """(the per-digit transform, the affine step alone, the elastic step alone, elastic alpha)."""
    import torch
    from torchvision import transforms as v1
    from torchvision.transforms import v2

    d = job["distortions"]
    bilinear = v1.InterpolationMode.BILINEAR
    api = v2 if job["torch_transforms"] == "v2" else v1
    affine = api.RandomAffine(
        degrees=d["rotate"], translate=(d["shift"] / SIDE, d["shift"] / SIDE) if d["shift"] else None,
        scale=(1 - d["scale"], 1 + d["scale"]) if d["scale"] else None,
        shear=math.degrees(math.atan(d["shear"])) if d["shear"] else None, interpolation=bilinear, fill=0)
    alpha = elastic_alpha(d["elastic"], d["elastic_sigma"]) if d["elastic"] else 0.0
    elastic = api.ElasticTransform(alpha=alpha, sigma=float(d["elastic_sigma"]), interpolation=bilinear, fill=0) \
        if d["elastic"] else api.Identity() if api is v2 else (lambda image: image)
    if api is v2:
        to_input = [v2.ToDtype(torch.float32, scale=True), v2.Normalize([mean], [std])]
    else:
        to_input = [v1.ToTensor(), v1.Normalize([mean], [std])]
    return api.Compose([affine, elastic, *to_input]), affine, elastic, alpha


def child_torch(channel: Channel, job: dict) -> None:
    """The same MLP in PyTorch, fed distorted digits by torchvision transforms in a one-worker DataLoader."""
    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import ElasticTransform

    started = time.perf_counter()
    torch.set_num_threads(1)
    torch.manual_seed(job["seed"])
    train_images, train_labels, test_images, test_labels = load_mnist(job["mnist_dir"], job["train_size"])
    mean, std = pixel_mean_std(train_images)
    transform, affine, elastic, alpha = torch_transforms(job, mean, std)
    pil = job["torch_transforms"] == "pil"

    class Digits(Dataset):
        """uint8 digits as one tensor (N, 1, 28, 28); each item distorted afresh."""

        def __init__(self, images, labels):
            self.images = torch.from_numpy(images.reshape(-1, 1, SIDE, SIDE).copy())
            self.labels = torch.from_numpy(labels.astype(np.int64))

        def __len__(self) -> int:
            return len(self.labels)

        def image(self, i: int):
            if pil:
                from PIL import Image
                return Image.fromarray(self.images[i, 0].numpy())    # mode "L", as torchvision's MNIST does
            return self.images[i]

        def __getitem__(self, i: int):
            return transform(self.image(i)), self.labels[i]

    digits = Digits(train_images, train_labels)
    loader = DataLoader(digits, batch_size=job["batch_size"], shuffle=True, num_workers=1, persistent_workers=True,
                        generator=torch.Generator().manual_seed(job["seed"]))

    model, optimizer = torch_mlp(job)                              # the same peer as bench_contenders.py
    steps_per_epoch = math.ceil(len(digits) / job["batch_size"])
    total_steps = job["epochs"] * steps_per_epoch
    factor = (lambda step: one_cycle(step / total_steps)) if job["schedule"] == "one-cycle" else (lambda step: 1.0)
    if job["schedule"] not in ("one-cycle", "constant"):
        raise ValueError(f"schedule {job['schedule']!r}: this benchmark knows one-cycle and constant")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)   # lr = peak x factor(step), per batch
    loss_fn = nn.CrossEntropyLoss()
    test_x = (torch.from_numpy(test_images).float() / 255 - mean) / std       # (10000, 784)
    test_y = torch.from_numpy(test_labels.astype(np.int64))

    # The per-digit cost of each step alone, in this process (the worker runs the same code), and
    # the size of the elastic field the alpha gives.
    sample = [digits.image(i) for i in range(min(200, len(digits)))]
    costs = {}
    for label, step in (("affine", affine), ("elastic", elastic), ("whole transform", transform)):
        for image in sample[:20]:
            step(image)                                                       # warm
        began = time.perf_counter()
        for image in sample:
            step(image)
        costs[label] = (time.perf_counter() - began) / len(sample) * 1e6
    field_std = {}
    if alpha:
        sigma = float(job["distortions"]["elastic_sigma"])
        fields = torch.cat([ElasticTransform.get_params([alpha, alpha], [sigma, sigma], [SIDE, SIDE])
                            for _ in range(300)]) * (SIDE / 2)                # (300, 28, 28, 2) in pixels
        field_std = {"central 20x20": float(fields[:, 4:24, 4:24].std()), "whole field": float(fields.std())}

    channel.send({"ready": True, "setup_seconds": time.perf_counter() - started, "info": {
        "cpu": cpu_name(), "blas": blas_kernels(), "torch": torch.__version__,
        "torchvision": __import__("torchvision").__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(), "transforms": job["torch_transforms"], "pixel_mean_std": [mean, std],
        "elastic_alpha": alpha, "elastic_displacement_std_px": field_std,
        "microseconds_per_digit": costs}})

    for _ in range(job["epochs"]):
        channel.expect("epoch")
        began = time.perf_counter()
        model.train()
        waited, loss_sum, correct, seen = 0.0, 0.0, 0, 0
        batches = iter(loader)
        while True:
            asked = time.perf_counter()
            batch = next(batches, None)
            waited += time.perf_counter() - asked
            if batch is None:
                break
            images, labels = batch
            x = images.reshape(len(labels), INPUT_SIZE)                       # (B, 784) float32, standardised
            logits = model(x)                                                 # (B, 10)
            loss = loss_fn(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
        seconds = time.perf_counter() - began
        model.eval()
        with torch.no_grad():
            test_accuracy = float((model(test_x).argmax(1) == test_y).float().mean())
        channel.send({"seconds": seconds, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                      "test_accuracy": test_accuracy, "waiting_for_batches": waited})
    channel.expect("finish")
    channel.send({"test_accuracy": test_accuracy})


# --- the parent: starts both, interleaves their epochs, reports --------------------------------------

class Contender:
    """A child process and its half of the line protocol."""

    def __init__(self, name: str, python: str, job: dict):
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env.update({variable: "1" for variable in THREAD_VARIABLES})
        self.name, self.started = name, time.perf_counter()
        try:
            self.process = subprocess.Popen([python, os.path.abspath(__file__), "--child", name, "--job", json.dumps(job)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        except OSError as e:
            raise SystemExit(f"cannot start {name}'s interpreter {python}: {e.strerror}") from None

    def ask(self, command: str | None = None) -> dict:
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"{self.name} ended without answering (exit status {self.process.wait()}); see above")
        reply = json.loads(line)
        if "error" in reply:
            raise SystemExit(f"{self.name} failed: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def time_to(accuracy: float, epochs: list[dict]) -> tuple[float, int] | None:
    """(training seconds, epoch) up to the first epoch whose test accuracy reaches `accuracy`."""
    total = 0.0
    for number, epoch in enumerate(epochs, 1):
        total += epoch["seconds"]
        if epoch["test_accuracy"] >= accuracy:
            return total, number
    return None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_augment_contenders.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch-python", help="The Python interpreter that has torch and torchvision "
                                               "(e.g. /tmp/torchvenv/bin/python). Required.")
    parser.add_argument("--mlknobs-python", default=sys.executable,
                        help="The Python interpreter that has mlknobs (default: this one).")
    parser.add_argument("--mnist-dir", default=os.path.join(os.environ.get("MLKNOBS_MIRROR", "../shared/data"), "mnist"),
                        help="The folder with MNIST's four IDX files, gzipped or not (default: $MLKNOBS_MIRROR/mnist).")
    parser.add_argument("--epochs", type=int, default=10, help="Epochs each contender trains (default 10).")
    parser.add_argument("--target", type=float, default=98.5,
                        help="Test accuracy in percent whose time to reach is reported (default 98.5); the best "
                             "accuracy both reached is reported too.")
    parser.add_argument("--train-size", type=int, default=0, help="Train on the first N digits (default: all 60,000).")
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=0.5, help="Peak learning rate (default 0.5, mlknobs' default).")
    parser.add_argument("--schedule", choices=("one-cycle", "constant"), default="one-cycle")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-transforms", choices=("v2", "pil"), default="v2",
                        help="torchvision.transforms.v2 on uint8 tensors (default), or the v1 transforms on PIL images.")
    parser.add_argument("--json", dest="json_path", help="Also write the results here.")
    parser.add_argument("--child", choices=tuple(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is None:
        if not args.torch_python:
            parser.error("--torch-python is required: the interpreter with torch and torchvision")
        if args.epochs < 1 or args.train_size < 0 or args.hidden_size < 1 or args.batch_size < 1:
            parser.error("--epochs, --hidden-size and --batch-size must be at least 1, --train-size at least 0")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args.child, json.loads(args.job))
        return
    sys.stdout.reconfigure(line_buffering=True)      # tables and progress in order when both go to one file

    from mlknobs.config import AUGMENT_DEFAULTS

    job = {"mnist_dir": args.mnist_dir, "train_size": args.train_size, "epochs": args.epochs,
           "hidden_size": args.hidden_size, "batch_size": args.batch_size, "learning_rate": args.lr,
           "momentum": args.momentum, "schedule": args.schedule, "seed": args.seed,
           "distortions": dict(AUGMENT_DEFAULTS), "torch_transforms": args.torch_transforms}
    pythons = {"mlknobs": args.mlknobs_python, "torch": args.torch_python}
    contenders = {}
    try:
        for name in CONTENDERS:            # one at a time: neither's start-up slows the other's
            contenders[name] = Contender(name, pythons[name], job)
            contenders[name].ready = contenders[name].ask()
            contenders[name].ready["wall_to_ready"] = time.perf_counter() - contenders[name].started
        report_setup(job, contenders)
        epochs = {name: [] for name in CONTENDERS}
        for r in range(args.epochs):
            order = list(CONTENDERS) if r % 2 == 0 else list(CONTENDERS)[::-1]    # who goes first alternates
            for name in order:
                epochs[name].append(contenders[name].ask("epoch"))
            print(f"epoch {r + 1}: " + "; ".join(
                f"{name} {epochs[name][-1]['seconds']:.2f} s, test {epochs[name][-1]['test_accuracy'] * 100:.2f} %"
                for name in CONTENDERS), file=sys.stderr, flush=True)
        finals = {name: contender.ask("finish") for name, contender in contenders.items()}
    finally:
        for contender in contenders.values():
            contender.close()
    result = summarise(args, job, contenders, epochs, finals)
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(result, f, indent=2)


def report_setup(job: dict, contenders: dict) -> None:
    m, t = contenders["mlknobs"].ready["info"], contenders["torch"].ready["info"]
    print(f"CPU: {m['cpu']}, {os.cpu_count()} cores", file=sys.stderr)
    print(f"mlknobs: NumPy {m['numpy']}; BLAS {'; '.join(m['blas'])}; distorting: "
          f"{m['distort_microseconds_per_digit']:.1f} us/digit", file=sys.stderr)
    costs = ", ".join(f"{k} {v:.0f}" for k, v in t["microseconds_per_digit"].items())
    print(f"torch {t['torch']} ({t['cpu_capability']}, {t['torch_threads']} thread), torchvision {t['torchvision']} "
          f"({t['transforms']} transforms); thread pools {'; '.join(t['blas']) or 'none found'}; "
          f"us/digit: {costs}", file=sys.stderr)
    if t["elastic_alpha"]:
        stds = ", ".join(f"{k} {v:.2f} px" for k, v in t["elastic_displacement_std_px"].items())
        print(f"elastic: mlknobs {job['distortions']['elastic']} px std (sigma {job['distortions']['elastic_sigma']}); "
              f"torchvision alpha {t['elastic_alpha']:.1f}, sigma {job['distortions']['elastic_sigma']}: std {stds}",
              file=sys.stderr)
    print("start-up (imports, data, model): " + ", ".join(
        f"{name} {c.ready['wall_to_ready']:.1f} s" for name, c in contenders.items()), file=sys.stderr, flush=True)


def summarise(args, job: dict, contenders: dict, epochs: dict, finals: dict) -> dict:
    ratios = [t["seconds"] / m["seconds"] for m, t in zip(epochs["mlknobs"], epochs["torch"])]
    median = {name: statistics.median(e["seconds"] for e in epochs[name]) for name in CONTENDERS}
    best = {name: max(e["test_accuracy"] for e in epochs[name]) for name in CONTENDERS}
    both = min(best.values())
    targets = {f"{args.target:g} %": args.target / 100, f"{both * 100:.2f} % (the best both reached)": both}
    reached = {label: {name: time_to(accuracy, epochs[name]) for name in CONTENDERS}
               for label, accuracy in targets.items()}

    n = args.train_size or 60000
    print(f"\n{args.epochs} epoch(s) on {n:,} distorted digits, H={args.hidden_size}, batch {args.batch_size}, "
          f"SGD lr {args.lr:g} ({args.schedule}), momentum {args.momentum:g}, seed {args.seed}; "
          f"distortions {job['distortions']}\n")
    print("| epoch | mlknobs s (total) | mlknobs test % | PyTorch s (total) | PyTorch test % | PyTorch waiting on batches |")
    print("|---:|---:|---:|---:|---:|---:|")
    totals = {name: 0.0 for name in CONTENDERS}
    for k, (m, t) in enumerate(zip(epochs["mlknobs"], epochs["torch"]), 1):
        totals["mlknobs"] += m["seconds"]
        totals["torch"] += t["seconds"]
        print(f"| {k} | {m['seconds']:.2f} ({totals['mlknobs']:.1f}) | {m['test_accuracy'] * 100:.2f} | "
              f"{t['seconds']:.2f} ({totals['torch']:.1f}) | {t['test_accuracy'] * 100:.2f} | "
              f"{t['waiting_for_batches']:.2f} s |")

    def seconds(found) -> str:
        return f"{found[0]:.1f} s (epoch {found[1]})" if found else "not reached"

    print("\n| | mlknobs | PyTorch + torchvision | PyTorch / mlknobs |\n|---|---:|---:|---:|")
    print(f"| seconds per augmented epoch (median) | {median['mlknobs']:.2f} | {median['torch']:.2f} | "
          f"{statistics.median(ratios):.1f}x (median of per-epoch ratios) |")
    for label, found in reached.items():
        m, t = found["mlknobs"], found["torch"]
        ratio = f"{t[0] / m[0]:.1f}x" if m and t else "-"
        print(f"| time to {label} | {seconds(m)} | {seconds(t)} | {ratio} |")
    print(f"| final test accuracy | {epochs['mlknobs'][-1]['test_accuracy'] * 100:.2f} % | "
          f"{epochs['torch'][-1]['test_accuracy'] * 100:.2f} % | |")
    if not finals["mlknobs"].get("scaling_matches", True):
        print("note: fit's input scaling differed from the one the per-epoch test accuracy used", file=sys.stderr)

    return {"settings": {**job, "target": args.target}, "cpu": contenders["mlknobs"].ready["info"]["cpu"],
            "cores": os.cpu_count(),
            "setup": {name: c.ready for name, c in contenders.items()}, "epochs": epochs,
            "median_epoch_seconds": median, "torch_over_mlknobs_epoch_ratio_median": statistics.median(ratios),
            "time_to": {label: {name: (None if found is None else {"seconds": found[0], "epoch": found[1]})
                                for name, found in by_name.items()} for label, by_name in reached.items()},
            "finals": finals}


if __name__ == "__main__":
    main()
