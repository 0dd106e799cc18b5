"""Plan a run from the data and the machine: patch, batch, width, depth, loss, schedule, steps.

nnU-Net plans from the data for a GPU; on a 2-core CPU the binding constraint
is the number of optimiser steps that fit the budget, so this planner works
backwards from time. The rules, in order:

1. Context: the receptive field should cover twice the object scale (the
   size of the structures that hold the typical pixel), which sets the depth;
   the patch should hold two objects across, within the median image (smaller
   ones are mirror-padded) and the CPU's reach, which sets the patch size.
2. Batch: about PIXELS_PER_STEP pixels a step (a CPU gains nothing from more
   parallel work per step, and more steps help), at most about one pass over
   a small training set.
3. Width: the widest network that still gets enough steps in the budget at
   the measured speed of this machine: STEPS_AT_10_MIN for 10 minutes (a
   smaller network with more steps beat a larger one with fewer in every
   10-minute ISBI run we measured), growing with the square root of the time
   (more time buys both more steps and a wider network). A multiply-add
   model proposes the width; `refine_width` times real steps and moves it
   until the measured steps fit.
4. Loss: cross-entropy, plus Dice when a class is rare (Dice does not let a
   5 % foreground drown in the background's gradient).
5. Weight average: validate and keep an exponential moving average of the
   weights over the last tenth of the planned steps (small batches make the
   last weights noisy; the average is the better model).

Everything the user set with a flag stays as given; the rest is planned
around it. The functions here are pure (fingerprints in, plan out) so that
they can be tested on made-up data sets and machines (`refine_width` takes
the timing as a function); the measuring is in `train/fingerprint.py`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from unetkit.models.unet import UNetConfig
from unetkit.train.trainer import VALIDATION_SHARE  # the trainer keeps validation below this share of the budget

PIXELS_PER_STEP = 8 * 128 * 128  # the default recipe's batch, measured to saturate 2 cores
# Fewer steps than this and a smaller network wins (ISBI, 10 minutes, 2 cores: width 24 with ~3300 steps gave
# pixel error 0.071-0.072 in five runs, width 32 with 2308 steps 0.0735).
STEPS_AT_10_MIN = 2500
WIDTHS = (8, 12, 16, 24, 32, 48, 64)
MIN_PATCH, MAX_PATCH_CPU, MAX_PATCH_GPU = 32, 256, 512
MIN_BATCH = 4  # BatchNorm's running statistics from 2 patches a step swung validation Dice 0.99 -> 0.61 (review)
EMA_SHARE = 0.1  # the weight average spans about this share of the planned steps
RARE_CLASS = 0.10  # below this pixel fraction a class gets Dice in the loss (ISBI membranes, 22 %, train best on CE alone)
BYTES_PER_ACTIVATION = 4 * 12  # fp32 values kept for backward per pixel and channel, summed over a level's layers


@dataclass(frozen=True)
class DataFingerprint:
    """What the planner needs to know about the training set."""

    images: int
    height: int  # the median training image's size: patches are sized to it (the sampler mirror-pads smaller images)
    width: int
    channels: int
    classes: int
    class_fractions: tuple[float, ...]
    object_scale: float  # pixels; see fingerprint.object_scale
    largest_side: int = 0  # the largest image's longer side: the sampler cuts a larger --patch-size to it (0: unknown)
    pixels: int = 0  # all training pixels: an epoch's patches cover them once; a step's batch need not exceed them (0: unknown)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MachineFingerprint:
    """What the planner needs to know about the computer."""

    device: str  # "cpu" | "cuda"
    cores: int
    memory_gib: float
    precision: str  # what the engine will compute in: "fp32", "bf16", "fp16"
    macs_per_s: float  # measured training rate: multiply-adds per second of forward + backward + update / 3
    slowdown: float = 1.0  # the best rate remembered / the rate this probe measured: how busy the machine is now

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    patch_size: int
    batch_size: int
    base_width: int
    depth: int
    loss: str
    lr: float
    schedule: str
    ema: float
    step_seconds: float  # estimated by the multiply-add model, or measured (refine_width)
    planned_steps: int  # estimated from the budget; the budget, not this number, stops training
    reasons: list[str] = field(default_factory=list)

    def choices(self) -> dict[str, Any]:
        """The TrainConfig fields this plan sets."""
        return {"patch_size": self.patch_size, "batch_size": self.batch_size, "base_width": self.base_width,
                "depth": self.depth, "loss": self.loss, "lr": self.lr, "schedule": self.schedule, "ema": self.ema}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def receptive_field(depth: int) -> int:
    """Receptive field in pixels of the padded U-Net of this depth (see UNetConfig.receptive_field)."""
    return UNetConfig(depth=depth).receptive_field


def unet_macs_per_pixel(width: int, depth: int, in_channels: int = 1, classes: int = 2, bilinear: bool = True) -> float:
    """Forward multiply-adds per input pixel of the padded U-Net (3x3 convolutions dominate). The bilinear
    variant halves the bottom and each decoder level's output; the transposed one keeps them and adds its
    2x2 transposed convolutions (about 1.2 times the work at the same width)."""
    macs = 9 * (in_channels * width + width * width)  # first level, full resolution
    for level in range(1, depth + 1):
        cin, cout = width * 2 ** (level - 1), width * 2**level
        if level == depth and bilinear:
            cout //= 2
        macs += 9 * (cin * cout + cout * cout) / 4**level
    for level in range(depth - 1, -1, -1):  # concatenated skip (2c) -> c -> c/2 (c at the top, or transposed)
        c = width * 2**level
        if bilinear:
            out = c // 2 if level else c
            macs += 9 * (2 * c * c + c * out) / 4**level
        else:  # 2c -> c by the 2x2 transposed convolution (one tap per output pixel), then 2c -> c -> c
            macs += (2 * c * c + 9 * (2 * c * c + c * c)) / 4**level
    return macs + width * classes


def estimated_step_seconds(data: DataFingerprint, machine: MachineFingerprint, depth: int, patch: int, batch: int,
                           width: int, bilinear: bool = True) -> float:
    """A training step's seconds by the multiply-add model: forward, backward and update cost three forwards."""
    macs = 3 * unet_macs_per_pixel(width, depth, data.channels, data.classes, bilinear) * batch * patch**2
    return macs / machine.macs_per_s


