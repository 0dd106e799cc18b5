"""The training loop: sample, augment, step, validate, select, checkpoint, log.

`train/start.py` builds a Trainer for a new or a resumed run. Stopping is by
epochs or by a wall-clock budget that includes validation and saving. The
resume state is written at the end of every round, so a killed run loses at
most one round of work.
"""

from __future__ import annotations

import copy
import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from unetkit.alignment import ShiftSearch
from unetkit.config import TrainConfig
from unetkit.data.augment import augment_batch
from unetkit.data.dataset import Batch, PatchSampler, TensorPairs
from unetkit.data.labels import IGNORE_CLASS
from unetkit.data.io import write_atomic
from unetkit.data.weightmap import border_weight_map
from unetkit.devices import resolve_device
from unetkit.ema import make_ema
from unetkit.engine import as_batch, autocast, autocast_dtype, needs_grad_scaler, to_memory_format, configure_process
from unetkit.errors import InputError, WriteError
from unetkit.folder_lock import interrupts_deferred
from unetkit.losses import get_loss, most_likely_class
from unetkit.metrics import dice_per_class, pixel_error
from unetkit.models.registry import build_model
from unetkit.plots import plot_curves
from unetkit.predict import predict_probabilities, prediction_windows
from unetkit.progress import TrainingBar
from unetkit.run import Run, record_failure, write_run_json
from unetkit.text import shell_word
from unetkit.train.checkpoint import WEIGHTS_FILE, load_resume_state, save_resume_state, save_weights
from unetkit.train.setup import TrainingData

LOG_FILE = "log.csv"
CURVES_FILE = "curves.png"
LOG_FIELDS = ["epoch", "step", "seconds", "lr", "train_loss", "val_loss", "val_dice", "val_pixel_error", "best"]
MAX_BAD_STEPS = 5  # consecutive non-finite losses before training gives up
CURVES_EVERY_S = 30.0
VALIDATIONS_PER_BUDGET = 10  # with patches and a budget, an "epoch" ends early so that up to this many validations happen
VALIDATION_SHARE = 0.15  # ... but rounds are lengthened so that validating and saving take at most this share of the time
# A run aims this share short of its budget: the last round's end (validation, a best-weights save or not, the
# curves) varies by tenths of a second, and aimed at the budget itself a 12 s run ended at 11.8-12.8 s, over
# the 5 % it may exceed it by; a 10-minute run gives up 12 s of training for it.
BUDGET_SLACK = 0.02


def make_optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, weight_decay=config.weight_decay, momentum=config.momentum)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay, momentum=config.momentum)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def crop_margin(x: torch.Tensor, margin: int) -> torch.Tensor:
    """Drop `margin` pixels on every side of the last two axes."""
    return x[..., margin : x.shape[-2] - margin, margin : x.shape[-1] - margin]


def _parse_log_row(row: dict[str, str]) -> dict[str, Any]:
    """A log.csv row back as numbers (epoch and step as integers)."""
    return {k: v if k == "best" else int(v) if k in ("epoch", "step") else float(v) for k, v in row.items()}


@dataclass
class Counters:
    """Where a run stands; saved in the resume state."""

    step: int = 0
    epoch: int = 0
    elapsed_s: float = 0.0
    best_score: float = -math.inf  # higher is better (val Dice, or minus the training loss)
    best_epoch: int = 0
    best_loss: float = math.inf  # the kept weights' validation loss: it breaks ties of the score (a saturated Dice)
    bad_steps: int = 0
    skipped_steps: int = 0
    step_cost_s: float = 0.0  # the running mean of a step, and the last validation and saving: the budget
    end_cost_s: float = 0.0  # check reserves them, and a resumed run must not start blind to them


