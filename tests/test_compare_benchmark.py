"""benchmarks/compare.py --quick: the equal-budget comparison runs end to end on ISBI (smoke test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.isbi, pytest.mark.slow]


def test_compare_quick_prints_one_row_per_model(isbi: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "compare.py"), "--quick", "--data", str(isbi)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout.split("\n\n")[-2].splitlines()
    assert table[0].split()[:3] == ["model", "pixel_err", "membrane_dice"]
    assert len(table) == 5  # header + seed, default, paper, fcn8s
    for row in table[1:]:
        rand_error = float(row.split()[-7])
        assert 0.0 <= rand_error <= 1.0
