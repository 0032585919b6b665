"""Training from the page: one run at a time, in a worker thread, watched through one callback.

    Trainer.start(config) -> run id     runs mlknobs.training.run.run (what `mlknobs train` does:
                                         checkpoint after every epoch, atomic save, one writer per
                                         output) into OUT_DIR/<run id>.npz; raises RunGoing while
                                         a run is going
    Trainer.stop()                       the run stops at its next step boundary (the callback
                                         returns True: the last epoch's checkpoint is kept)
    Trainer.state()                      the current or last run, as GET /api/train answers
    Trainer.subscribe()                  a feed.Reader of its records, for GET /api/train/events

The callback, called after every step, keeps the run's state (the loss curve, bounded to
MAX_POINTS by averaging neighbours, the epochs' scores, steps per second and time left) and
publishes one record per event to the feed:

    start     epochs, batches per epoch, steps in all
    step      epoch, batch, step, loss, learning_rate, steps_per_second, seconds_left
    epoch     the epoch's history entry: train_loss, train_accuracy, val_accuracy/val_loss with
              a validation set, learning_rate, seconds
    snapshot  a few times per epoch: the first hidden units' input weights (`units` tiles of
              28x28, int8 scaled to each unit's largest |weight|, base64) and a handful of the
              batch just trained on (uint8 pixels, base64) with labels and the network's guesses
    end       status (done, stopped, failed), message, model path, test accuracy

NumPy and the standard library only: the web app turns these into HTTP.
"""

from __future__ import annotations

import base64
import logging
import math
import shlex
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from mlknobs.config import TrainConfig
from mlknobs.data.datasets import get_dataset
from mlknobs.errors import MlknobsError, TrainingDiverged, TrainingInterrupted
from mlknobs.serve.feed import Feed, Reader
from mlknobs.training import run as training
from mlknobs.training.loop import Progress
from mlknobs.training.run import DataSource, checkpoint_path_for

MAX_POINTS = 2_000            # loss-curve points kept; beyond, neighbours are averaged in pairs
SNAPSHOTS_PER_EPOCH = 4
MIN_SNAPSHOT_SECONDS = 0.5    # a tiny epoch still sends at most two snapshots a second
MAX_UNITS = 36                # weight tiles in a snapshot (6 x 6)
BATCH_DIGITS = 8              # digits of the batch in a snapshot
RATE_WINDOW_SECONDS = 2.0     # steps per second is measured over about this long
JOIN_SECONDS = 10.0           # on shutdown, how long to wait for a run to stop
RUNNING, DONE, STOPPED, FAILED = "running", "done", "stopped", "failed"
# Worded as `mlknobs train` words a diverged run (cli/messages.py), for the page's line below the message.
DIVERGED_HINT = "A smaller learning rate that learns is what `mlknobs lr-find` measures (same settings)."

log = logging.getLogger("mlknobs.serve")