@torch.no_grad()
def validate(
    model: torch.nn.Module, data: TensorPairs, tile: int, device: torch.device, amp_dtype: torch.dtype | None = None,
    shifts: ShiftSearch | None = None, classes: int = 2,
) -> dict[str, float]:
    """Mean over validation images of: loss (NLL of the true class), mean Dice over classes, pixel error.

    Images are predicted in the windows `unetkit predict` would use (`tile`: the run's, for valid networks;
    `classes`: the run's class count, for the memory of a band of probabilities).

    `shifts`, when given, also counts the errors of shifted outputs (alignment.py).
    """
    losses, dices, errors = [], [], []
    for image, label in zip(data.images, data.labels):
        truth = label.long()
        labelled = truth != IGNORE_CLASS  # unlabelled pixels (--ignore-value) are not scored
        if not labelled.any():
            continue
        window, overlap, halo = prediction_windows(model, amp_dtype, *image.shape[-2:], classes, device, None, tile)
        probs = predict_probabilities(model, image, tile=window, overlap=overlap, device=device, amp_dtype=amp_dtype,
                                      halo=halo)  # K x H x W, as `unetkit predict` computes them
        if shifts is not None:
            shifts.add(probs, truth)
        nll = -torch.log(probs.gather(0, truth.masked_fill(~labelled, 0)[None])[0][labelled].clamp_min(1e-7)).mean()
        pred, true = most_likely_class(probs)[labelled].numpy(), truth[labelled].numpy()
        losses.append(float(nll))
        # over the classes the image or its prediction holds: an absent class scored 1.0 and lifted the mean
        present = np.bincount(pred, minlength=probs.shape[0]) + np.bincount(true, minlength=probs.shape[0]) > 0
        dices.append(float(np.mean(np.asarray(dice_per_class(pred, true, probs.shape[0]))[present])))
        errors.append(pixel_error(pred, true))
    if not losses:
        raise InputError("the validation masks hold no labelled pixel (all --ignore-value); give validation masks with "
                         "labelled pixels")
    model.train()
    return {"val_loss": float(np.mean(losses)), "val_dice": float(np.mean(dices)), "val_pixel_error": float(np.mean(errors))}


