"""docs/lessons.md stays true: every command in it runs, in order, in one folder, on real MNIST, with
the exit code the page states ("# exits 1") and in under two minutes; every figure its prose states
is the one the run measures (CLAIMS); every picture it links exists.

Tolerance: a figure agrees when it is within one unit of the last digit the page shows (87.97 %
admits 87.96 to 87.98; 0.002 admits 0.001 to 0.003), so the page's own rounding passes and any
real change fails. Whole numbers that are counts (knobs, an epoch, digits) must be equal. Timings
("14.1 s of training") are not checked: the machine is shared.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest

LESSONS = Path(__file__).resolve().parents[1] / "docs" / "lessons.md"
MLKNOBS = Path(sys.executable).parent / "mlknobs"
LIMIT_SECONDS = 120
FIGURE = r"(-?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?)"      # 8.23, 12,730, -0.008642157812, 2.4e-7


def lesson_commands(text: str) -> list[tuple[str, int]]:
    """(command, expected exit code) for every `mlknobs ...` line of the page's bash blocks."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith("mlknobs "):
                command, _, comment = line.partition("#")
                expected = re.match(r"\s*exits (\d+)", comment)
                commands.append((command.strip(), int(expected.group(1)) if expected else 0))
    return commands


def prose(text: str) -> str:
    """The page without its bash blocks, every run of whitespace one space (sentences wrap anywhere)."""
    return " ".join(re.sub(r"```bash\n.*?```", " ", text, flags=re.S).split())


def figures_in(text: str, pattern: str) -> list[str]:
    """The figures `pattern` (FIGURE where each stands, the rest literal) finds once in `text`."""
    parts = pattern.split("{}")
    found = re.findall(FIGURE.join(re.escape(part) for part in parts), text)
    assert len(found) == 1, f"{pattern!r} is {len(found)} times in the text, not once"
    return list(found[0]) if isinstance(found[0], tuple) else [found[0]]


def number(figure: str) -> float:
    return float(figure.replace(",", ""))


def agrees(stated: str, measured: float | int) -> bool:
    """Within one unit of the stated figure's last digit; a count (an int measured) exactly."""
    if isinstance(measured, int | np.integer):
        return number(stated) == measured
    mantissa, _, exponent = stated.lower().partition("e")
    unit = 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))
    return abs(number(stated) - measured) <= unit * (1 + 1e-9)


# --- what the run measures: the commands' output and the files they leave --------------------------

@dataclass
class Ran:
    """The page's commands, run in `folder`: (command, exit code, stdout, stderr) in page order."""

    folder: Path
    data_dir: Path
    runs: list[tuple[str, int, str, str]]

    def output(self, *fragments: str) -> str:
        """stdout and stderr of the one command containing every fragment."""
        [(out, err)] = [(out, err) for command, _, out, err in self.runs if all(f in command for f in fragments)]
        return out + err

    def printed(self, pattern: str, *fragments: str) -> list[float]:
        """The figures a command printed where `pattern` has {} (see figures_in)."""
        return [number(f) for f in figures_in(" ".join(self.output(*fragments).split()), pattern)]

    def model(self, name: str):
        from mlknobs.io.modelfile import load_model

        return load_model(self.folder / name)

    def accuracy(self, name: str) -> float:
        """A saved model's test accuracy in %."""
        return self.model(name).results["test_accuracy"] * 100

    def saturation(self, name: str) -> tuple[float, float, float]:
        """As `plot activations` measures it: (% of activations saturated, % of units saturated, mean slope)."""
        return _saturation(self.folder / name, self.data_dir)


@cache
def _saturation(path: Path, data_dir: Path) -> tuple[float, float, float]:
    from mlknobs.data.splits import load_split
    from mlknobs.io.modelfile import load_model
    from mlknobs.viz.activations import DIGITS, hidden_z1, saturation

    test = load_split("mnist", "test", data_dir, progress=False)
    z1 = hidden_z1(load_model(path), test.images[:DIGITS])
    share, unit_share = saturation(z1)
    a1 = 1 / (1 + np.exp(-np.clip(z1, -500, 500)))
    return share * 100, unit_share * 100, float(np.mean(a1 * (1 - a1)))


def _knob_difference(ran: Ran) -> float:
    nudged, backprop = ran.model("nudge.npz").params, ran.model("backprop.npz").params
    return max(float(np.abs(array - getattr(backprop, name)).max()) for name, array in nudged.arrays().items())


def _units(name: str, ran: Ran) -> int:
    """How many of the model's hidden units are saturated (on at least MOSTLY of the digits)."""
    return round(ran.saturation(name)[1] / 100 * ran.model(name).params.hidden_size)


def _best_validation(ran: Ran) -> list:
    history = ran.model("small-data.npz").history
    best = min(history, key=lambda entry: entry["val_loss"])
    return [best["epoch"], best["val_loss"], history[-1]["val_loss"]]


