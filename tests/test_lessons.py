"""docs/lessons.md stays true: every command in it runs, in order, in one folder, on real MNIST, with
the exit code the page states ("# exits 1") and in under two minutes; every picture it links exists."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

LESSONS = Path(__file__).resolve().parents[1] / "docs" / "lessons.md"
MLKNOBS = Path(sys.executable).parent / "mlknobs"
LIMIT_SECONDS = 120


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


def test_the_page_is_parsed_into_its_commands():
    commands = lesson_commands(LESSONS.read_text())
    assert len(commands) >= 15
    assert ("mlknobs train --input-scaling raw --hidden-size 32 --train-size 5000 --epochs 3 --out raw.npz", 1) \
        in commands


def test_every_picture_the_page_links_exists():
    for target in re.findall(r"\]\(([^)]+\.png)\)", LESSONS.read_text()):
        assert (LESSONS.parent / target).is_file(), target


@pytest.mark.real_data
def test_every_lesson_command_runs_as_the_page_says(mnist_data_dir, shared_data, tmp_path):
    env = {**os.environ, "MLKNOBS_DATA_DIR": str(mnist_data_dir), "MLKNOBS_MIRROR": str(shared_data),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    for command, expected in lesson_commands(LESSONS.read_text()):
        started = time.perf_counter()
        done = subprocess.run([str(MLKNOBS), *shlex.split(command)[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=LIMIT_SECONDS)
        assert done.returncode == expected, (command, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, command
        assert time.perf_counter() - started < LIMIT_SECONDS, command
    assert (tmp_path / "lr100.diverged.json").is_file() and (tmp_path / "lesson-overfitting.png").is_file()