class Trainer:
    """One run's loop. Built from a run folder, a config, the data and a (possibly restored) state."""

    def __init__(
        self,
        run_dir: Path,
        config: TrainConfig,
        data: TrainingData,
        record: dict[str, Any],
        progress: bool = True,
        say: Callable[[str], None] = print,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.data = data
        self.record = record
        self.progress = progress
        self.say = say
        self.device = resolve_device(config.device)
        configure_process()
        self.amp_dtype = autocast_dtype(self.device, config.precision)
        torch.manual_seed(config.seed)
        self.model = build_model(record["model"]["name"], **record["model"]["options"]).to(self.device)
        self.model = to_memory_format(self.model, config.channels_last)
        self.optimizer = make_optimizer(config, self.model)
        self.ema = make_ema(self.model, config.ema)
        self.loss_fn = get_loss(config.loss)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.image_sizes = sorted({tuple(y.shape) for y in data.train.labels})  # as given (the sampler pads its own copies)
        self.margin = int(getattr(self.model, "margin", 0))  # valid networks lose this much on each side
        patch_size = config.patch_size
        if self.margin and patch_size is not None:
            patch_size = self.model.nearest_valid_input_size(patch_size)
        if config.loss == "weighted-ce":  # the paper's border weights, computed once per training mask
            for pairs in (data.train, data.synthetic):
                if pairs is not None:
                    pairs.weights = [
                        torch.from_numpy(border_weight_map(y.numpy().astype(np.int64), data.encoding.num_classes))
                        for y in pairs.labels
                    ]
        self.sampler = PatchSampler(data.train, patch_size, config.batch_size, self.generator, self.margin,
                                    data.synthetic, config.synthetic_fraction if config.synthetic else 0.0)
        self.counters = Counters()
        self.rows: list[dict[str, Any]] = []
        self._best_train_state: dict[str, torch.Tensor] | None = None
        self._curves_drawn = -math.inf
        self._plot_cost = 0.0
        self._scaler = torch.amp.GradScaler(self.device.type, enabled=needs_grad_scaler(self.amp_dtype, self.device))
        self._good_buffers: list[torch.Tensor] | None = None
        self._state_save_s = 0.0
        self._validation_pixels = sum(int(y.numel()) for y in data.val.labels)
        self._batch_pixels = 0
        self.steps_timed, self.step_seconds = 0, 0.0  # this call's steps and their time: their mean, for the notes

    # --- state -----------------------------------------------------------------

    def restore(self) -> None:
        """Continue from RUN/last: weights, optimiser, RNG states, counters and the log so far."""
        rng, counters = load_resume_state(self.run_dir, self.model, self.optimizer, self.ema, self._scaler)
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["sampler"])
        if "cuda" in rng and self.device.type == "cuda":  # dropout on the GPU draws from the device's generator
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.counters = Counters(**counters)
        log = self.run_dir / LOG_FILE
        if log.is_file():
            try:
                with open(log, newline="", encoding="utf-8") as handle:
                    rows = list(csv.DictReader(handle))
                self.rows = [_parse_log_row(row) for row in rows if int(row["epoch"]) <= self.counters.epoch]
            except (ValueError, KeyError, TypeError, csv.Error) as exc:  # UnicodeDecodeError is a ValueError
                raise InputError(f"{log}: damaged ({exc}); restore it, or remove it to resume without the curves of "
                                 "the rounds before (the weights and state are in last/)") from None

    def start_from(self, base: "Run") -> None:
        """Fine-tuning: begin with a trained run's weights (its network was rebuilt from the same fields)."""
        self.model.load_state_dict(base.model.state_dict())
        if self.ema is not None:
            self.ema.module.load_state_dict(base.model.state_dict())

    def _save_state(self) -> None:
        rng = {"torch": torch.get_rng_state(), "sampler": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        save_resume_state(self.run_dir, self.model, self.optimizer, rng, vars(self.counters), self.ema, self._scaler)

    # --- schedule and stopping ---------------------------------------------------

    def _fraction_done(self, elapsed: float) -> float:
        """How far through the run we are, by epochs or by budget, whichever is further."""
        fractions = [0.0]
        if self.config.epochs:
            fractions.append(self.counters.step / (self.config.epochs * self.sampler.steps_per_epoch()))
        if self.config.budget_s:
            fractions.append(elapsed / self.config.budget_s)
        return min(1.0, max(fractions))

    def _set_lr(self, elapsed: float) -> float:
        factor = 1.0
        if self.config.schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * self._fraction_done(elapsed)))
            factor = max(factor, 0.01)
        lr = self.config.lr * factor
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    # --- one step ----------------------------------------------------------------

    def _augmented(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Augment image, label and weights together, then crop labels and weights to the network's output.

        On a GPU the batch moves there first and is augmented there: warped on the host's cores, a step on an
        H200 took 2.5 times as long as the seed loop's on as many pixels (benchmarks/speed.py --device cuda). The
        random draws stay on the CPU generator, so a seed draws the same augmentations on either device.
        """
        images, labels, weights = batch.images, batch.labels, batch.weights
        if self.device.type != "cpu":
            images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
            weights = None if weights is None else weights.to(self.device, non_blocking=True)
        if weights is None:
            images, labels = augment_batch(self.config.augment, images, labels, self.generator)
        else:
            images, labels, weights = augment_batch(self.config.augment, images, labels, self.generator, weights=weights)
        if self.margin:
            labels = crop_margin(labels, self.margin)
            weights = None if weights is None else crop_margin(weights, self.margin)
        return images, labels, weights

    def _step(
        self, images: torch.Tensor, labels: torch.Tensor, names: list[str], weights: torch.Tensor | None = None
    ) -> float | None:
        """One optimiser step; returns the loss, or None when it was not finite (step skipped)."""
        images = as_batch(images, self.device, self.config.channels_last)
        labels = labels.to(self.device, non_blocking=True)
        with autocast(self.device, self.amp_dtype):
            logits = self.model(images)
        if weights is None:
            loss = self.loss_fn(logits.float(), labels)
        else:
            loss = self.loss_fn(logits.float(), labels, weights=weights.to(self.device))
        if not torch.isfinite(loss):
            self._restore_buffers()  # the forward pass also moved BatchNorm's running statistics, maybe to NaN
            self.counters.bad_steps += 1
            self.counters.skipped_steps += 1
            if self.counters.bad_steps >= MAX_BAD_STEPS:
                raise InputError(
                    f"training loss was not finite {MAX_BAD_STEPS} steps in a row (last batch: {', '.join(names)}); "
                    "check these images for extreme values, or lower --lr; the last good checkpoint is kept"
                )
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.counters.bad_steps = 0
        value = loss.item()
        self._track_train_loss(value)  # before the update: the kept weights are those that scored this loss
        self.optimizer.zero_grad(set_to_none=True)
        self._scaler.scale(loss).backward()
        self._scaler.step(self.optimizer)
        self._scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self._keep_buffers()
        return value

    def _keep_buffers(self) -> None:
        """Remember the buffers (BatchNorm statistics, a few KB) after a good step, for `_restore_buffers`."""
        if self._good_buffers is None:
            self._good_buffers = [b.detach().clone() for b in self.model.buffers()]
            return
        for kept, buffer in zip(self._good_buffers, self.model.buffers()):
            kept.copy_(buffer)

    def _restore_buffers(self) -> None:
        assert self._good_buffers is not None, "run() keeps the buffers before the first step"
        for kept, buffer in zip(self._good_buffers, self.model.buffers()):
            buffer.copy_(kept)

    # --- the loop ------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        config = self.config
        steps_per_epoch = self.sampler.steps_per_epoch()
        clock_start = time.monotonic() - self.counters.elapsed_s
        elapsed = lambda: time.monotonic() - clock_start  # noqa: E731
        step_cost, end_cost = self.counters.step_cost_s, self.counters.end_cost_s
        bar = TrainingBar(steps=config.epochs * steps_per_epoch if config.epochs else None, budget_s=config.budget_s,
                          done=self.counters.step if config.epochs else self.counters.elapsed_s, progress=self.progress)
        self.model.train()
        self._keep_buffers()
        out_of_time = False
        try:
            while not out_of_time and (config.epochs is None or self.counters.epoch < config.epochs):
                self.sampler.start_epoch()
                losses: list[float] = []
                lr = self.config.lr
                epoch_started = elapsed()
                step_in_epoch = 0
                while True:
                    if step_in_epoch == steps_per_epoch:
                        if not self.timed_rounds():
                            break
                        self.sampler.start_epoch()  # patches from a budget: a round is a time, not a pass
                        step_in_epoch = 0
                    reserve = end_cost or self._estimated_end_cost(step_cost)
                    aim = config.budget_s * (1 - BUDGET_SLACK) if config.budget_s else None
                    if aim and elapsed() + step_cost + reserve + self._plot_cost > aim:
                        # a measured validation cost ends the run; the first round's estimate only ends the round,
                        # so that the validation is timed (a pessimistic estimate must not stop a run at step 1)
                        out_of_time = bool(end_cost)
                        break
                    if losses and self._round_is_long(epoch_started, elapsed(), end_cost):
                        break
                    started = time.monotonic()
                    lr = self._set_lr(elapsed())
                    batch = self.sampler.batch(step_in_epoch)
                    images, labels, weights = self._augmented(batch)
                    loss = self._step(images, labels, batch.names, weights)
                    self.counters.step += 1
                    step_in_epoch += 1
                    if loss is not None:
                        losses.append(loss)
                    took = time.monotonic() - started
                    step_cost = 0.9 * step_cost + 0.1 * took if step_cost else took
                    self.steps_timed, self.step_seconds = self.steps_timed + 1, self.step_seconds + took
                    self._batch_pixels = int(labels.numel())
                    bar.step(elapsed(), epoch=self.counters.epoch + 1,
                             loss=f"{loss if loss is not None else float('nan'):.4f}")
                if not losses and (out_of_time or step_in_epoch == 0):
                    break
                end_started = time.monotonic()
                self.counters.epoch += 1
                self.counters.step_cost_s = step_cost
                # a round whose steps were all skipped (not finite) still ends: validated, logged with a NaN loss
                self._end_epoch(float(np.mean(losses)) if losses else math.nan, lr, elapsed())
                end_cost = self.counters.end_cost_s = time.monotonic() - end_started
                bar.clock(elapsed())
        except KeyboardInterrupt:
            bar.close()
            try:  # a second Ctrl-C (a key held down) left run.json saying "training" (audit)
                with interrupts_deferred():  # the record only: short, as that block must be
                    self.record["status"] = "interrupted"
                    write_run_json(self.run_dir, self.record)
                self._write_log(final=True)  # the curves, slow to plot: a further interrupt may cut them
            except KeyboardInterrupt:
                pass  # the first interrupt is the one reported (SIGTERM's exit code, not Ctrl-C's)
            raise
        except Exception as exc:  # run.json must not go on saying "training"
            bar.close()
            record_failure(self.run_dir, self.record, exc)
            if isinstance(exc, WriteError):  # a full disk: every file written so far is whole, so the run can go on
                raise WriteError(f"{exc.path}: could not be written ({exc.reason}); the run's files written before are "
                                 "whole: free space on its disk (or make the folder writable), then continue the run: "
                                 f"unetkit train --resume {shell_word(self.run_dir)}", exc.path, exc.reason) from None
            raise
        bar.close()
        self.counters.elapsed_s = elapsed()
        if "progress" in self.record:
            self.record["progress"]["seconds"] = round(self.counters.elapsed_s, 1)
        if not (self.run_dir / WEIGHTS_FILE).is_file() and config.budget_s:  # no round ended: nothing can predict
            too_short = InputError(
                f"{self.run_dir}: the {config.budget_s:g} s budget ran out before training could start ({elapsed():.0f} s "
                f"went to reading, checking and planning); give a larger --budget, or continue this run with "
                f"`unetkit train --resume {shell_word(self.run_dir)} --budget 5m`")
            record_failure(self.run_dir, self.record, too_short)
            raise too_short
        self._set_status("finished")
        return self.record.get("metrics", {})

    def _estimated_end_cost(self, step_cost: float) -> float:
        """Before the first validation has been timed: assume it costs a training step per batch of pixels
        (inference alone is cheaper, so this errs towards ending the first round early, not late)."""
        if not step_cost or not self._batch_pixels:
            return 0.0
        return step_cost * self._validation_pixels / self._batch_pixels

    def timed_rounds(self) -> bool:
        """Patches under a budget (and no --epochs): validation rounds are set by time, not by passes."""
        return bool(self.config.budget_s) and self.config.patch_size is not None and self.config.epochs is None

    def _round_is_long(self, started: float, now: float, end_cost: float) -> bool:
        """Within a budget, validate up to VALIDATIONS_PER_BUDGET times even if an epoch is longer, but
        never let validation (whose cost `end_cost` was measured last round) take more than
        VALIDATION_SHARE of the time: a big model's overlap-tile validation can cost as much as
        a few dozen training steps."""
        if not self.timed_rounds():
            return False
        round_s = max(self.config.budget_s / VALIDATIONS_PER_BUDGET, end_cost * (1 - VALIDATION_SHARE) / VALIDATION_SHARE)
        return now - started > round_s

    def _track_train_loss(self, loss: float) -> None:
        """The seed recipe keeps the weights of the lowest single-batch training loss."""
        if self.config.select_by == "train_loss" and -loss > self.counters.best_score:
            self.counters.best_score = -loss
            self.counters.best_epoch = self.counters.epoch + 1
            self._best_train_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def _end_epoch(self, train_loss: float, lr: float, elapsed: float) -> None:
        self._round_ended = time.monotonic()
        validated = self.model if self.ema is None else self.ema.module
        by_validation = self.config.select_by == "val_dice"
        # valid networks predict tile by tile without spare context: a shift would repeat each tile's edge at the seams
        shifts = ShiftSearch() if self.config.align_outputs and by_validation and not self.margin else None
        scores = validate(validated, self.data.val, self.config.tile, self.device, self.amp_dtype, shifts,
                          self.data.encoding.num_classes)
        improved = False
        # a tie of the score goes to the lower validation loss: sparse or easy validation masks reach Dice 1.0 within
        # a few steps, and the earliest weights that did were kept while the loss kept falling
        tied = scores["val_dice"] == self.counters.best_score and scores["val_loss"] < self.counters.best_loss
        if by_validation and (scores["val_dice"] > self.counters.best_score or tied):
            self.counters.best_score = scores["val_dice"]
            self.counters.best_loss = scores["val_loss"]
            self.counters.best_epoch = self.counters.epoch
            improved = True
            alignment = shifts.best() if shifts is not None else None  # the shift that fits these weights
            save_weights(self.run_dir / WEIGHTS_FILE, validated, self._weights_metadata(alignment))
            if alignment is not None:
                self.record["alignment"] = alignment
        if self.config.select_by == "train_loss" and self._best_train_state is not None:
            improved = True
            best_model = copy.deepcopy(self.model).cpu()
            best_model.load_state_dict(self._best_train_state)
            save_weights(self.run_dir / WEIGHTS_FILE, best_model, self._weights_metadata())
            self._best_train_state = None
        row = {"epoch": self.counters.epoch, "step": self.counters.step, "seconds": round(elapsed, 1), "lr": lr,
               "train_loss": train_loss, **scores, "best": "yes" if improved else ""}
        self.rows.append(row)
        self._write_log()
        if self.config.select_by == "train_loss":  # the saved weights come from a step, not from this validation
            best = {"selected_by": "train_loss", "train_loss": -self.counters.best_score, "epoch": self.counters.best_epoch}
            self.record["metrics"] = {"best": best}
        elif improved or "best" not in self.record.get("metrics", {}):
            self.record["metrics"] = {"best": {**row, "selected_by": self.config.select_by}}
        self.record["metrics"]["last"] = row
        # validation, saving and plotting count too; end_cost_s is saved with the state: a resumed run reserves it
        # (the state's own save cannot time itself: the last one's duration stands in for it)
        self.counters.end_cost_s = time.monotonic() - self._round_ended + self._state_save_s
        self.counters.elapsed_s = elapsed + self.counters.end_cost_s
        self.record["progress"] = {"epoch": self.counters.epoch, "step": self.counters.step,
                                   "seconds": round(self.counters.elapsed_s, 1),  # validation and saving included
                                   "skipped_steps": self.counters.skipped_steps}
        write_run_json(self.run_dir, self.record)
        started = time.monotonic()
        self._save_state()
        self._state_save_s = time.monotonic() - started

    def _weights_metadata(self, alignment: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the weights file says of itself. The output shift goes with the weights it was measured for:
        run.json is written after them, and a run killed in between must not pair new weights with the old shift.
        The classes let load_run tell a run.json whose mask values were edited (0/128 for 0/255)."""
        return {"model": self.record["model"], "classes": self.record.get("classes"), "epoch": self.counters.epoch,
                "step": self.counters.step,
                **({"alignment": alignment} if alignment is not None else {})}

    def _write_log(self, final: bool = False) -> None:
        """log.csv every epoch; curves.png at most every CURVES_EVERY_S seconds (plotting is slow) and at the end.

        log.csv goes through a temporary file: restore() reads its rows back, and a run killed while rewriting
        it in place left a cut row (resume crashed) or an empty log (the rows before were lost)."""
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(self.rows)
        write_atomic(self.run_dir / LOG_FILE, lambda tmp: Path(tmp).write_text(text.getvalue(), newline=""))
        if self.rows and (final or time.monotonic() - self._curves_drawn > CURVES_EVERY_S):
            started = time.monotonic()
            plot_curves(self.rows, self.run_dir / CURVES_FILE)
            self._curves_drawn = time.monotonic()
            self._plot_cost = self._curves_drawn - started  # the last plot, after the budget check, costs this much

    def _set_status(self, status: str) -> None:
        self._write_log(final=True)
        self.record["status"] = status
        write_run_json(self.run_dir, self.record)
