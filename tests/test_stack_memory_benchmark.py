"""benchmarks/stack_memory.py: a smoke run with a small stack (the figures themselves are in RESULTS.md)."""

from __future__ import annotations

import re

from benchmark_runs import run_benchmark


def test_the_benchmark_measures_each_case_and_prints_the_ratios() -> None:
    output = run_benchmark("stack_memory.py", "--quick").stdout
    cases = [line.split("  ")[0] for line in output.splitlines()[1:6]]
    assert cases == ["baseline (torch + run loaded)", "one page", "stack of 16, uncompressed", "stack of 16, deflate",
                     "stack of 16, zarr"]
    last = re.fullmatch(r"mapped_over_page=(\d+\.\d\d) compressed_over_page=(\d+\.\d\d) zarr_over_page=(\d+\.\d\d)",
                        output.strip().splitlines()[-1])
    assert last is not None and all(float(ratio) > 0 for ratio in last.groups())
