"""benchmarks/compare.py --quick: the equal-budget comparison runs end to end on ISBI (smoke test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_runs import run_benchmark

pytestmark = [pytest.mark.isbi, pytest.mark.slow]


def test_compare_quick_prints_one_row_per_model(isbi: Path) -> None:
    result = run_benchmark("compare.py", "--quick", "--data", str(isbi))
    table = result.stdout.split("\n\n")[-2].splitlines()
    assert table[0].split()[:3] == ["model", "pixel_err", "membrane_dice"]
    assert len(table) == 5  # header + seed, default, paper, fcn8s
    for row in table[1:]:
        rand_error = float(row.split()[-7])
        assert 0.0 <= rand_error <= 1.0
