"""benchmarks/diffusion.py --quick: the consistency and synthetic-pairs tables run end to end on ISBI (smoke test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_runs import run_benchmark

pytestmark = [pytest.mark.isbi, pytest.mark.slow]


def test_diffusion_quick_reports_consistency_and_both_segmentation_runs(isbi: Path, tmp_path: Path) -> None:
    result = run_benchmark("diffusion.py", "--quick", "--data", str(isbi), "--keep", str(tmp_path))
    lines = result.stdout.splitlines()
    reference = next(line for line in lines if line.startswith("real sections 25-29"))
    generated = next(line for line in lines if line.startswith("generated for their labels"))
    for line in (reference, generated):
        assert 0.0 <= float(line.split()[-1]) <= 1.0
    assert any(line.startswith("real pairs only") for line in lines)
    assert any(line.startswith("real + synthetic") for line in lines)
    record = json.loads((tmp_path / "seg-synthetic" / "run.json").read_text())
    assert record["config"]["synthetic"] == str(tmp_path / "diffusion")
    assert record["progress"]["seconds"] <= record["config"]["budget_s"] * 1.05
    assert json.loads((tmp_path / "diffusion" / "run.json").read_text())["kind"] == "diffusion"
