"""benchmarks/budget.py --quick: the quality-against-time table runs end to end on ISBI (smoke test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_runs import run_benchmark

pytestmark = [pytest.mark.isbi, pytest.mark.slow]


def test_budget_quick_prints_one_row_per_budget_and_stays_within_it(isbi: Path, tmp_path: Path) -> None:
    result = run_benchmark("budget.py", "--quick", "--data", str(isbi), "--keep", str(tmp_path))
    table = result.stdout.split("\n\n")[-2].splitlines()
    assert table[0].split()[:4] == ["recipe", "budget_s", "pixel_err", "membrane_dice"]
    assert [row.split()[:2] for row in table[1:]] == [["default", "10"], ["default", "20"]]
    for row in table[1:]:
        cells = dict(zip(table[0].split(), row.split()))
        pixel_error, rand_error, rand_thr, steps = (float(cells["pixel_err"]), float(cells["rand_err"]),
                                                    float(cells["rand_thr"]), int(cells["steps"]))
        assert 0.0 <= pixel_error <= 0.5 and 0.0 <= rand_thr <= rand_error + 0.01 <= 1.01 and steps >= 1
    for run in tmp_path.glob("run-*"):
        record = json.loads((run / "run.json").read_text())
        assert record["progress"]["seconds"] <= record["config"]["budget_s"] * 1.05