def fits_in_memory(machine: MachineFingerprint, depth: int, patch: int, batch: int, width: int) -> bool:
    """Whether a step's activations (kept for backward) take under a quarter of the memory."""
    activations = sum(batch * (patch / 2**level) ** 2 * width * 2**level for level in range(depth + 1))
    return 2 * activations * BYTES_PER_ACTIVATION < 0.25 * machine.memory_gib * 2**30


def steps_wanted(train_seconds: float) -> int:
    """STEPS_AT_10_MIN for 10 minutes (8.5 of them training), scaled with the square root of the time."""
    return max(1, round(STEPS_AT_10_MIN * math.sqrt(train_seconds / (600 * (1 - VALIDATION_SHARE)))))


def weight_average(planned_steps: int) -> tuple[float, str]:
    """The decay of a weight average over the last EMA_SHARE of the steps, and the plan's line for it."""
    span = min(1000, max(10, EMA_SHARE * planned_steps))
    ema = round(1 - 1 / span, 4)
    return ema, f"weight average: decay {ema}, over the last ~{span:.0f} steps"


def _round_down(value: float, multiple: int) -> int:
    return int(value) // multiple * multiple


def plan_training(
    data: DataFingerprint,
    machine: MachineFingerprint,
    budget_s: float | None,
    fixed: dict[str, Any] | None = None,
    epochs: int | None = None,
) -> Plan:
    """Choose what `fixed` leaves open. A run stopped by `epochs` (and by no budget, or one over 10 minutes) is
    planned as for 10 minutes; its planned steps are its epochs' (or the budget's, if fewer)."""
    fixed = dict(fixed or {})
    reasons: list[str] = []
    budget = min(budget_s or 600.0, 600.0) if epochs else budget_s or 600.0
    train_seconds = budget * (1 - VALIDATION_SHARE)

    # 1. depth: the receptive field covers two objects, within what the image allows
    side = min(data.height, data.width)  # the median image's shorter side
    patch_fixed = "patch_size" in fixed and fixed["patch_size"] is not None
    if "depth" in fixed:
        depth = int(fixed["depth"])
    else:
        depth = next((d for d in range(2, 6) if receptive_field(d) >= 2 * data.object_scale), 5)
        seen = min(int(fixed["patch_size"]), data.largest_side or int(fixed["patch_size"])) if patch_fixed else side
        while depth > 1 and seen < 8 * 2**depth:  # keep the bottom at least 8 pixels wide
            depth -= 1
        reasons.append(f"depth {depth}: receptive field {receptive_field(depth)} px for objects of about "
                       f"{data.object_scale:.0f} px")
    multiple = 2**depth

    # 2. patch: two objects across, at most the image, bounded for the device
    if patch_fixed:
        patch = int(fixed["patch_size"])
        if data.largest_side and patch > data.largest_side:  # as the sampler will: plan for the patches it draws
            reasons.append(f"patch {data.largest_side}: --patch-size {patch} cut to the largest image")
            patch = data.largest_side
    else:
        cap = MAX_PATCH_GPU if machine.device == "cuda" else MAX_PATCH_CPU
        wanted = max(MIN_PATCH, min(cap, 2 * data.object_scale, receptive_field(depth)))
        patch = max(multiple, _round_down(min(wanted, side), multiple))
        if patch >= side:
            reasons.append(f"patch {patch}: the whole (median) image, {side} px")
        elif cap < min(2 * data.object_scale, receptive_field(depth)) and patch == _round_down(cap, multiple):
            # the cap, not the objects, set it: said so (it read "two objects across" for 300 px objects)
            reasons.append(f"patch {patch}: the {'GPU' if machine.device == 'cuda' else 'CPU'} cap; two objects of "
                           f"about {data.object_scale} px across would take {2 * data.object_scale} (--patch-size)")
        else:
            reasons.append(f"patch {patch}: two objects across, within the receptive field")

    # 3. batch: a fixed amount of work per step
    if "batch_size" in fixed:
        batch = int(fixed["batch_size"])
    else:
        pixels = PIXELS_PER_STEP * (4 if machine.device == "cuda" else 1)
        batch = max(MIN_BATCH, min(64, round(pixels / patch**2)))
        if data.pixels and batch * patch**2 > data.pixels:  # five 96 x 96 images: 14 patches a step was 3 passes
            batch = max(MIN_BATCH, round(data.pixels / patch**2))
            reasons.append(f"batch {batch}: about one pass over the {data.pixels / 1e3:.0f} k training pixels a step")
        else:
            reasons.append(f"batch {batch}: about {batch * patch * patch / 1e3:.0f} k pixels a step")

    bilinear = bool(fixed.get("bilinear", True))  # --upsampling transposed costs more a step at the same width

    def step_seconds(width: int) -> float:
        return estimated_step_seconds(data, machine, depth, patch, batch, width, bilinear)

    def fits_memory(width: int) -> bool:
        return fits_in_memory(machine, depth, patch, batch, width)

    # 4. width: the widest that still gets enough steps (and fits in a quarter of the memory)
    if "base_width" in fixed:
        width = int(fixed["base_width"])
    else:
        wanted_steps = steps_wanted(train_seconds)
        affordable = [w for w in WIDTHS if train_seconds / step_seconds(w) >= wanted_steps and fits_memory(w)]
        width = max(affordable) if affordable else WIDTHS[0]
        steps_at = train_seconds / step_seconds(width)
        if budget_s and not (epochs and budget_s > budget):
            reasons.append(f"width {width}: {steps_at:.0f} steps fit the budget at {step_seconds(width):.2f} s a step "
                           f"({'at least' if affordable else 'fewer than'} the {wanted_steps} wanted for this budget)")
        else:
            reasons.append(f"width {width}: as for a 10-minute budget ({step_seconds(width):.2f} s a step on "
                           f"{'a reference machine' if not budget_s else 'this machine'}); this run stops after its "
                           "epochs instead")

    # 5. loss: Dice joins cross-entropy when a class is rare
    rarest = min(data.class_fractions) if data.class_fractions else 1.0
    if "loss" in fixed:
        loss = str(fixed["loss"])
    elif rarest < RARE_CLASS:
        loss = "ce+dice"
        reasons.append(f"loss ce+dice: the rarest class covers {100 * rarest:.1f} % of the pixels")
    else:
        loss = "ce"
        reasons.append(f"loss ce: every class covers at least {100 * rarest:.0f} % of the pixels")

    lr = float(fixed.get("lr", 2e-3 * math.sqrt(batch / 8)))  # AdamW, scaled with the batch's noise
    schedule = str(fixed.get("schedule", "cosine"))
    seconds = step_seconds(width)
    planned_steps = max(1, int(train_seconds / seconds))
    if epochs:  # the sampler's epoch: patches enough to cover every training pixel once
        by_epochs = epochs * max(1, math.ceil(max(data.pixels, patch**2) / (batch * patch**2)))
        by_budget = int(budget_s * (1 - VALIDATION_SHARE) / seconds) if budget_s else by_epochs
        planned_steps = max(1, min(by_epochs, by_budget))

    # 6. weight average over the last tenth of the steps
    if "ema" in fixed:
        ema = float(fixed["ema"])
    else:
        ema, reason = weight_average(planned_steps)
        reasons.append(reason)
    return Plan(
        patch_size=patch, batch_size=batch, base_width=width, depth=depth, loss=loss, lr=lr, schedule=schedule,
        ema=ema, step_seconds=seconds, planned_steps=planned_steps, reasons=reasons,
    )


