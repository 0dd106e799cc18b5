"""benchmarks/variants.py --quick: the default and a variant with a fixed field train and score on ISBI (smoke test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_runs import run_benchmark

pytestmark = [pytest.mark.isbi, pytest.mark.slow]


def test_variants_quick_fixes_the_variant_field_and_plans_the_rest(isbi: Path, tmp_path: Path) -> None:
    result = run_benchmark("variants.py", "--quick", "--tta", "--data", str(isbi), "--keep", str(tmp_path),
                           "--variant", 'narrow={"base_width": 8}')
    table = result.stdout.split("\n\n")[-2].splitlines()
    assert [row.split()[:2] for row in table[1:]] == [["plan", "no"], ["plan", "yes"], ["narrow", "no"], ["narrow", "yes"]]
    planned = json.loads((tmp_path / "run-plan" / "run.json").read_text())
    narrow = json.loads((tmp_path / "run-narrow" / "run.json").read_text())
    assert narrow["config"]["base_width"] == 8 and narrow["plan"]["fixed_by_user"] == ["base_width"]
    assert planned["plan"]["fixed_by_user"] == [] and planned["config"]["patch_size"] == narrow["config"]["patch_size"]
