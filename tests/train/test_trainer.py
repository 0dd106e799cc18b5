"""Training: a tiny model overfits, an interrupted run resumes to the same weights, budgets stop in time."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit.config import TrainConfig
from unetkit.errors import InputError
from unetkit.train import trainer as trainer_module
from unetkit.train.checkpoint import RESUME_DIR, RESUME_FILE, load_tensors
from unetkit.train.start import describe_result, resume, train

TINY = TrainConfig(
    base_width=8, depth=2, lr=1e-2, batch_size=2, patch_size=None, epochs=4, budget_s=None,
    augment="none", loss="ce", schedule="constant", device="cpu",
)


def log_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def slow_down(monkeypatch: pytest.MonkeyPatch, name: str, seconds: float) -> None:
    """Make the trainer's `name` (validate, save_resume_state, ...) take `seconds` longer."""
    import time

    real = getattr(trainer_module, name)

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, name, slow)


def two_images(toy_data: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    images, labels = toy_data
    for folder in (images, labels):
        for extra in ("2", "3", "4", "5"):
            (folder / f"{extra}.png").unlink()
    return images, labels


def test_tiny_model_overfits_two_images(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = two_images(toy_data, tmp_path)
    config = replace(TINY, epochs=60)
    losses: list[float] = []
    original = trainer_module.Trainer._step

    def recording_step(self, *args):  # type: ignore[no-untyped-def]
        loss = original(self, *args)
        losses.append(loss)
        return loss

    trainer_module.Trainer._step = recording_step
    try:
        import shutil  # the same pictures, scored as validation: copies (the same files are refused as such)

        val_images, val_labels = shutil.copytree(images, tmp_path / "val_image"), shutil.copytree(labels, tmp_path / "val_label")
        train(images, labels, tmp_path / "run", config, val_images=val_images, val_labels=val_labels, progress=False,
              say=lambda _: None)
    finally:
        trainer_module.Trainer._step = original
    assert len(losses) == 60
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])
    assert float(log_rows(tmp_path / "run")[-1]["val_dice"]) > 0.9


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    """The model's weights and, with --ema, the weight average, from the resume state."""
    tensors, _ = load_tensors(run / RESUME_DIR / RESUME_FILE)
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "ema."))}


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_interrupted_run_resumes_from_its_saved_step_to_the_same_weights(
    toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ema: float
) -> None:
    images, labels = toy_data
    config = replace(TINY, patch_size=16, batch_size=2, augment="default", schedule="cosine", ema=ema)
    quiet = dict(progress=False, say=lambda _: None)
    train(images, labels, tmp_path / "whole", config, **quiet)

    original = trainer_module.Trainer._save_state

    def save_then_die(self):  # type: ignore[no-untyped-def]
        original(self)
        if self.counters.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.Trainer, "_save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(images, labels, tmp_path / "cut", config, **quiet)
    monkeypatch.setattr(trainer_module.Trainer, "_save_state", original)
    rows = log_rows(tmp_path / "cut")
    assert [r["epoch"] for r in rows] == ["1", "2"]

    resume(tmp_path / "cut", **quiet)
    whole, cut = log_rows(tmp_path / "whole"), log_rows(tmp_path / "cut")
    assert [r["step"] for r in cut] == [r["step"] for r in whole]  # steps continue from the saved one
    assert [r["train_loss"] for r in cut] == [r["train_loss"] for r in whole]
    expected, got = final_weights(tmp_path / "whole"), final_weights(tmp_path / "cut")
    assert expected.keys() == got.keys()
    assert any(k.startswith("ema.") for k in expected) == bool(ema)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_budget_stops_training_in_time(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    import time

    images, labels = toy_data
    config = replace(TINY, epochs=None, budget_s=3.0, patch_size=16)
    started = time.monotonic()
    record = train(images, labels, tmp_path / "run", config, progress=False, say=lambda _: None)
    assert time.monotonic() - started < 3.0 + 2.5  # + reading data and building the model
    assert record["status"] == "finished"
    assert len(log_rows(tmp_path / "run")) >= 2  # several validations within one budget
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_a_planned_run_stays_within_five_percent_of_its_budget(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    """The clock starts when train() is called: reading, planning, validation, saving and plotting all count."""
    import time

    from unetkit.train.recipes import recipe

    images, labels = toy_data
    budget = 12.0
    lines: list[str] = []
    started = time.monotonic()
    record = train(images, labels, tmp_path / "run", replace(recipe("default"), budget_s=budget, device="cpu"),
                   progress=False, say=lines.append)
    assert time.monotonic() - started <= budget * 1.05
    assert record["status"] == "finished"
    plan = record["plan"]
    assert plan["patch_size"] <= 32 and record["config"]["patch_size"] == plan["patch_size"]  # 32 x 32 images
    assert plan["machine"]["macs_per_s"] > 0 and plan["data"]["images"] == 5
    assert any(line.startswith("plan (") for line in lines)


def test_a_planned_run_stopped_by_epochs_says_the_steps_it_will_take(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    """--epochs 3 printed "plan (40002 steps ...)", the steps of a 10-minute budget, and ran a handful."""
    from unetkit.train.recipes import recipe

    images, labels = toy_data
    lines: list[str] = []
    record = train(images, labels, tmp_path / "run", replace(recipe("default"), epochs=3, budget_s=None, device="cpu"),
                   progress=False, say=lines.append)
    announced = int(next(line for line in lines if line.startswith("plan (")).split("(")[1].split()[0])
    assert announced == record["progress"]["step"] == 3 * int(next(m.group(1) for l in lines if (m := re.search(r"(\d+) steps?/epoch", l))))
    assert not any("fit the budget" in line for line in lines)


def test_a_run_stopped_by_epochs_is_planned_without_timing_the_machine_so_it_repeats(
    toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--epochs 6 --seed 3` twice built width 32 and width 24: the plan followed how busy the machine was."""
    from unetkit.train import fingerprint
    from unetkit.train.recipes import recipe

    def no_probe(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("an --epochs run timed the machine")

    monkeypatch.setattr(fingerprint, "measure_training_rate", no_probe)
    images, labels = toy_data
    config = replace(recipe("default"), epochs=1, budget_s=None, device="cpu", seed=3)
    first = train(images, labels, tmp_path / "a", config, progress=False, say=lambda _: None)
    second = train(images, labels, tmp_path / "b", config, progress=False, say=lambda _: None)
    assert first["config"] == second["config"] and first["plan"]["machine"]["macs_per_s"] == fingerprint.REFERENCE_RATE["cpu"]
    weights_a, _ = load_tensors(tmp_path / "a" / "model.safetensors")
    weights_b, _ = load_tensors(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)


def test_slow_validation_takes_a_bounded_share_of_the_budget(
    toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big model's validation can cost many steps: the rounds grow so that it cannot eat the budget."""
    import time

    real_validate = trainer_module.validate
    spent: list[float] = []

    def slow_validate(*args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.monotonic()
        time.sleep(0.5)
        scores = real_validate(*args, **kwargs)
        spent.append(time.monotonic() - started)
        return scores

    monkeypatch.setattr(trainer_module, "validate", slow_validate)
    images, labels = toy_data
    budget = 8.0
    train(images, labels, tmp_path / "run", replace(TINY, epochs=None, budget_s=budget, patch_size=16),
          progress=False, say=lambda _: None)
    # Every tenth of the budget (0.8 s) would mean about 10 x 0.5 s = 5 s of 8 s validating.
    # With the share capped at 15 %, the rounds after the first last >= 0.5 * 0.85 / 0.15 = 2.8 s.
    assert 1 <= len(spent) <= 4
    assert sum(spent[1:]) / budget <= 0.3


def test_seed_rule_keeps_the_lowest_training_loss(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = toy_data
    config = replace(TINY, select_by="train_loss", single_logit=True, loss="bce", epochs=3)
    record = train(images, labels, tmp_path / "run", config, progress=False, say=lambda _: None)
    best = record["metrics"]["best"]
    assert best["selected_by"] == "train_loss"
    assert "val_dice" not in best  # validation scores belong to the last model, not to the kept weights
    assert best["train_loss"] <= min(float(r["train_loss"]) for r in log_rows(tmp_path / "run"))  # a single batch's low
    assert record["model"]["options"]["num_classes"] == 1


def test_seed_rule_keeps_the_weights_that_scored_the_lowest_loss_not_those_after_their_update(
    toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept weights were copied after the optimiser step: one update past the ones the loss was measured on."""
    images, labels = toy_data
    config = replace(TINY, select_by="train_loss", single_logit=True, loss="bce", epochs=3)
    seen: list[tuple[float, dict[str, torch.Tensor]]] = []
    original = trainer_module.Trainer._step

    def recording_step(self, *args):  # type: ignore[no-untyped-def]
        before = {name: p.detach().clone() for name, p in self.model.named_parameters()}
        loss = original(self, *args)
        seen.append((loss, before))
        return loss

    monkeypatch.setattr(trainer_module.Trainer, "_step", recording_step)
    train(images, labels, tmp_path / "run", config, progress=False, say=lambda _: None)
    lowest_loss, expected = min(seen, key=lambda pair: pair[0])
    saved, _ = load_tensors(tmp_path / "run" / "model.safetensors")
    for name, tensor in expected.items():
        assert torch.equal(saved[name], tensor), name


def test_existing_run_folder_is_not_overwritten(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = toy_data
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="exists and is not empty; choose a new --out$"):  # not a run: no --resume
        train(images, labels, tmp_path / "run", TINY, progress=False)
    assert (tmp_path / "run" / "precious.txt").read_text() == "keep me"
    (tmp_path / "run" / "run.json").write_text("{}")
    with pytest.raises(InputError, match=f"continue it with --resume {tmp_path / 'run'}"):
        train(images, labels, tmp_path / "run", TINY, progress=False)


def test_classic_unet_trains_with_border_weights_and_predicts_full_size(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    """The paper's recipe on a tiny scale: valid network, weighted CE, elastic augmentation, mirrored margins."""
    from unetkit.predict_files import predict_paths
    from unetkit.train.recipes import recipe

    images, labels = toy_data
    config = replace(recipe("paper"), base_width=4, depth=2, patch_size=45, epochs=3, budget_s=None, lr=1e-2, device="cpu")
    record = train(images, labels, tmp_path / "run", config, progress=False, say=lambda _: None)
    assert record["model"]["name"] == "unet-classic"
    assert len(log_rows(tmp_path / "run")) == 3
    masks = predict_paths(tmp_path / "run", [images], tmp_path / "pred", progress=False, say=lambda _: None)
    from unetkit.data.io import read_pages

    for mask in masks:
        array = read_pages(mask, labels=True)[0][0]
        assert array.shape == (32, 32)  # the valid network's output covers the whole image
        assert set(np.unique(array).tolist()) <= {0, 255}


def test_valid_network_without_patches_is_a_clear_error(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = toy_data
    config = replace(TINY, model="unet-classic", patch_size=None)
    with pytest.raises(InputError, match="--patch-size"):
        train(images, labels, tmp_path / "run", config, progress=False, say=lambda _: None)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_fcn_baseline_trains_and_predicts_through_the_run(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    from unetkit.predict_files import predict_paths

    images, labels = toy_data
    config = replace(TINY, model="fcn8s", base_width=4, patch_size=32, batch_size=4, epochs=2)
    record = train(images, labels, tmp_path / "run", config, progress=False, say=lambda _: None)
    assert record["model"] == {"name": "fcn8s", "options": {"in_channels": 1, "num_classes": 2, "base_width": 4}}
    masks = predict_paths(tmp_path / "run", [images], tmp_path / "pred", progress=False, say=lambda _: None)
    assert len(masks) == 6
    lines: list[str] = []  # under the default (planning) recipe: says that it is not planned, and run.json agrees
    from unetkit.train.recipes import recipe

    record = train(images, labels, tmp_path / "run2", replace(recipe("default"), model="fcn8s", epochs=1, budget_s=None),
                   progress=False, say=lines.append)
    assert any(line.startswith("no plan: ") and "--model fcn8s" in line for line in lines), lines
    assert record["config"]["plan"] is False and "plan" not in record
    assert record["config"]["depth"] is None  # the recipe's depth 4 was recorded for a network of five VGG blocks


def test_resume_with_more_epochs_extends_a_budgeted_run(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = toy_data
    train(images, labels, tmp_path / "run", replace(TINY, epochs=None, budget_s=1.0), progress=False, say=lambda _: None)
    done = len(log_rows(tmp_path / "run"))
    record = resume(tmp_path / "run", epochs=done + 3, progress=False, say=lambda _: None)
    assert len(log_rows(tmp_path / "run")) == done + 3  # the old budget no longer stops it
    assert record["config"]["budget_s"] is None


def test_a_run_stopped_before_its_first_save_counts_its_loading_when_it_starts_again(
        toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review: such a resume started the budget's clock at 0 after reading the data, so a 3 s read ran an 8 s
    budget 36 % over; a new run and a resume with saved state count it."""
    import time

    from unetkit.train import start as start_module

    images, labels = toy_data
    config = replace(TINY, epochs=None, budget_s=30.0, patch_size=16)

    def killed(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # in the first validation: before any resume state is saved

    with monkeypatch.context() as patched:
        patched.setattr(trainer_module, "validate", killed)
        with pytest.raises(KeyboardInterrupt):
            train(images, labels, tmp_path / "run", config, progress=False, say=lambda _: None)
    assert not (tmp_path / "run" / RESUME_DIR / RESUME_FILE).exists()
    real_prepare = start_module.prepare_training_data

    def slow_prepare(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(1.0)  # a slow share or large images
        return real_prepare(*args, **kwargs)

    clock_at_start: list[float] = []

    def first_step_clock(self) -> None:  # type: ignore[no-untyped-def]
        clock_at_start.append(self.counters.elapsed_s)

    monkeypatch.setattr(start_module, "prepare_training_data", slow_prepare)
    monkeypatch.setattr(trainer_module.Trainer, "run", first_step_clock)
    lines: list[str] = []
    resume(tmp_path / "run", progress=False, say=lines.append)
    assert any("training it again from the start" in line for line in lines), lines
    assert clock_at_start and clock_at_start[0] >= 1.0


def test_training_images_given_as_validation_images_are_refused(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    """Review: the training folder given as --val-images too trained without a word, choosing its weights on the
    images it learnt; by another path, or a file of it in the validation folder, the same."""
    images, labels = toy_data
    with pytest.raises(InputError, match=r"--val-images .*: 0.png \(and 5 more\) is also a training image"):
        train(images, labels, tmp_path / "run", TINY, val_images=images / ".." / "image", val_labels=labels,
              progress=False, say=lambda _: None)
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "3.png").symlink_to(images / "3.png")
    with pytest.raises(InputError, match=r"3.png is also a training image"):
        train(images, labels, tmp_path / "run", TINY, val_images=tmp_path / "val", val_labels=labels,
              progress=False, say=lambda _: None)
    assert not (tmp_path / "run").exists()


def test_resume_by_epochs_of_a_run_trained_by_a_budget_on_patches_is_refused(toy_data: tuple[Path, Path],
                                                                             tmp_path: Path) -> None:
    """Its log counts validation rounds: `--epochs 5` after 51 rounds trained 2 more steps, and the messages
    called the rounds epochs once and validation rounds the next time."""
    images, labels = toy_data
    train(images, labels, tmp_path / "run", replace(TINY, epochs=None, budget_s=2.0, patch_size=16), progress=False,
          say=lambda _: None)
    rounds = len(log_rows(tmp_path / "run"))
    with pytest.raises(InputError, match=rf"--epochs 5: .* trained by a budget, and its log counts validation rounds "
                                         rf"\({rounds} so far\), not epochs; continue it with --budget"):
        resume(tmp_path / "run", epochs=5, progress=False, say=lambda _: None)


def test_out_naming_a_file_is_a_clear_error(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = toy_data
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        train(images, labels, tmp_path / "file", TINY, progress=False)


def test_with_ema_the_saved_weights_are_the_average_not_the_last_step(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = toy_data
    config = replace(TINY, patch_size=16, batch_size=2, epochs=3, ema=0.9)  # constant lr: a shorter run is a prefix
    quiet = dict(progress=False, say=lambda _: None)
    train(images, labels, tmp_path / "run", config, **quiet)
    saved, _ = load_tensors(tmp_path / "run" / "model.safetensors")
    best_epoch = max(int(r["epoch"]) for r in log_rows(tmp_path / "run") if r["best"] == "yes")
    train(images, labels, tmp_path / "prefix", replace(config, epochs=best_epoch), **quiet)
    state = final_weights(tmp_path / "prefix")  # the run as it was when the best weights were saved
    for name, value in saved.items():
        torch.testing.assert_close(value, state[f"ema.module.{name}"])
    assert any(not torch.equal(value, state[f"model.{name}"]) for name, value in saved.items() if value.is_floating_point())


def test_the_last_line_says_which_weights_were_kept_and_how_they_scored(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = toy_data
    lines: list[str] = []
    train(images, labels, tmp_path / "run", replace(TINY, epochs=3), progress=False, say=lines.append)
    rows = log_rows(tmp_path / "run")
    kept = next(row for row in reversed(rows) if row["best"] == "yes")
    assert lines[-1].startswith(f"finished: {rows[-1]['step']} steps in ")
    assert f"step {kept['step']} (log.csv row {kept['epoch']})" in lines[-1]
    assert f"pixel error {float(kept['val_pixel_error']):.4f}" in lines[-1]
    assert "budget" not in lines[-1]  # stopped by epochs

    lines.clear()
    resume(tmp_path / "run", epochs=4, progress=False, say=lines.append)
    assert lines[-1].startswith(f"finished: {log_rows(tmp_path / 'run')[-1]['step']} steps in ")


def test_the_last_line_of_a_seed_run_names_the_training_loss_it_kept(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = toy_data
    lines: list[str] = []
    config = replace(TINY, select_by="train_loss", single_logit=True, loss="bce", epochs=None, budget_s=2.0)
    record = train(images, labels, tmp_path / "run", config, progress=False, say=lines.append)
    assert f"lowest training loss ({record['metrics']['best']['train_loss']:.4f}" in lines[-1]
    assert "of a 2 s budget" in lines[-1]


def test_the_last_line_names_the_kept_weights_not_the_last_ones() -> None:
    best = {"epoch": 2, "step": 40, "val_dice": 0.9, "val_pixel_error": 0.0512, "selected_by": "val_dice"}
    last = {"epoch": 5, "step": 100, "val_dice": 0.8, "val_pixel_error": 0.0999}
    line = describe_result({"progress": {"step": 100, "seconds": 59.6}, "metrics": {"best": best, "last": last}}, 60.0)
    assert line.startswith("finished: 100 steps in 60 s of a 60 s budget")
    assert "step 40 (log.csv row 2)" in line and "0.0512" in line and "0.0999" not in line


def test_the_last_line_gives_the_pixel_error_of_the_aligned_outputs_the_run_predicts() -> None:
    """With outputs shifted to the labels, the line gave the unshifted error (0.0173) while predict scored 0.0023."""
    best = {"epoch": 2, "step": 40, "val_dice": 0.9, "val_pixel_error": 0.0173, "selected_by": "val_dice"}
    aligned = {"shift_px": [1.0, 0.0], "val_pixel_error": 0.0173, "val_pixel_error_shifted": 0.0028}
    line = describe_result({"progress": {"step": 40}, "metrics": {"best": best}, "alignment": aligned}, None)
    assert "pixel error 0.0028 with the label alignment (0.0173 without)" in line
    unshifted = describe_result({"progress": {"step": 40}, "metrics": {"best": best},
                                 "alignment": {**aligned, "shift_px": [0.0, 0.0]}}, None)
    assert "pixel error 0.0173" in unshifted and "alignment" not in unshifted


def test_a_budgeted_run_whose_steps_were_slower_than_planned_says_so(
    toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 60 s run planned 771 steps and did 53 while another program ran, without a word."""
    import time

    from unetkit.train.recipes import recipe

    real_step = trainer_module.Trainer._step

    def slow_step(self, *args):  # type: ignore[no-untyped-def]
        time.sleep(0.3)  # as if another program held the cores
        return real_step(self, *args)

    monkeypatch.setattr(trainer_module.Trainer, "_step", slow_step)
    images, labels = toy_data
    lines: list[str] = []
    train(images, labels, tmp_path / "run", replace(recipe("default"), budget_s=8.0, device="cpu"),
          progress=False, say=lines.append)
    note = next(line for line in lines if line.startswith("note: steps took"))
    assert "planned steps; was another program busy?" in note  # its steps were timed, then ran slower


def test_timed_steps_that_ran_slower_ask_whether_another_program_was_busy() -> None:
    from types import SimpleNamespace

    from unetkit.train.start import _note_slower_steps

    said: list[str] = []
    width16 = SimpleNamespace(base_width=16)

    def ran(mean_s: float, steps: int, config: SimpleNamespace = width16) -> SimpleNamespace:
        return SimpleNamespace(counters=SimpleNamespace(step_cost_s=0.01, step=steps), config=config,
                               steps_timed=steps, step_seconds=mean_s * steps)

    plan = {"step_seconds": 0.06, "planned_steps": 771, "measured_step_seconds": {"16": 0.06}}
    _note_slower_steps(ran(0.52, 53), plan, said.append)  # type: ignore[arg-type]
    assert said == ["note: steps took 0.52 s, not the 0.06 s planned, so the run trained 53 of the 771 planned "
                    "steps; was another program busy? (a model trained on an idle machine may be better)"]
    _note_slower_steps(ran(0.07, 700), plan, said.append)  # type: ignore[arg-type]
    assert len(said) == 1  # within what a plan may miss by: nothing said
    _note_slower_steps(ran(0.52, 800), plan, said.append)  # type: ignore[arg-type]
    assert len(said) == 1  # review: "trained 712 of the 317 planned steps" was said of a run with more steps
    _note_slower_steps(ran(0.52, 53, SimpleNamespace(base_width=24)), plan, said.append)  # type: ignore[arg-type]
    assert said[-1].endswith("its steps were estimated, not timed")  # width 24 was not among those timed (review)


def test_validation_dice_leaves_out_a_class_neither_the_masks_nor_the_prediction_hold() -> None:
    """A class absent from the validation masks and never predicted scored Dice 1.0 and lifted the mean."""
    from unetkit.data.dataset import TensorPairs

    class AlwaysClassZero(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(x.shape[0], 3, *x.shape[2:])
            logits[:, 0] = 5.0
            return logits

    truth = torch.zeros(8, 8, dtype=torch.uint8)
    truth[:4] = 1  # half class 1, which is never predicted; class 2 is nowhere
    data = TensorPairs(["a"], [torch.rand(1, 8, 8)], [truth])
    scores = trainer_module.validate(AlwaysClassZero(), data, tile=64, device=torch.device("cpu"))
    assert scores["val_dice"] == pytest.approx((2 * 0.5 / 1.5 + 0.0) / 2)  # classes 0 and 1 only
    assert scores["val_pixel_error"] == pytest.approx(0.5)


def test_validation_scores_the_probabilities_predict_writes_not_those_of_smaller_windows() -> None:
    """A validation image larger than the run's tile was cut into tile-sized windows with a quarter of a tile of
    context (predict uses one whole pass), so validation scores and label alignment came from other numbers."""
    from unetkit.data.dataset import TensorPairs
    from unetkit.models import build_model

    torch.manual_seed(0)
    model = build_model("unet", in_channels=1, num_classes=2, base_width=4, depth=3).eval()
    with torch.no_grad():  # positive weights, so that far context adds up (a random network's output is local)
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.abs_().mul_(0.4)
        image = torch.randn(1, 96, 80)
        truth = (torch.rand(96, 80) > 0.5).to(torch.uint8)
        whole = torch.softmax(model(image[None]).float(), 1)[0]
    expected = float(-torch.log(whole.gather(0, truth.long()[None])[0].clamp_min(1e-7)).mean())
    scores = trainer_module.validate(model, TensorPairs(["a"], [image], [truth]), tile=32, device=torch.device("cpu"))
    assert scores["val_loss"] == pytest.approx(expected, rel=1e-5)


def test_a_budget_spent_before_the_first_step_is_an_error_not_a_finished_run(
    toy_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from unetkit.cli import main

    images, labels = toy_data
    argv = ["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "run"), "--device", "cpu",
            "--quiet", "--budget", "0.01s"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--budget" in err[0] and "--resume" in err[0], err
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert main(["train", "--resume", str(tmp_path / "run"), "--budget", "20s", "--quiet"]) == 0  # the advice works
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_a_resume_refused_for_its_budget_says_what_reading_the_data_took(
        toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review: --budget 5s was refused as "has already trained 7 s", then --budget 8s as "has already trained
    10 s": the second counted this start's reading of the data, and said nothing of it."""
    import time

    from unetkit.train import start as start_module

    images, labels = toy_data
    run = tmp_path / "run"
    train(images, labels, run, replace(TINY, epochs=1), progress=False, say=lambda _: None)
    record = json.loads((run / "run.json").read_text())
    spent = record["progress"]["seconds"]
    real_prepare = start_module.prepare_training_data

    def slow_prepare(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(2.0)
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(start_module, "prepare_training_data", slow_prepare)
    with pytest.raises(InputError, match=r"has used \d+ s \(\d+ s trained, [23] s reading the data to resume\)"):
        resume(run, budget_s=spent + 1.0, progress=False, say=lambda _: None)


def test_ema_with_the_seed_rule_is_refused() -> None:
    with pytest.raises(InputError, match="--ema"):
        replace(TINY, select_by="train_loss", ema=0.99)


def test_resume_takes_where_and_how_to_compute_and_refuses_what_it_would_ignore(
    toy_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from unetkit.cli import main

    images, labels = toy_data
    run = tmp_path / "run"
    train(images, labels, run, replace(TINY, epochs=1), progress=False, say=lambda _: None)
    record_path = run / "run.json"
    record = json.loads(record_path.read_text())
    record["config"]["device"] = "cuda"  # a run started on a GPU machine, continued on this CPU
    record["progress"]["seconds"] = 30.0
    record_path.write_text(json.dumps(record))
    for argv, needle in [(["--lr", "0.1"], "drop --lr"), (["--recipe", "seed"], "drop --recipe"),
                         (["--no-align"], "drop --no-align"), (["--ema", "0"], "drop --ema"),
                         (["--budget", "10s"], "new total"), (["--width", "32"], "drop --width")]:
        assert main(["train", "--resume", str(run), "--quiet", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    record["config"]["device"] = "cpu"  # where its step and validation costs were measured
    record_path.write_text(json.dumps(record))
    assert main(["train", "--resume", str(run), "--quiet", "--budget", "30.01s"]) == 2  # no time left for a step
    assert "one more step" in capsys.readouterr().err
    record["config"]["device"] = "cuda"
    record_path.write_text(json.dumps(record))
    assert main(["train", "--resume", str(run), "--epochs", "2", "--device", "cpu", "--precision", "fp32", "--quiet"]) == 0
    config = json.loads(record_path.read_text())["config"]
    assert (config["device"], config["precision"], config["epochs"]) == ("cpu", "fp32", 2)
    assert len(log_rows(run)) == 2


def test_resume_refuses_data_that_changed_since_the_run_started(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = toy_data
    quiet = dict(progress=False, say=lambda _: None)
    train(images, labels, tmp_path / "run", replace(TINY, epochs=1), **quiet)
    for folder in (images, labels):  # a seventh pair: the contiguous split would move 5 from validation to training
        (folder / "6.png").write_bytes((folder / "0.png").read_bytes())
    with pytest.raises(InputError, match=r"data changed .*\(pairs: 6 added\)"):  # was "train split: 5 added"
        resume(tmp_path / "run", epochs=2, **quiet)
    for folder in (images, labels):  # five pairs renamed: all of them named, the count beyond three (audit: cut off)
        (folder / "6.png").unlink()
        for name in ("0", "1", "2", "3", "4"):
            (folder / f"{name}.png").rename(folder / f"x{name}.png")
    with pytest.raises(InputError, match=r"\(pairs: x0, x1, x2 and 2 more added; 0, 1, 2 and 2 more removed\)"):
        resume(tmp_path / "run", epochs=2, **quiet)
    for folder in (images, labels):
        for name in ("0", "1", "2", "3", "4"):
            (folder / f"x{name}.png").rename(folder / f"{name}.png")
    edited = np.asarray(Image.open(labels / "1.png")).copy()
    edited[:4] = 255 - edited[:4]
    Image.fromarray(edited).save(labels / "1.png")
    with pytest.raises(InputError, match="pairs edited"):
        resume(tmp_path / "run", epochs=2, **quiet)
    edited[:4] = 255 - edited[:4]
    Image.fromarray(edited).save(labels / "1.png")
    assert resume(tmp_path / "run", epochs=2, **quiet)["status"] == "finished"


def test_a_resumed_run_reserves_the_validation_it_measured_and_counts_it_as_spent(
    toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The time a run reports as spent includes its last validation and saving; a resumed run knows from the
    start what a validation costs, so a short extension does not overrun by a whole validation."""
    slow_down(monkeypatch, "validate", 1.0)
    images, labels = toy_data
    quiet = dict(progress=False, say=lambda _: None)
    record = train(images, labels, tmp_path / "run", replace(TINY, epochs=None, budget_s=3.0, patch_size=16), **quiet)
    spent = record["progress"]["seconds"]
    assert spent >= float(log_rows(tmp_path / "run")[-1]["seconds"]) + 0.9  # the last validation (1 s) counts
    _, state = load_tensors(tmp_path / "run" / RESUME_DIR / RESUME_FILE)
    assert state["counters"]["end_cost_s"] >= 1.0 and state["counters"]["step_cost_s"] > 0
    budget = spent + 4.0  # room for a step, a validation (1 s) and saving on a busy machine
    record = resume(tmp_path / "run", budget_s=budget, **quiet)
    assert record["progress"]["seconds"] <= budget + 0.4  # blind to the validation's cost, it overran by about 1 s


def test_validation_images_that_are_training_images_are_warned_about(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil  # copies: the same files are refused (test_training_images_given_as_validation_images_are_refused)

    images, labels = toy_data
    lines: list[str] = []
    copies, copied_labels = shutil.copytree(images, tmp_path / "copies"), shutil.copytree(labels, tmp_path / "copied")
    train(images, labels, tmp_path / "run", TINY, copies, copied_labels, progress=False, say=lines.append)
    warning = next(line for line in lines if "also a training image" in line)
    assert "6 of 6 validation images" in warning
    lines.clear()
    train(images, labels, tmp_path / "run2", replace(TINY, val_fraction=0.3), progress=False, say=lines.append)
    assert not any("also a training image" in line for line in lines)  # a held-out block shares nothing


def test_a_pessimistic_first_estimate_of_validation_ends_a_round_not_the_run(toy_data: tuple[Path, Path],
                                                                               tmp_path: Path) -> None:
    """Before the first validation is timed its cost is estimated from the steps (per pixel); large validation
    images and small patches make that estimate dwarf the budget. It may only bring the first validation forward."""
    from conftest import write_blob_pairs

    images, labels = toy_data
    val_images, val_labels = write_blob_pairs(tmp_path / "val", count=3, size=256)
    record = train(images, labels, tmp_path / "run", replace(TINY, epochs=None, budget_s=4.0, patch_size=16),
                   val_images, val_labels, progress=False, say=lambda _: None)
    assert record["progress"]["step"] > 50  # the old rule stopped the whole run after a step or two
    assert len(log_rows(tmp_path / "run")) >= 2


def test_the_saved_state_counts_the_time_its_save_takes(
    toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state cannot time its own save: the previous save's duration stands in, so a resumed run's clock and
    its reserve for the end of a round include it."""
    slow_down(monkeypatch, "save_resume_state", 0.5)
    images, labels = toy_data
    train(images, labels, tmp_path / "run", replace(TINY, epochs=2), progress=False, say=lambda _: None)
    _, state = load_tensors(tmp_path / "run" / RESUME_DIR / RESUME_FILE)
    assert state["counters"]["end_cost_s"] >= 0.5


def test_a_patch_larger_than_every_image_is_said_not_silently_cut(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = toy_data
    lines: list[str] = []
    train(images, labels, tmp_path / "run", replace(TINY, patch_size=1000, epochs=1), progress=False, say=lines.append,
          fixed=frozenset({"patch_size"}))
    assert any(line.startswith("warning: --patch-size 1000") and "patches of 32" in line for line in lines), lines


def test_a_validation_that_eats_the_budget_is_warned_about(toy_data: tuple[Path, Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3000 x 2500 validation image gave a 30 s run one step and a Dice of 0.15 without a word."""
    slow_down(monkeypatch, "validate", 1.0)
    images, labels = toy_data
    lines: list[str] = []
    train(images, labels, tmp_path / "run", replace(TINY, epochs=None, budget_s=4.0, patch_size=16), progress=False,
          say=lines.append)
    warning = next((line for line in lines if line.startswith("warning: one validation")), None)
    assert warning is not None and "larger --budget" in warning, lines
    lines.clear()
    monkeypatch.undo()  # validation at its normal (tiny) cost: nothing to say
    train(images, labels, tmp_path / "run2", replace(TINY, epochs=None, budget_s=4.0, patch_size=16), progress=False,
          say=lines.append)
    assert not any(line.startswith("warning: one validation") for line in lines)


def test_the_model_line_says_what_the_network_has() -> None:
    """An FCN was described as "fcn8s width 16 depth 4 bilinear": it has neither a depth nor bilinear upsampling."""
    from unetkit.config import TrainConfig as Config
    from unetkit.run import model_options
    from unetkit.train.start import _describe_network

    for model, expected in (("fcn8s", "fcn8s width 16"), ("unet", "unet width 16 depth 4 bilinear"),
                            ("unet-classic", "unet-classic width 16 depth 4 transposed-conv, valid convolutions")):
        options = model_options(Config(model=model, base_width=16, depth=4, bilinear=True), 1, 2)
        assert _describe_network(options, model) == expected


def test_training_sizes_are_written_width_by_height_like_check() -> None:
    """train printed "sizes [(64, 48)]" (height, width) where check writes "48 x 64"."""
    from unetkit.train.start import _describe_sizes

    assert _describe_sizes([(64, 48)]) == "48 x 64"
    assert _describe_sizes([(40, 40), (64, 48), (20, 30)]) == "3 sizes from 30 x 20 to 48 x 64"


def test_resuming_a_finished_run_without_a_new_total_says_so(toy_data: tuple[Path, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    """It trained nothing, exited 0 and reported '785 steps in 65 s of a 60 s budget'."""
    from unetkit.cli import main

    images, labels = toy_data
    train(images, labels, tmp_path / "run", replace(TINY, epochs=1), progress=False, say=lambda _: None)
    assert main(["train", "--resume", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has trained 1 epoch;" in err[0] and "--epochs 2" in err[0], err
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "1", "--quiet"]) == 2  # no more than done
    assert "has trained 1 epoch;" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "2", "--quiet"]) == 0  # the advice works


def test_a_budgeted_run_says_that_it_validates_by_time_not_by_epoch() -> None:
    """It printed '3 steps/epoch' and ended 'kept the weights of epoch 8' where log.csv's rounds were 88 steps long."""
    from types import SimpleNamespace

    from unetkit.train.start import _rounds

    assert _rounds(SimpleNamespace(timed_rounds=lambda: True, config=SimpleNamespace(budget_s=600.0))) == \
        " (validated about every 60 s, not every epoch)"
    assert _rounds(SimpleNamespace(timed_rounds=lambda: False, config=SimpleNamespace(budget_s=None))) == ""


def test_a_tie_of_the_validation_dice_keeps_the_weights_of_the_lower_validation_loss(
    toy_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sparse validation masks reach Dice 1.0 within a few steps: the earliest weights that did were kept."""
    losses = iter([0.9, 0.5, 0.3, 0.4])
    real_validate = trainer_module.validate

    def saturated(*args, **kwargs):  # type: ignore[no-untyped-def]
        scores = real_validate(*args, **kwargs)
        return {**scores, "val_dice": 1.0, "val_loss": next(losses)}

    monkeypatch.setattr(trainer_module, "validate", saturated)
    images, labels = toy_data
    record = train(images, labels, tmp_path / "run", replace(TINY, epochs=4), progress=False, say=lambda _: None)
    assert record["metrics"]["best"]["epoch"] == 3 and record["metrics"]["best"]["val_loss"] == 0.3


def test_a_run_folder_another_process_writes_into_is_refused(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    """Two trains into one new --out both said "run written" (one's run.json beside the other's resume state),
    and a second resume deleted the temporary file the first was still writing (audit)."""
    from unetkit.folder_lock import folder_lock
    from unetkit.run import claimed_run_folder

    images, labels = toy_data
    quiet = dict(progress=False, say=lambda _: None)
    (tmp_path / "run").mkdir()  # an empty folder is a new run's to use, unless another process holds it
    with folder_lock(tmp_path / "run", "test"):
        with pytest.raises(InputError, match="another unetkit command is writing into it now; choose a new --out"):
            train(images, labels, tmp_path / "run", TINY, **quiet)
    with pytest.raises(InputError, match="another process wrote into it after this train checked it was empty"):
        with claimed_run_folder(tmp_path, "train"):  # tmp_path holds "run" now: written since it was checked
            pass
    train(images, labels, tmp_path / "run", TINY, **quiet)
    other_save = tmp_path / "run" / ".model.safetensors.tmp99999"
    other_save.write_bytes(b"another resume is writing this")
    with folder_lock(tmp_path / "run", "test"):
        with pytest.raises(InputError, match="another unetkit command is writing into it now; wait until it ends"):
            resume(tmp_path / "run", epochs=TINY.epochs + 1, **quiet)
    assert other_save.is_file()
    resume(tmp_path / "run", epochs=TINY.epochs + 1, **quiet)  # the lock released, it resumes (and clears leftovers)
    assert not other_save.exists()


def test_the_output_shift_travels_with_the_weights_it_was_measured_for(toy_data: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    """Weights are saved before run.json: a run killed between the two paired step 2's weights with step 1's
    shift in run.json, and predict applied it (audit). The weights' own header now carries their shift."""
    from unetkit.run import load_run

    images, labels = toy_data
    train(images, labels, tmp_path / "run", TINY, progress=False, say=lambda _: None)
    saved = load_tensors(tmp_path / "run" / "model.safetensors")[1]["alignment"]["shift_px"]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    record["alignment"] = {"shift_px": [0.75, -0.5]}  # what an older round measured, left by the kill
    (tmp_path / "run" / "run.json").write_text(json.dumps(record))
    shift = load_run(tmp_path / "run").output_shift
    assert (shift or (0.0, 0.0)) == tuple(saved)
    from unetkit.train.checkpoint import save_tensors

    tensors, metadata = load_tensors(tmp_path / "run" / "model.safetensors")
    save_tensors(tmp_path / "run" / "model.safetensors", tensors, {**metadata, "alignment": {"shift_px": "up"}})
    with pytest.raises(InputError, match="model.safetensors: its header's alignment entry is damaged; restore the file"):
        load_run(tmp_path / "run")  # it named the weights but said "restore run.json"


def test_a_split_that_leaves_few_training_pairs_says_how_to_train_on_all(tmp_path: Path) -> None:
    """Two pairs: one held out, one trained on, and not a word about it (audit)."""
    from conftest import write_blob_pairs

    images, labels = write_blob_pairs(tmp_path / "data", count=2)
    lines: list[str] = []
    train(images, labels, tmp_path / "run", replace(TINY, epochs=1), progress=False, say=lines.append)
    note = next(line for line in lines if line.startswith("note: 1 pair of 2 held out"))
    assert "leaves 1 pair to train on" in note and "--val-images/--val-labels" in note
    lines.clear()
    resume(tmp_path / "run", epochs=2, progress=False, say=lines.append)  # its split is settled: no advice to follow
    assert not any("held out for validation leaves" in line for line in lines)
    images, labels = write_blob_pairs(tmp_path / "more", count=6)
    train(images, labels, tmp_path / "run6", replace(TINY, epochs=1), progress=False, say=lines.append)
    assert not any("held out for validation leaves" in line for line in lines)


@pytest.mark.parametrize("damage", [b"epoch,step\n1,abc,zz\n", b"epoch,step\n\xff\xfe,1\n"])
def test_a_damaged_log_stops_a_resume_with_one_line_naming_it(toy_data: tuple[Path, Path], tmp_path: Path,
                                                              damage: bytes) -> None:
    """A log.csv cut or edited by hand ended `train --resume` in a ValueError or UnicodeDecodeError traceback
    (audit); without the log the run resumes."""
    images, labels = toy_data
    quiet = dict(progress=False, say=lambda _: None)
    train(images, labels, tmp_path / "run", replace(TINY, epochs=2), **quiet)
    (tmp_path / "run" / "log.csv").write_bytes(damage)
    with pytest.raises(InputError, match=r"log\.csv: damaged .*; restore it, or remove it to resume"):
        resume(tmp_path / "run", epochs=3, **quiet)
    (tmp_path / "run" / "log.csv").unlink()
    resume(tmp_path / "run", epochs=3, **quiet)
    assert [row["epoch"] for row in log_rows(tmp_path / "run")] == ["3"]


@pytest.mark.parametrize("field, value", [("patch_size", 0), ("ema", 2.0), ("lr", "x")])
def test_a_damaged_config_in_run_json_is_named_as_such_on_resume(toy_data: tuple[Path, Path], tmp_path: Path,
                                                                 field: str, value: object) -> None:
    """`--resume` of a run.json edited to patch_size 0 said "--patch-size 0: must be at least 8 pixels", a flag
    the user never gave (audit)."""
    import json

    images, labels = toy_data
    quiet = dict(progress=False, say=lambda _: None)
    train(images, labels, tmp_path / "run", replace(TINY, epochs=1), **quiet)
    path = tmp_path / "run" / "run.json"
    record = json.loads(path.read_text())
    record["config"][field] = value
    path.write_text(json.dumps(record))
    with pytest.raises(InputError, match=rf"run\.json: .*; the run folder is damaged"):
        resume(tmp_path / "run", epochs=2, **quiet)


def test_a_model_no_better_than_one_class_everywhere_is_warned_about() -> None:
    """16 steps on a loaded machine kept weights with validation pixel error 0.97 where calling every pixel
    background gives 0.17, and the run finished with exit 0 and no word (audit)."""
    import torch

    from unetkit.data.labels import IGNORE_CLASS, LabelEncoding
    from unetkit.train.start import one_class_warning

    encoding = LabelEncoding((0, 128, 255), "uint8")
    labels = [torch.zeros(10, 10, dtype=torch.uint8), torch.zeros(10, 10, dtype=torch.uint8)]
    labels[0][:2] = 1
    labels[1][:1] = 2  # 20 of 100 and 10 of 90 labelled pixels are not background: a mean of 0.156
    labels[1][9] = IGNORE_CLASS  # unlabelled pixels are not counted
    record = {"metrics": {"best": {"val_pixel_error": 0.97}}}
    said = one_class_warning(record, labels, encoding)
    assert said is not None and "misclassify 0.970" in said and "calling every pixel 0 would (0.156)" in said
    record["metrics"]["best"]["val_pixel_error"] = 0.10
    assert one_class_warning(record, labels, encoding) is None
    assert one_class_warning({"metrics": {"best": {"train_loss": 0.3}}}, labels, encoding) is None  # the seed's rule
    background_only = [torch.zeros(10, 10, dtype=torch.uint8)]  # nothing to compare with: a perfect model is fine
    assert one_class_warning({"metrics": {"best": {"val_pixel_error": 0.0}}}, background_only, encoding) is None
    aligned = {"metrics": {"best": {"val_pixel_error": 0.97}}, "alignment": {"val_pixel_error_shifted": 0.05}}
    assert one_class_warning(aligned, labels, encoding) is None  # the error the run reports, with its alignment


def test_a_held_out_block_of_few_pixels_is_said(tmp_path: Path) -> None:
    """Review: a 96 x 96 crop last by name among large images was the whole validation set (0.3 % of the pixels,
    two objects) and the kept weights were chosen on it without a word."""
    from conftest import blob_pair, write_png

    from unetkit.train.setup import prepare_training_data

    rng = np.random.default_rng(0)
    for index, size in enumerate([160, 160, 160, 160, 32]):
        image, label = blob_pair(rng, size)
        write_png(tmp_path / "image" / f"{index}.png", image)
        write_png(tmp_path / "label" / f"{index}.png", label * 255)
    said: list[str] = []
    prepare_training_data(tmp_path / "image", tmp_path / "label", None, None, 0.2, "percentile", say=said.append)
    note = [line for line in said if "held out for validation" in line]
    assert note and "(4) hold 1.0 % of the pixels" in note[0] and "--val-fraction" in note[0], said
    said.clear()
    prepare_training_data(tmp_path / "image", tmp_path / "label", None, None, 0.4, "percentile", say=said.append)
    assert not [line for line in said if "of the pixels" in line]  # 3 and 4: 17 % of them


def test_a_slow_validation_is_blamed_on_its_size_only_when_the_steps_kept_their_pace() -> None:
    """Review: under another program's load a 1 s validation took 19 s, and the advice was to give fewer or smaller
    validation images; when the steps were as slow, it now asks whether another program was busy."""
    from types import SimpleNamespace

    import torch

    from unetkit.train.start import _warn_about_slow_validation

    class Validation(list):  # one image: its labels, and a length
        labels = [torch.zeros(512, 512)]

    def trainer(mean_step_s: float) -> SimpleNamespace:
        return SimpleNamespace(config=SimpleNamespace(budget_s=90.0), counters=SimpleNamespace(end_cost_s=19.0, step=84),
                               data=SimpleNamespace(val=Validation([0])), steps_timed=84,
                               step_seconds=84 * mean_step_s)

    plan = {"step_seconds": 0.24}
    for mean_step_s, expected in ((1.23, "took 5.1 times as long as planned: was another program busy?"),
                                  (0.25, "give a larger --budget, or fewer or smaller validation images")):
        said: list[str] = []
        _warn_about_slow_validation(trainer(mean_step_s), said.append, plan)  # type: ignore[arg-type]
        assert len(said) == 1 and expected in said[0], said
