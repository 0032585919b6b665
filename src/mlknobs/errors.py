"""The exception types the library raises.

Errors carry the facts as fields (the learning rate that diverged, the checkpoint that is in the
way); the CLI turns them into a one-line message and words the hint in its own terms (option
names, commands), so the library never speaks CLI.
"""

from __future__ import annotations

from pathlib import Path

from mlknobs.text import value_repr


class MlknobsError(Exception):
    """Base class: anything a user can act on, reported without a traceback."""


class SettingsError(MlknobsError, ValueError):
    """Training settings that cannot work together or at all.

    `problems` holds (setting, text) pairs; the text names settings as {setting} placeholders so
    that the library can say `val_size` and the CLI `--val-size`.
    """

    def __init__(self, problems):
        self.problems = [(setting, text) for setting, text in problems]
        super().__init__(self.describe())

    def describe(self, name_of=lambda setting: setting) -> str:
        texts = [_fill(text, name_of) for _, text in self.problems]
        return "invalid training settings: " + "; ".join(texts)

    @property
    def settings(self) -> list[str]:
        return [setting for setting, _ in self.problems if setting]


def _fill(text: str, name_of) -> str:
    import re

    return re.sub(r"\{(\w+)\}", lambda m: name_of(m.group(1)), text)


class DataFormatError(MlknobsError, ValueError):
    """A data file is not what it claims to be (bad IDX header, truncated payload, bad gzip)."""


class DownloadError(MlknobsError):
    """No mirror could deliver a verified copy of a dataset file."""


class DownloadFailed(DownloadError):
    """No mirror delivered a verified `dataset`/`filename`; `reasons` has one line per mirror tried."""

    def __init__(self, dataset: str, filename: str, reasons: list[str]):
        self.dataset, self.filename, self.reasons = dataset, filename, list(reasons)
        lines = [f"could not download {dataset}/{filename} from any mirror:"]
        lines += [f"  - {r}" for r in self.reasons] or ["  - no mirrors configured"]
        super().__init__("\n".join(lines))


class DataDirNotWritable(DownloadError):
    """The data folder cannot hold the downloaded files (read-only, not a folder, disk full, ...).

    `folder` is where writing failed (DATA_DIR/<dataset>), `data_dir` the data dir it is in, and
    `reason` the system's words ("Permission denied", "No space left on device"). The fix is the
    user's: another data dir, or room on this one.
    """

    def __init__(self, folder: Path, reason: str, data_dir: Path | None = None):
        self.folder = Path(folder)
        self.data_dir = Path(data_dir) if data_dir is not None else self.folder.parent
        self.reason = reason
        super().__init__(f"cannot use data folder {self.folder}: {reason}")


class DownloadSettingsError(MlknobsError, ValueError):
    """A download setting, or the environment variable setting it, is out of range.

    `name` is the variable (MLKNOBS_DOWNLOAD_RETRIES) or the DownloadSettings field, `value` what
    was given, `allowed` the range in words ("a whole number from 0 to 20").
    """

    def __init__(self, name: str, value, allowed: str):
        self.name, self.value, self.allowed = name, value, allowed
        super().__init__(f"{name} must be {allowed}, got {value_repr(value)}")


class UnsupportedMirror(MlknobsError, ValueError):
    """A user-given mirror we cannot fetch from (empty, or a scheme such as ftp://); `mirror` as given."""

    def __init__(self, mirror: str, message: str):
        self.mirror = mirror
        super().__init__(message)


class ModelFileError(MlknobsError, ValueError):
    """A model or checkpoint file is missing, damaged, foreign, or of an unknown version."""


class ModelFileMissing(ModelFileError):
    """There is no model file at `path` (the CLI suggests training one). `role`: "model" or "initial model"."""

    def __init__(self, path: Path, role: str = "model"):
        self.path, self.role = Path(path), role
        super().__init__(f"no {role} file at {path}")


class TrainingDiverged(MlknobsError):
    """The loss or the weights stopped being finite, blew up, or the sigmoids saturated.

    step_losses: the run's [step, batch loss] pairs up to the blow-up (every --log-every steps, or
    every check without it; a loss that was no longer finite is None); history: its whole epochs.
    curve: the file where training.run kept them (None until it has).
    """

    def __init__(self, message: str, learning_rate: float, step_losses: list | None = None,
                 history: list | None = None, curve: Path | None = None):
        super().__init__(message)
        self.learning_rate = learning_rate
        self.step_losses = step_losses or []
        self.history = history or []
        self.curve = curve


class TrainingInterrupted(MlknobsError):
    """Ctrl-C during training. `checkpoint` holds the last completed epoch, if any."""

    def __init__(self, message: str, checkpoint: Path | None = None, epochs_done: int = 0):
        super().__init__(message)
        self.checkpoint = checkpoint
        self.epochs_done = epochs_done


class RunStateError(MlknobsError):
    """A run cannot start because of what its output's checkpoint says (or lacks)."""


class InterruptedRunExists(RunStateError):
    """`checkpoint` holds an interrupted run; the caller must resume it or start afresh."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = Path(checkpoint)
        super().__init__(f"{checkpoint} holds an interrupted run")


class NothingToResume(RunStateError):
    def __init__(self, checkpoint: Path):
        self.checkpoint = Path(checkpoint)
        super().__init__(f"nothing to resume: no checkpoint at {checkpoint}")


class ResumeSettingsDiffer(RunStateError):
    """A resumed run continues with its saved settings; `differences` maps setting -> (saved, given)."""

    def __init__(self, differences: dict):
        self.differences = dict(differences)
        listed = ", ".join(f"{k} (saved {s!r}, given {g!r})" for k, (s, g) in self.differences.items())
        super().__init__(f"a resumed run continues with its checkpoint's settings; these differ: {listed}")


class AugmentationFailed(MlknobsError):
    """The worker making distorted training digits stopped with an error (its message says which)."""


class KnobError(MlknobsError, ValueError):
    """A name that is not one of the network's knobs: `text` as given, `problem` says why."""

    def __init__(self, text: str, problem: str):
        self.text, self.problem = text, problem
        super().__init__(f"{problem}: {text!r}")