StepTimer = Callable[[int], float]  # width -> measured seconds of a training step of the planned depth, patch and batch
GUESS_REACH = 2.0  # a wider network is timed only if its estimate is within this factor of the slowest step that fits
TIMING_SHARE = 0.02  # timing widths stops after this share of the budget (the first width is always timed)


def refine_width(plan: Plan, data: DataFingerprint, machine: MachineFingerprint, budget_s: float,
                 time_step: StepTimer, width_fixed: bool = False, ema_fixed: bool = False,
                 clock: Callable[[], float] = time.monotonic, bilinear: bool = True) -> tuple[Plan, dict[int, float]]:
    """Time real steps of the planned network and move its width until the measured steps fit the budget.

    The multiply-add model holds for wide networks, not narrow ones: their
    memory-bound layers (BatchNorm, activations, upsampling, copies) cost more
    than their convolutions (on the 2-core EPYC a width-8 step took 2.6 times
    its estimate), and a CPU's kernels can handle some widths badly (width 12
    stepped slower than 16 in bf16). So the planned width is timed: while it
    gets fewer than the wanted steps the next narrower one is timed; then a
    wider one is timed while the model, or the widest that fits with its time
    scaled by the model, says it may fit (one timed too slow is passed over).
    Timing stops after TIMING_SHARE of the budget; widths not timed by then are
    estimated from the nearest timed one, and the width chosen is then timed too. The times are used as measured, not
    scaled to the best rate remembered: on an idle machine that rate was 1.43
    times the probe's and the scaled plan promised 4597 ISBI steps for 3607;
    a machine busy while planning is likely busy while training. A width the user fixed is only timed.
    The steps promised are those of the budget left after timing.
    Returns the plan with the width, step time, planned steps and weight
    average of the measurements, and the seconds measured per width.
    """
    train_seconds = budget_s * (1 - VALIDATION_SHARE)
    wanted = steps_wanted(train_seconds)
    slowest = train_seconds / wanted
    widths = [w for w in WIDTHS if fits_in_memory(machine, plan.depth, plan.patch_size, plan.batch_size, w)] or [WIDTHS[0]]
    measured: dict[int, float] = {}
    started = clock()

    def estimate(width: int) -> float:
        return estimated_step_seconds(data, machine, plan.depth, plan.patch_size, plan.batch_size, width, bilinear)

    def seconds(width: int) -> float:
        if width not in measured and (not measured or clock() - started < TIMING_SHARE * budget_s):
            measured[width] = time_step(width)  # as the machine steps now: the run will step the same
        if width in measured:
            return measured[width]
        nearest = min(measured, key=lambda timed: abs(timed - width))
        return measured[nearest] * estimate(width) / estimate(nearest)

    def timed_too_slow(width: int) -> bool:
        return width in measured and measured[width] > slowest

    width = plan.base_width
    if not width_fixed:
        at = widths.index(width) if width in widths else 0
        while at > 0 and seconds(widths[at]) > slowest:
            at -= 1
        width = widths[at]
        for wider in widths[at + 1 :]:  # a width timed too slow is passed over: the next may run faster
            if timed_too_slow(wider):
                continue
            # a narrow network's time is mostly memory-bound and scales less than its multiply-adds: either may be right
            if min(estimate(wider), seconds(width) * estimate(wider) / estimate(width)) > GUESS_REACH * slowest:
                break
            if seconds(wider) > slowest or wider not in measured:  # out of timing allowance: no guessing upwards
                break
            width = wider
    if width not in measured:  # the width chosen is always timed: scaled from another, a 10 s plan was off by 2x
        measured[width] = time_step(width)
    step = seconds(width)
    how = "measured"
    left_s = max(0.0, budget_s - (clock() - started)) * (1 - VALIDATION_SHARE)  # the timing came out of the budget
    planned_steps = max(1, int(left_s / step))
    fits = "at least" if planned_steps >= wanted else "fewer than"
    reasons = [f"width {width}: {planned_steps} steps fit the budget at {step:.2f} s a step, {how} ({fits} the "
               f"{wanted} wanted for this budget)" if reason.startswith("width ") else reason for reason in plan.reasons]
    ema = plan.ema
    if not ema_fixed:  # planned: it follows the measured steps
        ema, line = weight_average(planned_steps)
        reasons = [line if reason.startswith("weight average:") else reason for reason in reasons]
    refined = replace(plan, base_width=width, step_seconds=step, planned_steps=planned_steps, ema=ema, reasons=reasons)
    return refined, measured
