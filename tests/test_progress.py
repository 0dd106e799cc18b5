"""The training bar: seconds of a budget without a meaningless rate, steps of a step count."""

from __future__ import annotations

import pytest

from unetkit.progress import TrainingBar


def test_a_budgeted_bar_counts_seconds_and_shows_no_rate(capsys: pytest.CaptureFixture[str]) -> None:
    bar = TrainingBar(steps=None, budget_s=10, progress=True)
    bar.step(3.7, loss="0.5000")
    bar.clock(6.2)  # validation took time: the bar moves without a step
    bar.close()
    drawn = capsys.readouterr().err
    assert "6/10 s" in drawn
    assert "s/s" not in drawn and "it/s" not in drawn


def test_a_step_bar_counts_steps_and_ignores_the_clock(capsys: pytest.CaptureFixture[str]) -> None:
    bar = TrainingBar(steps=4, budget_s=600, done=1, progress=True)
    bar.step(100.0, loss="0.5000")
    bar.clock(300.0)
    bar.close()
    drawn = capsys.readouterr().err
    assert "2/4" in drawn and "step" in drawn


def test_a_quiet_bar_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    bar = TrainingBar(steps=None, budget_s=10, progress=False)
    bar.step(5.0)
    bar.close()
    assert capsys.readouterr().err == ""
