"""Measure what the planner needs: the data's fingerprint and the machine's speed.

The data fingerprint is computed from the class maps already in memory; the
machine's training rate is measured by a few real steps of a small U-Net with
the engine the run will use (same device, precision and memory layout),
because a CPU's speed depends on its vector units, its caches and what else is
running, none of which a table could know.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from unetkit.data.io import write_atomic
from unetkit.data.labels import IGNORE_CLASS
from unetkit.engine import as_batch, autocast, available_memory_bytes, to_memory_format, usable_cores
from unetkit.errors import InputError
from unetkit.models.unet import UNet, UNetConfig
from unetkit.train.planning import DataFingerprint, MachineFingerprint, StepTimer, unet_macs_per_pixel
from unetkit.train.setup import TrainingData

MAX_FINGERPRINT_IMAGES = 16  # enough to estimate fractions and scales; bounded time on big sets
PROBE_WIDTH, PROBE_DEPTH, PROBE_PATCH, PROBE_BATCH = 16, 4, 128, 8
SHORT_BUDGET_S = 120.0  # budgets under 2 minutes: a remembered rate instead of the probe ...
SHORT_PROBE_BATCH = 2  # ... or a 4x cheaper probe
PROBE_STEPS, PROBE_WARMUP = 4, 2  # timed steps after warm-up steps (the first ones build kernels and caches)
WIDTH_STEPS, WIDTH_WARMUP = 3, 1  # the same for each width the planner times (a few widths, so fewer steps)
RATE_MEMORY = "probe-rates.json"  # in $UNETKIT_CACHE, else ~/.cache/unetkit: the best rate measured per machine setting


def rate_memory_path() -> Path:
    return Path(os.environ.get("UNETKIT_CACHE") or Path.home() / ".cache" / "unetkit") / RATE_MEMORY


def _remembered_rates() -> dict[str, float]:
    path = rate_memory_path()
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def remembered_rate(key: str) -> float | None:
    """The best rate measured before for `key`, or None."""
    rate = _remembered_rates().get(key)
    usable = isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate) and rate > 0
    return float(rate) if usable else None  # json reads Infinity and NaN: a damaged file planned a division by zero


def best_known_rate(key: str, measured: float) -> float:
    """The fastest rate ever measured for `key`, this one included, remembered on disk.

    Another program slows a probe down but never speeds it up, so the best
    measurement is the machine's; remembering it makes the plan the same from
    run to run instead of following the probe's noise. Unwritable caches are
    ignored (the measured rate is used).
    """
    path = rate_memory_path()
    known = _remembered_rates()
    best = max(measured, remembered_rate(key) or 0.0)
    if best > (remembered_rate(key) or 0.0):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps({**known, key: best}, indent=1)  # whole or not at all: runs at once share the file
            write_atomic(path, lambda tmp: Path(tmp).write_text(text))
        except (OSError, InputError):  # write_atomic says a failed write as an InputError
            pass
    return best


def object_scale(labels: list[np.ndarray]) -> float:
    """The equivalent diameter of the connected region holding the median pixel, over all classes.

    Weighting regions by area makes it the size of the structures most pixels
    belong to (cells, not the specks of noise in a mask); for EM membrane maps
    it is the size of a cell's interior. A region covering over half of its
    image is the surround, not an object (the background of sparse nuclei),
    and is left out unless nothing else is there. In a sparse mask (with
    unlabelled pixels) a region is a painted stroke, whose area says little of
    the object it lies in: its length does (the longer side of its box).
    """
    diameters, areas, shares = [], [], []
    for label in labels:
        sparse = bool((label == IGNORE_CLASS).any())
        for value in np.unique(label):
            if value == IGNORE_CLASS:  # unlabelled pixels are no structure
                continue
            components, count = ndimage.label(label == value)
            if count == 0:
                continue
            sizes = np.bincount(components.ravel())[1:]
            shares.append(sizes / label.size)
            if sparse:
                boxes = ndimage.find_objects(components)
                diameters.append(np.array([max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes], float))
            else:
                diameters.append(2 * np.sqrt(sizes / np.pi))
            areas.append(sizes)
    if not diameters:
        return 1.0
    diameter, area, share = np.concatenate(diameters), np.concatenate(areas), np.concatenate(shares)
    objects = share <= 0.5
    if objects.any():
        diameter, area = diameter[objects], area[objects]
    order = np.argsort(diameter)
    cumulative = np.cumsum(area[order])
    return float(diameter[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def class_fractions(labels: list[np.ndarray], classes: int) -> tuple[float, ...]:
    """The share of each class among the pixels of these class maps."""
    counts = np.zeros(classes)
    for label in labels:
        counts += np.bincount(label.ravel().astype(np.int64), minlength=classes)[:classes]
    return tuple(float(c) for c in counts / max(1.0, counts.sum()))


def data_fingerprint(data: TrainingData) -> DataFingerprint:
    labels = [y.numpy() for y in data.train.labels]
    sample = labels[:: max(1, len(labels) // MAX_FINGERPRINT_IMAGES)][:MAX_FINGERPRINT_IMAGES]
    fractions = class_fractions(sample, data.encoding.num_classes)
    return DataFingerprint(
        images=len(labels),
        height=int(np.median([y.shape[0] for y in labels])),  # one small image must not shrink every patch: the
        width=int(np.median([y.shape[1] for y in labels])),  # sampler mirror-pads the images smaller than a patch
        channels=data.in_channels,
        classes=data.encoding.num_classes,
        class_fractions=fractions,
        object_scale=object_scale(sample),
        largest_side=max(max(y.shape) for y in labels),
        pixels=sum(int(y.size) for y in labels),
    )


def _fastest_step(
    device: torch.device, dtype: torch.dtype | None, channels_last: bool, config: UNetConfig, patch: int, batch: int,
    warmup: int, steps: int,
) -> float:
    """Seconds of the fastest of `steps` real training steps (after `warmup` untimed ones) of this U-Net on
    random data: other programs only ever slow a step down."""
    generator = torch.Generator().manual_seed(0)
    model = to_memory_format(UNet(config).to(device), channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = as_batch(torch.rand(batch, config.in_channels, patch, patch, generator=generator), device, channels_last)
    labels = torch.randint(0, config.num_classes, (batch, patch, patch), generator=generator).to(device)
    timings = []
    for _ in range(warmup + steps):
        step_started = time.monotonic()
        with autocast(device, dtype):
            logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.monotonic() - step_started)
    return float(np.min(timings[warmup:]))


def measure_training_rate(
    device: torch.device, dtype: torch.dtype | None, channels_last: bool,
    in_channels: int = 1, classes: int = 2, patch: int = PROBE_PATCH, batch: int = PROBE_BATCH,
) -> tuple[float, float]:
    """(multiply-adds per second, seconds spent) of real training steps of a small U-Net on random data."""
    started = time.monotonic()
    config = UNetConfig(in_channels=in_channels, num_classes=classes, base_width=PROBE_WIDTH, depth=PROBE_DEPTH)
    step_s = _fastest_step(device, dtype, channels_last, config, patch, batch, PROBE_WARMUP, PROBE_STEPS)
    macs = 3 * unet_macs_per_pixel(PROBE_WIDTH, PROBE_DEPTH, in_channels, classes) * batch * patch**2
    return macs / step_s, time.monotonic() - started


def step_timer(
    device: torch.device, dtype: torch.dtype | None, channels_last: bool, in_channels: int, classes: int,
    depth: int, patch: int, batch: int, residual: bool = False, bilinear: bool = True,
) -> StepTimer:
    """width -> seconds of a real training step of the padded U-Net with the planned depth, patch and batch, and
    the run's upsampling and blocks (planning.refine_width decides which widths to time)."""
    def time_step(width: int) -> float:
        config = UNetConfig(in_channels=in_channels, num_classes=classes, base_width=width, depth=depth,
                            bilinear=bilinear, residual=residual)
        return _fastest_step(device, dtype, channels_last, config, patch, batch, WIDTH_WARMUP, WIDTH_STEPS)

    return time_step


