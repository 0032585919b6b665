"""scripts/bench.py starts and parses its options without the benchmark extras (torch, scikit-learn).

The benchmark itself takes minutes and its timings depend on the machine, so it is run by hand
(python scripts/bench.py --quick), never here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=60)


def test_help_exits_zero_and_lists_the_options():
    result = run_bench("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--quick", "--epochs", "--hidden-sizes", "--threads", "--contenders", "--mirror",
                   "--data-dir", "--out-json"):
        assert option in result.stdout


def test_unknown_contender_is_a_usage_error_naming_it():
    result = run_bench("--contenders", "mlknobs,tensorflow")
    assert result.returncode == 2
    assert "unknown contender tensorflow" in result.stderr