class ImageError(MlknobsError, ValueError):
    """A user's picture could not be read or holds no digit."""


class InputError(MlknobsError, ValueError):
    """A value handed to the Python API (mlknobs.api) cannot be used: `name` says which argument,
    `problem` what is wrong (an array of the wrong shape or type, a label outside the classes)."""

    def __init__(self, name: str, problem: str):
        self.name, self.problem = name, problem
        super().__init__(problem)


class PlotError(MlknobsError):
    """A picture cannot be drawn or written (missing matplotlib, unwritable path, nothing to plot)."""


class NoStepCurves(PlotError):
    """`plot sweep --curves` on the sweep `name`, none of whose runs kept a step curve (no run logged its
    steps, and none failed: a failed run keeps its curve up to the blow-up)."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"{name} holds no step curves: no run logged its batch losses, and none failed")


class MissingExtra(MlknobsError):
    """An optional feature's packages are not installed; `extra` names the pip extra that brings them."""

    def __init__(self, feature: str, extra: str, module: str):
        self.feature, self.extra, self.module = feature, extra, module
        super().__init__(f"{feature} needs {module}, which is not installed")


class OutputError(MlknobsError):
    """An output file (model, checkpoint, picture) cannot be written where the user asked."""


class OutputBusy(OutputError):
    """Another process is writing the same output right now (it holds the output's lock, files/lock.py):
    `path`, and what the holder recorded: `pid`, `host`, `command`, `since` (each None if unknown)."""

    def __init__(self, message: str, path: Path, pid: int | None = None, host: str | None = None,
                 command: str | None = None, since: str | None = None):
        super().__init__(message)
        self.path, self.pid, self.host, self.command, self.since = path, pid, host, command, since


# --- sweeps -----------------------------------------------------------------------------------------

class SweepError(MlknobsError):
    """A sweep cannot start or go on (its folder, its files, its workers)."""


class SweepFileError(SweepError):
    """A file of a sweep folder (sweep.json, results.jsonl) cannot be used: `path` and the `problem` in words."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


class SweepFromOtherVersion(SweepFileError):
    """sweep.json was written by mlknobs `version`, whose run ids differ from this version's."""

    def __init__(self, path: Path, version: str):
        self.version = version
        super().__init__(path, f"written by mlknobs {version}, whose run ids differ from this version's")


class NoSweep(SweepError):
    """`out_dir` holds no sweep: its sweep.json is missing."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        super().__init__(f"{out_dir} holds no sweep ({self.out_dir / 'sweep.json'} is missing)")


class NoSweepToResume(NoSweep, RunStateError):
    """Resuming a sweep in `out_dir`, which holds none."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        MlknobsError.__init__(self, f"nothing to resume: {out_dir} holds no sweep "
                                    f"({self.out_dir / 'sweep.json'} is missing)")


class SweepExists(RunStateError):
    """`out_dir` already holds a sweep (`recorded` of `total` runs done); resume it or use another folder."""

    def __init__(self, out_dir: Path, recorded: int, total: int):
        self.out_dir, self.recorded, self.total = Path(out_dir), recorded, total
        super().__init__(f"{out_dir} already holds a sweep ({recorded} of {total} runs recorded)")


class SweepGridDiffers(RunStateError):
    """A resumed sweep runs its saved grid; `differences` maps setting -> (saved values, given values)."""

    def __init__(self, out_dir: Path, differences: dict):
        from mlknobs.text import values_text

        self.out_dir, self.differences = Path(out_dir), dict(differences)
        listed = "; ".join(f"{name}: saved {values_text(saved)}, given {values_text(given)}"
                           for name, (saved, given) in self.differences.items())
        super().__init__(f"{out_dir} holds a sweep over another grid ({listed})")


class SweepInterrupted(MlknobsError):
    """Ctrl-C: `recorded` of `total` runs are in results.jsonl; the others' checkpoints are kept."""

    def __init__(self, out_dir: Path, recorded: int, total: int):
        self.out_dir, self.recorded, self.total = Path(out_dir), recorded, total
        super().__init__(f"interrupted: {recorded} of {total} runs finished and are recorded in "
                         f"{self.out_dir / 'results.jsonl'}")


class SchedulerAddressError(SweepError, ValueError):
    """`address` cannot name a Dask scheduler in another process (`problem` says why): the user's words."""

    def __init__(self, address: str, problem: str):
        from mlknobs.text import one_line

        self.address, self.problem = address, problem
        super().__init__(f"scheduler address {one_line(address, 100)} {problem}")


class SweepBackendUnreachable(SweepError):
    """The sweep's workers cannot be reached: `scheduler` (None: a LocalCluster started here) and the `reason`."""

    def __init__(self, scheduler: str | None, reason: str):
        from mlknobs.text import one_line

        self.scheduler, self.reason = scheduler, reason
        where = f"the Dask scheduler at {one_line(scheduler, 100)}" if scheduler else "a local Dask cluster"
        super().__init__(f"cannot reach {where}: {reason}")


class SweepWorkerDied(SweepError):
    """A process of the local pool died (`reason`); the pool cannot say which run it held."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"a worker process died ({reason}); the runs that finished are recorded and a "
                         f"resumed sweep runs the others")
