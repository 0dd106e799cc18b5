"""The finite-loss guard: a non-finite loss skips its step and is counted; a run of them stops training cleanly."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file

import unetkit.train.trainer as trainer_module
from unetkit.config import TrainConfig
from unetkit.errors import InputError
from unetkit.train.start import train

TINY = replace(TrainConfig(), base_width=4, depth=2, patch_size=16, batch_size=2, epochs=3, budget_s=None, device="cpu",
               precision="fp32", align_outputs=False)
QUIET = dict(progress=False, say=lambda _: None)


def poison_losses(monkeypatch: pytest.MonkeyPatch, bad: Callable[[int], bool]) -> list[int]:
    """Make the training loss NaN on the calls (0-based) where `bad` is true; returns the calls made so far."""
    calls: list[int] = []
    real_get_loss = trainer_module.get_loss

    def get_loss(name: str):  # type: ignore[no-untyped-def]
        real = real_get_loss(name)

        def loss(*args, **kwargs):  # type: ignore[no-untyped-def]
            value = real(*args, **kwargs)
            calls.append(len(calls))
            return value * float("nan") if bad(len(calls) - 1) else value

        return loss

    monkeypatch.setattr(trainer_module, "get_loss", get_loss)
    return calls


def test_isolated_non_finite_losses_are_skipped_and_counted(
    toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = toy_data
    poison_losses(monkeypatch, lambda call: call in (3, 7))
    record = train(images, labels, tmp_path / "run", TINY, **QUIET)
    assert record["status"] == "finished"
    assert record["progress"]["skipped_steps"] == 2
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())  # no NaN reached the weights


def test_a_run_of_non_finite_losses_stops_naming_the_batch_and_keeps_the_last_good_weights(
    toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = toy_data
    steps_per_epoch: list[int] = []
    calls = poison_losses(monkeypatch, lambda call: bool(steps_per_epoch) and call >= steps_per_epoch[0])
    original_end = trainer_module.Trainer._end_epoch
    saved: dict[str, torch.Tensor] = {}

    def end_epoch(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original_end(self, *args, **kwargs)
        if not steps_per_epoch:  # everything after the first epoch's steps is NaN
            steps_per_epoch.append(len(calls))
            saved.update(load_file(str(tmp_path / "run" / "model.safetensors")))

    monkeypatch.setattr(trainer_module.Trainer, "_end_epoch", end_epoch)
    with pytest.raises(InputError) as caught:
        train(images, labels, tmp_path / "run", TINY, **QUIET)
    message = str(caught.value)
    assert f"{trainer_module.MAX_BAD_STEPS} steps in a row" in message
    names = message.split("last batch: ")[1].split(")")[0].split(", ")
    assert len(names) == TINY.batch_size and all(name in {p.stem for p in images.iterdir()} for name in names), message
    assert len(calls) == steps_per_epoch[0] + trainer_module.MAX_BAD_STEPS  # stopped at once, no step taken
    kept = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert kept.keys() == saved.keys() and all(torch.equal(kept[k], saved[k]) for k in kept)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["progress"]["epoch"] == 1


def test_a_round_whose_steps_were_all_skipped_does_not_end_the_run(
    toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = toy_data
    whole = replace(TINY, patch_size=None, batch_size=8, epochs=4)  # all training images in one step an epoch
    poison_losses(monkeypatch, lambda call: call == 1)  # the whole second epoch
    record = train(images, labels, tmp_path / "run", whole, **QUIET)
    assert record["status"] == "finished" and record["progress"]["epoch"] == 4
    assert record["progress"]["skipped_steps"] == 1
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[2].split(",")[4] == "nan"  # epoch 2 logged with no training loss


def test_a_non_finite_forward_pass_leaves_the_batchnorm_statistics_as_they_were(
    toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = toy_data
    real_augmented = trainer_module.Trainer._augmented
    calls: list[int] = []

    def augmented(self, batch):  # type: ignore[no-untyped-def]
        images_, labels_, weights = real_augmented(self, batch)
        calls.append(1)
        return (images_ * float("nan") if len(calls) == 3 else images_), labels_, weights

    monkeypatch.setattr(trainer_module.Trainer, "_augmented", augmented)
    record = train(images, labels, tmp_path / "run", TINY, **QUIET)
    assert record["progress"]["skipped_steps"] == 1
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    running = {k: w for k, w in weights.items() if "running" in k}
    assert running and all(torch.isfinite(w).all() for w in running.values())