# A run stopped by --epochs alone is planned for a reference machine of its kind, not for this one as busy as it
# is now: the same command and seed then build the same network and give the same run. The CPU figures are this
# project's 2-core machine (110-126 G multiply-adds/s measured in bf16); the GPU's a conservative modern card.
REFERENCE_RATE = {"cpu": 1.2e11, "cuda": 1.0e13}
PRECISION_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}  # autocast dtype -> the plan's word
REFERENCE_CPU_MEMORY_GIB = 16.0


def reference_machine(device: torch.device, dtype: torch.dtype | None) -> MachineFingerprint:
    """The machine an --epochs run is planned for: fixed rate and memory (a GPU's own total memory, which is fixed)."""
    precision = PRECISION_NAMES[dtype]
    memory = (torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda"
              else REFERENCE_CPU_MEMORY_GIB)
    return MachineFingerprint(device.type, usable_cores(), round(memory, 1), precision, REFERENCE_RATE[device.type])


def machine_fingerprint(
    device: torch.device, dtype: torch.dtype | None, channels_last: bool, in_channels: int, classes: int, patch: int,
    budget_s: float | None = None,
) -> tuple[MachineFingerprint, float]:
    """The machine's fingerprint and the seconds the probe took (they count against the budget).

    A budget under SHORT_BUDGET_S does not pay for a probe when the rate is remembered (the probe only
    ever confirms or raises it), and probes with a smaller batch when it is not: a 20 s run cannot give
    the probe 3 s, nor 14 s when another program is busy.
    """
    probe_patch = max(16, min(PROBE_PATCH, patch // 16 * 16))
    precision = PRECISION_NAMES[dtype]
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    key = (f"{hardware}|{_cpu_model()}|{usable_cores()} cores|torch {torch.__version__}|{precision}|"
           f"{'nhwc' if channels_last else 'nchw'}|{in_channels}->{classes}|{probe_patch}")
    short = budget_s is not None and budget_s < SHORT_BUDGET_S
    remembered = remembered_rate(key)
    slowdown = 1.0
    if short and remembered:
        rate, seconds = remembered, 0.0
    else:
        measured, seconds = measure_training_rate(device, dtype, channels_last, in_channels, classes, probe_patch,
                                                  batch=SHORT_PROBE_BATCH if short else PROBE_BATCH)
        rate = best_known_rate(key, measured)
        slowdown = rate / measured
    memory = (torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda"
              else available_memory_bytes() / 2**30)
    return MachineFingerprint(device.type, usable_cores(), round(memory, 1), precision, rate, round(slowdown, 3)), seconds


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        return ""