class RunGoing(Exception):
    """A run is going already: one at a time (it owns its output and the machine's cores)."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        super().__init__(f"run {run_id} is still going: stop it first (POST /api/train/stop)")


class Curve:
    """The loss per step, at most MAX_POINTS points: when full, each pair of neighbours becomes
    their mean, and from then on each point is the mean of twice as many steps."""

    def __init__(self, max_points: int = MAX_POINTS):
        self.max_points = max_points
        self.steps: list[int] = []       # the last step each point covers
        self.losses: list[float] = []
        self.stride = 1                  # steps per point
        self._sum, self._count = 0.0, 0

    def add(self, step: int, loss: float) -> None:
        self._sum += loss
        self._count += 1
        if self._count < self.stride:
            return
        self.steps.append(step)
        self.losses.append(self._sum / self._count)
        self._sum, self._count = 0.0, 0
        if len(self.steps) >= self.max_points:
            self.steps = self.steps[1::2]
            self.losses = [(a + b) / 2 for a, b in zip(self.losses[0::2], self.losses[1::2], strict=False)]
            self.stride *= 2

    def to_dict(self) -> dict:
        return {"steps": list(self.steps), "losses": [_rounded(v) for v in self.losses], "stride": self.stride}


@dataclass
class Run:
    """One run's state, as the page shows it; guarded by its feed's lock."""

    id: str
    config: TrainConfig
    out: Path
    status: str = RUNNING
    phase: str = "loading the data"
    message: str = ""
    hint: str | None = None
    model: str | None = None
    resume: str | None = None
    test_accuracy: float | None = None
    started: float = field(default_factory=time.time)
    seconds: float | None = None
    epochs: int = 0
    batches: int = 0
    total_steps: int = 0
    progress: dict | None = None
    history: list[dict] = field(default_factory=list)
    snapshot: dict | None = None
    curve: Curve = field(default_factory=Curve)
    stop: threading.Event = field(default_factory=threading.Event)
    feed: Feed = field(init=False)

    def __post_init__(self):
        self.feed = Feed(self.state)
        self.class_names = list(get_dataset(self.config.dataset).class_names)

    def state(self) -> dict:
        return {"run": self.id, "status": self.status, "phase": self.phase, "stopping": self.stop.is_set(),
                "settings": self.config.to_dict(), "model": self.model, "out": str(self.out),
                "message": self.message, "hint": self.hint, "resume": self.resume, "test_accuracy": self.test_accuracy,
                "started": self.started, "seconds": self.seconds, "epochs": self.epochs,
                "batches": self.batches, "steps": self.total_steps, "progress": self.progress,
                "history": list(self.history), "curve": self.curve.to_dict(), "snapshot": self.snapshot,
                "class_names": self.class_names}


class Watcher:
    """The training callback of one run (see the module note): state and records, then stop or not."""

    def __init__(self, run: Run):
        self.run = run
        self.rate_mark = (time.perf_counter(), 0)
        self.steps_per_second: float | None = None
        self.last_snapshot = -math.inf
        self.snapshot_batches: frozenset[int] = frozenset()
        self.digits: dict | None = None           # a handful of the latest batch looked at
        self.last: Progress | None = None         # the latest event (its params are the live knobs)
        self.shown = True                         # has the latest snapshot been published?

    def __call__(self, progress: Progress) -> bool:
        run = self.run
        self.last = progress
        if progress.event == "step":
            self.step(progress)
        elif progress.event == "epoch":
            entry = {k: _rounded(v) for k, v in progress.entry.items()}
            with run.feed.lock:
                run.history.append(entry)
                run.feed.publish({"event": "epoch", **entry})
            self.take_snapshot(progress, force=True)
            if progress.epoch == progress.epochs:
                with run.feed.lock:
                    run.phase = "testing and saving"
        elif progress.event == "start":
            steps = progress.epochs * progress.batches
            self.snapshot_batches = frozenset(round(k * progress.batches / SNAPSHOTS_PER_EPOCH)
                                              for k in range(1, SNAPSHOTS_PER_EPOCH + 1))
            with run.feed.lock:
                run.phase, run.epochs, run.batches, run.total_steps = "training", progress.epochs, progress.batches, steps
                run.feed.publish({"event": "start", "epoch": progress.epoch, "epochs": progress.epochs,
                                  "batches": progress.batches, "steps": steps})
            self.rate_mark = (time.perf_counter(), (progress.epoch - 1) * progress.batches)
            self.take_snapshot(progress, force=True)
        return run.stop.is_set()

    def step(self, progress: Progress) -> None:
        run = self.run
        step = (progress.epoch - 1) * progress.batches + progress.batch
        now = time.perf_counter()
        since, mark_step = self.rate_mark
        if now - since >= RATE_WINDOW_SECONDS or (self.steps_per_second is None and step - mark_step >= 20):
            self.steps_per_second = (step - mark_step) / (now - since)
            self.rate_mark = (now, step)
        rate = self.steps_per_second
        record = {"event": "step", "epoch": progress.epoch, "batch": progress.batch, "step": step,
                  "loss": _rounded(progress.loss), "learning_rate": _rounded(progress.learning_rate),
                  "steps_per_second": round(rate, 1) if rate else None,
                  "seconds_left": round((run.total_steps - step) / rate, 1) if rate else None}
        with run.feed.lock:
            run.curve.add(step, progress.loss)
            run.progress = record
            run.feed.publish(record)
        if progress.batch in self.snapshot_batches or self.digits is None:
            self.digits = batch_digits(progress.pixels, progress.labels, progress.guesses)
            self.shown = False
            self.take_snapshot(progress)

    def take_snapshot(self, progress: Progress, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last_snapshot < MIN_SNAPSHOT_SECONDS:
            return
        self.last_snapshot, self.shown = now, True
        snapshot = {"epoch": progress.epoch, "batch": progress.batch, **weight_tiles(progress.params.w1)}
        if self.digits is not None:
            snapshot["digits"] = self.digits
        with self.run.feed.lock:
            self.run.snapshot = snapshot
            self.run.feed.publish({"event": "snapshot", **snapshot})


    def finish(self) -> None:
        """The run ended: publish what the last snapshot, held back by MIN_SNAPSHOT_SECONDS, missed."""
        if not self.shown and self.last is not None:
            self.take_snapshot(self.last, force=True)


def weight_tiles(w1: np.ndarray, count: int = MAX_UNITS) -> dict:
    """The first `count` hidden units' input weights: {"units", "tiles"}, tiles being base64 of
    int8 (units, 784), each unit scaled to its own largest |weight| (as `plot weights` draws)."""
    weights = np.nan_to_num(np.asarray(w1[:, :count], np.float64).T, nan=0.0, posinf=0.0, neginf=0.0)  # (units, 784)
    largest = np.maximum(np.abs(weights).max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
    tiles = np.round(weights / largest * 127).astype(np.int8)
    return {"units": int(weights.shape[0]), "tiles": base64.b64encode(tiles.tobytes()).decode("ascii")}


def batch_digits(pixels: np.ndarray, labels: np.ndarray, guesses: np.ndarray, count: int = BATCH_DIGITS) -> dict:
    """A handful of the batch: {"pixels": base64 of uint8 (n, 784), "labels", "guesses"}."""
    n = min(count, len(labels))
    return {"pixels": base64.b64encode(np.ascontiguousarray(pixels[:n], np.uint8).tobytes()).decode("ascii"),
            "labels": [int(v) for v in labels[:n]], "guesses": [int(v) for v in guesses[:n]]}


class Trainer:
    """One run at a time into `out_dir`, with data from `data`; `on_model(path)` is called (in the
    worker thread) with each model a run saves, before the run is reported done."""

    def __init__(self, out_dir: Path, data: DataSource | None = None, on_model=None):
        self.out_dir = Path(out_dir)
        self.data = data if data is not None else DataSource()
        self.on_model = on_model
        self.lock = threading.Lock()
        self.run: Run | None = None
        self.thread: threading.Thread | None = None

    def start(self, config: TrainConfig) -> str:
        """Start a run; its id. Raises RunGoing while another is going."""
        with self.lock:
            if self.thread is not None and self.thread.is_alive():
                raise RunGoing(self.run.id)
            run_id = self.new_id()
            self.run = Run(run_id, config, self.out_dir / f"{run_id}.npz")
            self.thread = threading.Thread(target=self.work, args=(self.run,), name=f"mlknobs-train-{run_id}",
                                           daemon=True)
            self.thread.start()
            return run_id

    def new_id(self) -> str:
        """run-YYYYmmdd-HHMMSS, with -2, -3 ... while its model or checkpoint exists already."""
        stem = datetime.now().strftime("run-%Y%m%d-%H%M%S")
        candidate, n = stem, 1
        while (self.out_dir / f"{candidate}.npz").exists() or \
                checkpoint_path_for(self.out_dir / f"{candidate}.npz").exists() or \
                (self.run is not None and self.run.id == candidate):
            n += 1
            candidate = f"{stem}-{n}"
        return candidate

    def work(self, run: Run) -> None:
        end: dict
        watcher = Watcher(run)
        try:
            model = training.run(run.config, run.out, data=self.data, callback=watcher)
            if self.on_model is not None:
                self.on_model(run.out)
        except TrainingInterrupted as e:
            if e.checkpoint:
                end = {"status": STOPPED, "resume": resume_command(run.out, self.data),
                       "message": f"epoch {e.epochs_done} of {run.config.epochs} is saved in {e.checkpoint}"}
            else:
                end = {"status": STOPPED, "message": "before the first epoch ended; nothing was saved"}
        except TrainingDiverged as e:
            end = {"status": FAILED, "message": str(e), "hint": DIVERGED_HINT}
        except MlknobsError as e:
            end = {"status": FAILED, "message": str(e)}
        except MemoryError:
            end = {"status": FAILED, "message": "out of memory: try a smaller hidden_size or batch_size"}
        except Exception as e:                          # a bug: its traceback goes to the server's log
            log.exception("training run %s failed", run.id)
            end = {"status": FAILED, "message": f"internal error ({type(e).__name__}); see the server's log"}
        else:
            end = {"status": DONE, "message": f"saved {run.out}", "model": str(run.out),
                   "test_accuracy": _rounded(model.results["test_accuracy"])}
        watcher.finish()
        with run.feed.lock:
            run.status, run.phase = end["status"], ""
            run.message, run.model, run.hint = end["message"], end.get("model"), end.get("hint")
            run.resume, run.test_accuracy = end.get("resume"), end.get("test_accuracy")
            run.seconds = round(time.time() - run.started, 3)
            run.feed.publish({"event": "end", "run": run.id, **end, "seconds": run.seconds})
        run.feed.close()

    def stop(self) -> str | None:
        """Ask the running run to stop at its next step; its id, or None if no run is going."""
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                return None
            with self.run.feed.lock:
                self.run.stop.set()
            return self.run.id

    def state(self) -> dict:
        with self.lock:
            run = self.run
        if run is None:
            return {"run": None, "status": "idle"}
        with run.feed.lock:
            return run.state()

    def subscribe(self) -> Reader | None:
        """A reader of the current or last run's records (feed.TooManyReaders past the limit); None
        if there was no run yet."""
        with self.lock:
            run = self.run
        return None if run is None else run.feed.subscribe()

    def shut_down(self) -> None:
        """Stop a run (checkpoint kept) and end every event stream, without waiting."""
        self.stop()
        with self.lock:
            run = self.run
        if run is not None:
            run.feed.close()

    def join(self, timeout: float = JOIN_SECONDS) -> None:
        thread = self.thread
        if thread is not None:
            thread.join(timeout)


def resume_command(out: Path, data: DataSource) -> str:
    """The command that resumes a stopped run, quoted for a shell: `mlknobs train --resume --out OUT`,
    with the --data-dir and each --mirror the server was given (`data` holds them)."""
    words = ["mlknobs", "train", "--resume", "--out", str(out)]
    if data.data_dir is not None:
        words += ["--data-dir", str(data.data_dir)]
    for mirror in data.mirrors:
        words += ["--mirror", mirror]
    return shlex.join(words)


def _rounded(value):
    """A number for JSON: floats to 6 significant digits; NaN and infinity (not JSON) as None."""
    if not isinstance(value, float):
        return value
    return float(f"{value:.6g}") if math.isfinite(value) else None
