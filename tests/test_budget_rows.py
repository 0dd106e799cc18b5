"""benchmarks/budget.py keeps the latest row of each recipe and budget, so rerunning one recipe keeps the other's."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def budget(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("budget")


def row(date: str, recipe: str, seconds: str, error: str) -> dict[str, str]:
    return {"date": date, "recipe": recipe, "budget_s": seconds, "pixel_err": error}


def test_new_rows_replace_the_same_recipe_and_budget_and_keep_the_rest(budget, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    old = [row("d1", "default", "120", "0.08"), row("d1", "default", "600", "0.07"),
           row("d1", "seed", "120", "0.2"), row("d1", "seed", "600", "0.1")]
    new = [row("d2", "default", "1200", "0.06"), row("d2", "default", "600", "0.05")]
    merged = budget.merge_rows(old, new)
    assert [(r["recipe"], r["budget_s"], r["date"]) for r in merged] == [
        ("default", "120", "d1"), ("default", "600", "d2"), ("default", "1200", "d2"), ("seed", "120", "d1"), ("seed", "600", "d1")]
    assert merged[1]["pixel_err"] == "0.05"
    budget.write_rows(tmp_path / "rows.csv", merged)
    assert budget.read_rows(tmp_path / "rows.csv") == merged
    assert budget.read_rows(tmp_path / "missing.csv") == []


def test_rows_with_a_newer_column_are_written_beside_older_rows(budget, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = [row("d1", "seed", "120", "0.2"), {**row("d2", "default", "120", "0.07"), "rand_thr": "0.02"}]
    budget.write_rows(tmp_path / "rows.csv", rows)
    read = budget.read_rows(tmp_path / "rows.csv")
    assert [r["rand_thr"] for r in read] == ["", "0.02"] and [r["pixel_err"] for r in read] == ["0.2", "0.07"]
