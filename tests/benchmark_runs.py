"""Run a benchmark script as a user would (its own process, the package on the path), for smoke tests."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python benchmarks/SCRIPT ARGS`; fails the test with the end of stderr when it does not exit 0."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def import_benchmark(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    """A benchmark script imported as a module (benchmarks/ on the path for this test), to test its functions."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module(name)