def _constants() -> list:
    from mlknobs.viz.activations import DIGITS, MOSTLY, SATURATED_SLOPE, SATURATED_Z

    return [DIGITS, SATURATED_SLOPE, SATURATED_Z, MOSTLY * 100]


EXPLAIN_KNOB = ("explain", "--knob")
EXPLAIN_STEP = ("explain", "--lr 0.5")


@dataclass(frozen=True)
class Claim:
    """Figures the page states, at each {} of `page` (a sentence of its prose), and what the run
    measured for them, in order."""

    name: str
    page: str
    measure: Callable[[Ran], list]


CLAIMS = [
    # 1. one nudge
    Claim("explain: the label's probability and the loss",
          "gives the label {} % and the loss is {}. Moving",
          lambda r: [*r.printed("{} % <- label", *EXPLAIN_KNOB), *r.printed("Loss = -log a2[label] = {}", *EXPLAIN_KNOB)]),
    Claim("explain: the nudged losses and the two slopes",
          "L(w + h) = {}, L(w - h) = {}, so the slope is (L(w+h) - L(w-h)) / 2h = {}; backprop's chain rule "
          "(printed step by step above it) gives {}:",
          lambda r: [*r.printed("L(w + h) = {}", *EXPLAIN_KNOB), *r.printed("L(w - h) = {}", *EXPLAIN_KNOB),
                     *r.printed("(L(w + h) - L(w - h)) / 2h = {}", *EXPLAIN_KNOB),
                     *r.printed("backprop slope = {}", *EXPLAIN_KNOB)]),
    Claim("explain: the slopes' relative difference",
          "relative difference {}. ##", lambda r: r.printed("relative difference {} (they agree)", *EXPLAIN_KNOB)),
    # 2. nudging versus backprop
    Claim("nudge: test accuracy and loss", "Both end at test accuracy **{} %** with test loss {}:",
          lambda r: r.printed("test accuracy {} % (loss {},", "--gradients nudge")),
    Claim("backprop: test accuracy and loss", "Both end at test accuracy **{} %** with test loss {}:",
          lambda r: r.printed("test accuracy {} % (loss {},", "--gradients backprop")),
    Claim("nudge and backprop: their knobs' largest difference", "their knobs differ by at most {}, float32",
          lambda r: [_knob_difference(r)]),
    Claim("nudge: knobs and loss evaluations a step", "the {} knobs cost {} loss evaluations a step",
          lambda r: [int(r.model("nudge.npz").params.flat.size), 2 * int(r.model("nudge.npz").params.flat.size)]),
    # 3. one step
    Claim("explain --lr 0.5: the loss before and after", "The loss of that 7 falls from {} to {} and",
          lambda r: r.printed("loss {} -> {}", *EXPLAIN_STEP)),
    Claim("explain --lr 0.5: P(7) before and after", "P(7) rises from {} % to {} %;",
          lambda r: r.printed("P(label 7) {} % -> {} %", *EXPLAIN_STEP)),
    Claim("explain --lr 0.5: the first-order prediction", "the sum of the {} squared slopes = {})",
          lambda r: [int(n) if i == 0 else n for i, n in
                     enumerate(r.printed("(sum of all {} squared slopes) = {}", *EXPLAIN_STEP))]),
    # 4. learning rates
    Claim("learning rates: test accuracies", "Test accuracy {} % at 0.05 (slow), {} % at 0.5, {} % at 3",
          lambda r: [r.accuracy("lr0.05.npz"), r.accuracy("lr0.5.npz"), r.accuracy("lr3.npz")]),
    # 5. loss functions
    Claim("squared error versus cross-entropy", "3 epochs of plain SGD: {} % with the squared error "
          "(Nielsen's lr 3), {} % with cross-entropy", lambda r: [r.accuracy("mse.npz"), r.accuracy("ce.npz")]),
    # 6. saturation
    Claim("saturation: how plot activations counts", "of the hidden activations over {} test digits have a slope "
          "below {} (|z1| > {}) and all 32 units are saturated on at least {} % of the digits", lambda r: _constants()),
    Claim("saturation at lr 3", "With lr 3, {} % of the hidden activations", lambda r: [r.saturation("lr3.npz")[0]]),
    Claim("saturation at lr 3: units and mean slope", "all {} units are saturated on at least 90 % of the digits; "
          "mean slope {}.", lambda r: [_units("lr3.npz", r), r.saturation("lr3.npz")[2]]),
    Claim("saturation at lr 0.5", "With lr 0.5: {} %, {} % of the units, mean slope {} (",
          lambda r: list(r.saturation("lr0.5.npz"))),
    Claim("init-scale 10", "`--init-scale 10` ends at {} % instead of {} %, {} % of its units saturated",
          lambda r: [r.accuracy("init10.npz"), r.accuracy("lr0.5.npz"), r.saturation("init10.npz")[1]]),
    # 7. input scaling
    Claim("raw pixels collapse", "collapse in the first epoch ({} % train accuracy",
          lambda r: r.printed("collapsed in epoch 1: train accuracy {} %", "--input-scaling raw --hidden-size")),
    Claim("raw pixels, smaller rate and weights", "as large train, to {} %, against {} % for the same network",
          lambda r: [r.accuracy("raw-small.npz"), r.accuracy("lr0.5.npz")]),
    # 8. overfitting
    Claim("overfitting: the last epoch", "After {} epochs it gets {} % of them right (training loss {}) but {} % of "
          "the validation digits", lambda r: [len(h := r.model("small-data.npz").history), h[-1]["train_accuracy"] * 100,
                                             h[-1]["train_loss"], h[-1]["val_accuracy"] * 100]),
    Claim("overfitting: the validation loss", "the validation loss was lowest at epoch {} ({}) and has crept up "
          "since ({})", _best_validation),
    Claim("overfitting: test accuracy", "Test accuracy: {} % (", lambda r: [r.accuracy("small-data.npz")]),
    # 9. distorted digits
    Claim("distorted digits", "On 2,000 digits: {} % clean, {} % with distortions",
          lambda r: [r.accuracy("clean.npz"), r.accuracy("augmented.npz")]),
]


