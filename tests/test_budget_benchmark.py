"""benchmarks/budget.py --quick: the quality-against-time table runs end to end on ISBI (smoke test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.isbi, pytest.mark.slow]


def test_budget_quick_prints_one_row_per_budget_and_stays_within_it(isbi: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "budget.py"), "--quick", "--data", str(isbi), "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
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
