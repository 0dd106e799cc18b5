"""Train a denoiser on random patches of a folder of images, optionally conditioned on their label maps.

    RUN/run.json           kind "diffusion", config, model, schedule, normalisation, classes
    RUN/model.safetensors  the moving average of the weights (what sampling uses)
    RUN/log.csv            step, seconds, learning rate, loss (mean since the last row)

The loop stops at `budget_s` (reading, building and saving included) or after
`steps`. With labels, a share `label_dropout` of the patches is shown without
its label map, so that one network is both the conditional and the
unconditional model that classifier-free guidance mixes.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from unetkit.config import MAX_BATCH, MAX_WIDTH
from unetkit.devices import resolve_device
from unetkit.diffusion.data import load_diffusion_data, sample_patches
from unetkit.diffusion.objectives import PREDICTIONS, diffusion_loss
from unetkit.diffusion.schedule import SCHEDULES, make_schedule
from unetkit.ema import make_ema
from unetkit.engine import as_batch, autocast, autocast_dtype, configure_process, needs_grad_scaler, to_memory_format
from unetkit.data.io import write_atomic
from unetkit.errors import InputError
from unetkit.models.diffusion_unet import DiffusionUNet, DiffusionUNetConfig
from unetkit.progress import TrainingBar
from unetkit.run import (check_new_run_folder, claimed_run_folder, new_run_record, record_failure, refuse_inside_inputs,
                         write_run_json)
from unetkit.text import counted
from unetkit.train.checkpoint import WEIGHTS_FILE, save_weights

LOG_FILE = "log.csv"
LOG_EVERY_S = 10.0
SAVE_EVERY_S = 60.0  # a killed run keeps its average of at most a minute ago
WARMUP_STEPS = 100
MAX_SIZE = 1024  # training patch side: beyond it the activations of a batch of 16 ask for tens of GB


@dataclass(frozen=True)
class DiffusionConfig:
    """How to train a denoiser; saved in run.json."""

    size: int = 64  # side of the square training patches
    base_width: int = 32
    width_multipliers: tuple[int, ...] = (1, 2, 2, 4)
    attention_levels: tuple[int, ...] = (2, 3)
    blocks_per_level: int = 1
    schedule: str = "cosine"
    timesteps: int = 1000
    prediction: str = "eps"  # "eps" | "v"
    batch_size: int = 16
    lr: float = 5e-4
    ema: float = 0.999
    label_dropout: float = 0.1  # share of patches trained without their label (for classifier-free guidance)
    budget_s: float | None = 1800.0
    steps: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "width_multipliers", tuple(self.width_multipliers))
        object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        if self.budget_s is None and self.steps is None:
            raise InputError("give --budget TIME or --steps N so training knows when to stop")
        if not 8 <= self.size <= MAX_SIZE or self.size % 2 ** (len(self.width_multipliers) - 1):
            raise InputError(f"--size {self.size}: must be a multiple of {2 ** (len(self.width_multipliers) - 1)}, "
                             f"8 to {MAX_SIZE}")
        if not 2 <= self.base_width <= MAX_WIDTH:
            raise InputError(f"--width {self.base_width}: must be 2 to {MAX_WIDTH} (default 32)")
        if self.schedule not in SCHEDULES:
            raise InputError(f"--schedule {self.schedule}: unknown; choose one of {', '.join(SCHEDULES)}")
        if self.prediction not in PREDICTIONS:
            raise InputError(f"--prediction {self.prediction}: unknown; choose one of {', '.join(PREDICTIONS)}")
        if not 0.0 <= self.label_dropout < 1.0 or not 0.0 <= self.ema < 1.0:
            raise InputError("--label-dropout and --ema must be in [0, 1)")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise InputError(f"--batch-size {self.batch_size}: must be 1 to {MAX_BATCH}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise InputError(f"--lr {self.lr:g}: must be a number > 0, e.g. 5e-4")
        if self.timesteps < 2:
            raise InputError(f"diffusion timesteps {self.timesteps}: must be at least 2")
        if self.steps is not None and self.steps < 1:
            raise InputError(f"--steps {self.steps}: must be at least 1 (or give --budget TIME instead)")
        if self.budget_s is not None and not self.budget_s > 0:
            raise InputError(f"--budget {self.budget_s}: must be more than 0 seconds")

    def model_config(self, in_channels: int, label_classes: int) -> DiffusionUNetConfig:
        return DiffusionUNetConfig(
            in_channels=in_channels, base_width=self.base_width, width_multipliers=self.width_multipliers,
            attention_levels=self.attention_levels, blocks_per_level=self.blocks_per_level, label_classes=label_classes,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DiffusionConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def train_diffusion(
    images: Path, labels: Path | None, out: Path, config: DiffusionConfig,
    progress: bool = True, say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train into the new folder `out`; returns run.json's record."""
    began = time.monotonic()
    out = Path(out)
    refuse_inside_inputs(out, [images, labels])
    check_new_run_folder(out, resumable=False)
    data = load_diffusion_data(Path(images), Path(labels) if labels else None, config.size,
                               2 ** (len(config.width_multipliers) - 1))
    device = resolve_device(config.device)
    configure_process()
    amp_dtype = autocast_dtype(device, config.precision)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    label_classes = data.encoding.num_classes if data.encoding else 0
    model_config = config.model_config(data.images[0].shape[0], label_classes)
    model = to_memory_format(DiffusionUNet(model_config).to(device), config.channels_last)
    ema = make_ema(model, config.ema)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    scaler = torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(amp_dtype, device))  # fp16 on a GPU only
    schedule = make_schedule(config.schedule, config.timesteps)

    record = new_run_record(config, "diffusion-unet", model_config.to_json())  # type: ignore[arg-type]
    record.update(kind="diffusion", config=config.to_json(), normalization=data.normalization.to_json(),
                  classes=data.encoding.to_json() if data.encoding else None,
                  data={"images": str(Path(images).resolve()), "labels": str(Path(labels).resolve()) if labels else None,
                        "names": data.names})
    with claimed_run_folder(out, "diffusion train"):
        write_run_json(out, record)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        say(f"data: {len(data.images)} images, {'with' if labels else 'without'} label maps; patches {config.size} x {config.size}")
        say(f"model: diffusion U-Net widths {model_config.widths}, attention at levels {list(model_config.attention_levels)}, "
            f"{params:.2f} M parameters, on {device}, {config.prediction}-prediction, {config.schedule} schedule of {config.timesteps}")

        rows: list[dict[str, Any]] = []
        losses: list[float] = []
        step, step_cost, save_cost = 0, 0.0, 0.0
        last_log = last_save = time.monotonic()
        bar = TrainingBar(steps=config.steps, budget_s=config.budget_s, progress=progress)

        def close_row() -> None:
            """The mean loss since the last row becomes a row of log.csv."""
            if losses:
                rows.append({"step": step, "seconds": round(time.monotonic() - began, 1), "lr": optimizer.param_groups[0]["lr"],
                             "loss": float(np.mean(losses))})
                losses.clear()

        def save() -> float:
            started = time.monotonic()
            save_weights(out / WEIGHTS_FILE, ema.module if ema else model, {"model": record["model"], "step": step})
            return time.monotonic() - started

        def one_step() -> float:
            """Sample patches, drop some labels, one optimiser step on the noise-prediction loss, update the average."""
            x0, label_maps = sample_patches(data, config.batch_size, config.size, generator)
            if label_maps is not None and config.label_dropout:
                dropped = torch.rand(len(label_maps), generator=generator) < config.label_dropout
                label_maps[dropped] = -1  # "no label": the unconditional model
            x0 = as_batch(x0, device, config.channels_last)
            label_maps = None if label_maps is None else label_maps.to(device)

            def denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                with autocast(device, amp_dtype):
                    return model(x_t, t, label_maps)

            for group in optimizer.param_groups:
                group["lr"] = config.lr * min(1.0, (step + 1) / WARMUP_STEPS)
            loss = diffusion_loss(denoiser, schedule, x0, generator, config.prediction)
            if not torch.isfinite(loss):
                raise InputError(f"diffusion loss was not finite at step {step}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update_parameters(model)
            return loss.item()

        model.train()
        try:
            while config.steps is None or step < config.steps:
                elapsed = time.monotonic() - began
                if config.budget_s and elapsed + step_cost + save_cost + 1.0 > config.budget_s:
                    break
                started = time.monotonic()
                loss = one_step()
                step += 1
                losses.append(loss)
                now = time.monotonic()
                step_cost = now - started if step_cost == 0 else 0.9 * step_cost + 0.1 * (now - started)
                if now - last_log > LOG_EVERY_S:
                    close_row()
                    last_log = now
                    _write_log(out, rows)
                if now - last_save > SAVE_EVERY_S:
                    save_cost, last_save = save(), time.monotonic()
                bar.step(now - began, loss=f"{loss:.4f}")
        except KeyboardInterrupt:  # keep what was learnt: the average is saved, the log written, the run marked
            bar.close()
            close_row()
            _write_log(out, rows)
            save()
            record["status"] = "interrupted"
            record["progress"] = {"step": step, "seconds": round(time.monotonic() - began, 1)}
            write_run_json(out, record)
            raise
        except Exception as exc:  # run.json must not go on saying "training"
            bar.close()
            record["progress"] = {"step": step, "seconds": round(time.monotonic() - began, 1)}
            record_failure(out, record, exc)
            raise
        bar.close()
        close_row()
        _write_log(out, rows)
        save()
        record["status"] = "finished"
        record["progress"] = {"step": step, "seconds": round(time.monotonic() - began, 1),
                              "final_loss": rows[-1]["loss"] if rows else None}
        write_run_json(out, record)
        final_loss = record["progress"]["final_loss"]
        say(f"trained {counted(step, 'step')} in {record['progress']['seconds']:.0f} s; "
            f"final loss {'none (no step)' if final_loss is None else f'{final_loss:.4f}'}")
    return record


def _write_log(out: Path, rows: list[dict[str, Any]]) -> None:
    """log.csv, written whole under a temporary name and renamed: a killed run leaves the previous log, never half."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["step", "seconds", "lr", "loss"])
            writer.writeheader()
            writer.writerows(rows)

    write_atomic(out / LOG_FILE, write)
