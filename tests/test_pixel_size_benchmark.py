"""benchmarks/pixel_size.py: a smoke run over ISBI with a few seconds of training."""

from __future__ import annotations

from pathlib import Path

import pytest
import tifffile
from benchmark_runs import run_benchmark


@pytest.mark.isbi
@pytest.mark.slow
def test_the_table_has_each_pixel_size_as_it_is_and_matched(isbi: Path, tmp_path: Path) -> None:
    output = run_benchmark("pixel_size.py", "--data", str(isbi), "--budget", "8s", "--keep", str(tmp_path)).stdout
    table = output[output.index("sections 25-29 at"):].splitlines()
    assert [" ".join(line.split()[:3]) for line in table[1:6]] == [
        "4 nm (training)", "8 nm as", "8 nm --match-pixel-size", "2.67 nm as", "2.67 nm --match-pixel-size"]
    assert all(0 < float(line.split()[-3]) < 1 for line in table[1:6])
    assert len(list((tmp_path / "pred-8nm-matched").glob("*.png"))) == 5
    assert tifffile.imread(tmp_path / "data-8nm" / "image" / "25.tif").shape == (256, 256)