def test_the_page_is_parsed_into_its_commands():
    commands = lesson_commands(LESSONS.read_text())
    assert len(commands) >= 15
    assert ("mlknobs train --input-scaling raw --hidden-size 32 --train-size 5000 --epochs 3 --out raw.npz", 1) \
        in commands


def test_every_claim_is_in_the_page_once_and_the_figures_are_compared_within_one_unit():
    text = prose(LESSONS.read_text())
    for claim in CLAIMS:
        figures_in(text, claim.page)
    assert agrees("87.97", 87.9749) and agrees("87.97", 87.96) and not agrees("87.97", 87.9501)
    assert agrees("2.4e-7", 2.384e-7) and not agrees("2.4e-7", 2.29e-7) and agrees("12,730", 12730)
    assert not agrees("19", 18) and agrees("3", 3.125)        # a count exactly, a rounded percentage by a unit


def test_every_picture_the_page_links_exists():
    for target in re.findall(r"\]\(([^)]+\.png)\)", LESSONS.read_text()):
        assert (LESSONS.parent / target).is_file(), target


@pytest.fixture(scope="module")
def ran(mnist_data_dir, shared_data, tmp_path_factory) -> Ran:
    """Every command of the page, in order, in one folder; each with the exit code the page states,
    no traceback, in under LIMIT_SECONDS."""
    folder = tmp_path_factory.mktemp("lessons")
    env = {**os.environ, "MLKNOBS_DATA_DIR": str(mnist_data_dir), "MLKNOBS_MIRROR": str(shared_data),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    runs = []
    for command, expected in lesson_commands(LESSONS.read_text()):
        started = time.perf_counter()
        done = subprocess.run([str(MLKNOBS), *shlex.split(command)[1:]], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=LIMIT_SECONDS)
        assert done.returncode == expected, (command, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, command
        assert time.perf_counter() - started < LIMIT_SECONDS, command
        runs.append((command, done.returncode, done.stdout, done.stderr))
    return Ran(folder, mnist_data_dir, runs)


@pytest.mark.real_data
def test_every_lesson_command_runs_as_the_page_says(ran):
    assert (ran.folder / "lr100.diverged.json").is_file() and (ran.folder / "lesson-overfitting.png").is_file()


@pytest.mark.real_data
def test_the_runs_the_page_says_collapse_collapse_in_their_first_epoch(ran):
    text = prose(LESSONS.read_text())
    assert 'at 100 the run collapses in its first epoch ("the hidden sigmoids are saturated", exit 1)' in text
    assert "Raw pixels at the default rate collapse in the first epoch" in text
    for fragments in (("--lr 100 ",), ("--input-scaling raw --hidden-size",)):
        assert "training collapsed in epoch 1:" in ran.output(*fragments)
    assert "the hidden sigmoids are saturated" in ran.output("--lr 100 ")


@pytest.mark.real_data
@pytest.mark.parametrize("claim", CLAIMS, ids=[claim.name for claim in CLAIMS])
def test_the_page_states_the_figures_the_run_measures(ran, claim):
    stated = figures_in(prose(LESSONS.read_text()), claim.page)
    measured = claim.measure(ran)
    assert len(measured) == len(stated)
    wrong = [(page, run) for page, run in zip(stated, measured, strict=True) if not agrees(page, run)]
    assert not wrong, f"{claim.name}: the page states / the run measured {wrong}"
