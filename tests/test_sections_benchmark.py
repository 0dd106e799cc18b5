"""benchmarks/isbi_sections.py: its two measures of a section, and a smoke run over ISBI with a tiny trained run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from benchmark_runs import import_benchmark, run_benchmark
from scipy import ndimage

from unetkit.demo import link_isbi_subsets
from unetkit.train.recipes import recipe
from unetkit.train.start import train

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def sections(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    return import_benchmark(monkeypatch, "isbi_sections")


def test_fine_detail_tells_raw_noise_from_a_smoothed_image(sections) -> None:  # type: ignore[no-untyped-def]
    noise = np.random.default_rng(0).normal(128, 20, (256, 256))
    # white noise spreads its power evenly: the share outside radius 3/8 of the unit square of frequencies
    assert sections.fine_detail(noise) == pytest.approx(1000 * (1 - np.pi * 0.375**2), rel=0.05)
    assert sections.fine_detail(ndimage.gaussian_filter(noise, 2)) < 1


def test_membrane_width_is_the_stroke_width(sections) -> None:  # type: ignore[no-untyped-def]
    membrane = np.zeros((128, 128), dtype=bool)
    membrane[30:35, 10:118] = True  # a 5-pixel stroke
    membrane[80:87, 10:118] = True  # a 7-pixel one: together 6 on average
    assert sections.membrane_width(membrane) == pytest.approx(6, rel=0.05)


@pytest.mark.isbi
@pytest.mark.slow
def test_sections_table_covers_every_section_and_the_run(isbi: Path, tmp_path: Path) -> None:
    train_dir, _ = link_isbi_subsets(isbi, tmp_path / "data")
    config = replace(recipe("default"), budget_s=8.0, epochs=None, base_width=8, patch_size=64, batch_size=2)
    train(train_dir / "image", train_dir / "label", tmp_path / "run", config, progress=False, say=lambda _: None,
          fixed=frozenset({"base_width", "patch_size", "batch_size"}))
    output = run_benchmark("isbi_sections.py", "--data", str(isbi), "--run", str(tmp_path / "run")).stdout
    lines = output.splitlines()
    assert lines[0].split() == ["section", "fine", "membrane", "width_px", "err_0", "bias_0"]
    rows = [line.split() for line in lines[1:31]]
    assert [int(row[0]) for row in rows] == list(range(30))
    errors = [float(row[4]) for row in rows]
    assert all(0 < error < 1 for error in errors)  # 8 s of training on a busy machine may leave a section at 0.5+
    assert "validation sections 20-24" in output and "(oracle)" in output


@pytest.mark.parametrize("script,args", [("budget.py", ["--quick"]), ("variants.py", ["--quick"]),
                                         ("isbi_sections.py", ["--run", "."]), ("pixel_size.py", ["--budget", "5s"])])
def test_a_wrong_data_folder_is_one_line_and_exit_2(script: str, args: list[str], tmp_path: Path) -> None:
    """A traceback ending in InputError (or FileNotFoundError) and exit 1 (audit)."""
    import subprocess
    import sys

    from benchmark_runs import REPO

    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--data", str(tmp_path / "nonexist"), *args],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "nonexist" in lines[0], result.stderr[-1500:]
