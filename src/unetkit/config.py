"""The training configuration: one frozen dataclass, saved as JSON in run.json.

Recipes (train/recipes.py) give its defaults; command-line flags override single
fields. Nothing else decides how a run trains, so run.json says it all.
"""

from __future__ import annotations

import math
import re

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from unetkit.data.calibration import parse_length
from unetkit.errors import InputError


# Beyond these a typo, not a design: depth 20 pools a 512-px image to nothing and asks for tens of GB.
MAX_WIDTH = 512
MAX_BATCH = 4096  # patches a step; 100000 of them is a typo that ends in a memory error
MAX_BUDGET_S = 30 * 86400.0
MAX_DEPTH = 8
SEED_LIMIT = 2**32  # the random generators take 32 bits: seed 2**32 trained exactly as seed 0

# TrainConfig fields (and argparse destinations) whose command-line flag has another name
FLAG_OF = {"base_width": "--width", "bilinear": "--upsampling", "start_from": "--from", "align_outputs": "--no-align"}


def flag_of(name: str) -> str:
    """The flag a user types for a TrainConfig field or argparse destination: base_width -> --width."""
    return FLAG_OF.get(name, "--" + name.replace("_", "-"))


_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
_TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "True or False", "str": "a word", "None": "None"}


def _check_field_types(config: Any) -> None:
    """Refuse a field of the wrong type (the Python API's base_width="16", a hand-edited run.json) with one line,
    not a TypeError deep in training; a whole float where a whole number is wanted (16.0) is taken as one. The
    CLI's parser already gives the right types."""
    for field in fields(config):
        if field.name == "ignore_value":  # its own check says how to write a colour
            continue
        value = getattr(config, field.name)
        allowed = [part.strip() for part in str(field.type).split("|")]
        if value is None and "None" in allowed:
            continue
        kinds = tuple(kind for part in allowed for kind in _TYPES.get(part, ()))
        if not kinds:
            continue
        if int in kinds and float not in kinds and isinstance(value, float) and value.is_integer():
            object.__setattr__(config, field.name, int(value))  # base_width=16.0 (a computed width, a JSON 16.0) is 16
            continue
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            words = " or ".join(_TYPE_WORDS.get(part, part) for part in allowed)
            raise InputError(f"{flag_of(field.name)} {value!r}: must be {words}")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: architecture choices, loss, optimiser, sampling, stopping, selection."""

    recipe: str = "default"
    model: str = "unet"  # "unet" (padded) | "unet-classic" (the paper's valid network)
    base_width: int = 16
    depth: int | None = 4  # None for the FCN, which has no such choice
    bilinear: bool = True
    align_corners: bool = False  # bilinear upsampling as in the tutorial (True) or shift-equivariant (False)
    residual: bool = False  # each double convolution of the padded U-Net adds its input back (ResNet's basic block)
    single_logit: bool = False  # one sigmoid output for two classes (the seed recipe), else K softmax outputs
    loss: str = "ce+dice"
    optimizer: str = "adamw"  # "adamw" | "rmsprop" | "sgd"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"  # "cosine" (decays over the epochs or the budget) | "constant"
    batch_size: int = 8
    patch_size: int | None = 128  # None: whole images
    epochs: int | None = None
    budget_s: float | None = 600.0  # wall-clock limit including validation and saving
    augment: str = "default"  # "default" | "paper" (elastic, rotation, grey values) | "strong" | "seed" | "none"
    normalization: str = "percentile"  # "percentile" | "scale"
    select_by: str = "val_dice"  # "val_dice" (best validation) | "train_loss" (lowest single-batch loss, the seed's rule)
    synthetic: str | None = None  # a label-conditioned diffusion run whose samples join the training patches
    synthetic_fraction: float = 0.25  # share of the training patches drawn from the synthetic pairs
    synthetic_count: int = 64  # synthetic pairs generated before training (their time counts against the budget)
    align_outputs: bool = True  # measure on the validation images a sub-pixel shift of the outputs that fits the labels (alignment.py)
    ema: float = 0.0  # decay of an exponential moving average of the weights, validated and saved instead (0: off)
    val_fraction: float = 0.2
    ignore_value: int | None = None  # mask value of unlabelled pixels (sparse labels): no loss, no score, not a class
    pixel_size: str | None = None  # the training images' pixel size ("4nm") where their files declare none or a wrong one
    match_pixel_size: bool = False  # resample training images that declare other pixel sizes to their median one
    mask_kind: str = "auto"  # "classes" (values are classes) | "instances" (object ids: objects and the borders between them) | "auto" (classes; instance ids, smoothed edges, another encoding refused)
    tile: int = 512  # window size for validation, and for predicting with the unpadded U-Net (padded ones size windows by memory)
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    precision: str = "auto"  # "auto" (bf16 where it is faster, AMP on a GPU) | "fp32" | "bf16" | "fp16" (GPU)
    channels_last: bool = True  # NHWC tensors: the fast layout for oneDNN and cuDNN convolutions
    plan: bool = False  # let train/planning.py choose what the user did not fix (the default recipe does)

    def __post_init__(self) -> None:
        _check_field_types(self)
        if not 0 <= self.seed < SEED_LIMIT:
            raise InputError(f"--seed {self.seed}: must be 0 to {SEED_LIMIT - 1}")
        if self.epochs is None and self.budget_s is None:
            raise InputError("give --epochs N or --budget TIME (e.g. 10m) so training knows when to stop")
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"--epochs {self.epochs}: must be at least 1")
        if self.budget_s is not None and not 0 < self.budget_s <= MAX_BUDGET_S:
            raise InputError(f"--budget {self.budget_s:g}s: must be positive and at most {MAX_BUDGET_S // 86400:.0f} days")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise InputError(f"--batch-size {self.batch_size}: must be 1 to {MAX_BATCH}")
        if self.synthetic_count < 1:
            raise InputError(f"--synthetic-count {self.synthetic_count}: must be at least 1")
        if self.patch_size is not None and self.patch_size < 8:
            raise InputError(f"--patch-size {self.patch_size}: must be at least 8 pixels")
        if not 0.0 <= self.synthetic_fraction < 1.0:
            raise InputError(f"--synthetic-fraction {self.synthetic_fraction}: must be in [0, 1)")
        if not 0.0 <= self.ema < 1.0:
            raise InputError(f"--ema {self.ema}: must be in [0, 1), e.g. 0.995 (0 turns it off)")
        if self.ema and self.select_by == "train_loss":
            raise InputError(f"--ema {self.ema}: recipe {self.recipe} keeps the weights of its lowest training loss, not an "
                             "average; drop --ema or choose another recipe")
        if not (math.isfinite(self.lr) and self.lr > 0):  # nan fails every comparison; inf trains nothing useful
            raise InputError(f"--lr {self.lr}: must be a positive number, e.g. 1e-3")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise InputError(f"weight_decay {self.weight_decay}: must be a number >= 0")
        if self.ignore_value is not None and (isinstance(self.ignore_value, bool) or not isinstance(self.ignore_value, int)):
            raise InputError(f"--ignore-value {self.ignore_value!r}: give a mask value as a number, or a colour as "
                             "\"R,G,B\" (the API also takes an (R, G, B) tuple)")
        if self.ignore_value is not None and self.loss == "weighted-ce":
            raise InputError(f"--ignore-value {self.ignore_value}: the paper's border weights (--loss weighted-ce, recipe "
                             f"{self.recipe}) need fully labelled masks; give --loss ce or ce+dice")
        if self.ignore_value is not None and self.mask_kind == "instances":
            raise InputError(f"--ignore-value {self.ignore_value}: instance masks (--mask-kind instances) have no "
                             "unlabelled value; every pixel is an object id or the background")
        if self.ignore_value is not None and self.synthetic:
            raise InputError(f"--ignore-value {self.ignore_value}: synthetic pairs are drawn for fully labelled masks; "
                             "drop --synthetic or --ignore-value")
        if self.pixel_size is not None:
            parse_length(self.pixel_size, "--pixel-size")  # refused at once, not after the data is read
        if self.pixel_size is not None and self.match_pixel_size:
            raise InputError(f"--pixel-size {self.pixel_size} says every training image has that size, so there is nothing "
                             "for --match-pixel-size to match; drop one")
        if self.residual and self.model != "unet":
            raise InputError(f"--residual: only the padded U-Net (--model unet) has residual blocks, not {self.model}")
        if not (2 <= self.base_width <= MAX_WIDTH and (self.depth is None or 1 <= self.depth <= MAX_DEPTH)):
            raise InputError(f"--width {self.base_width} / --depth {self.depth}: width must be 2 to {MAX_WIDTH} and "
                             f"depth 1 to {MAX_DEPTH} (the paper's U-Net: width 64, depth 4)")
        if self.base_width % 2 and self.model == "unet":
            raise InputError(f"--width {self.base_width}: must be even (the bilinear U-Net halves it), e.g. {self.base_width + 1}")
        for name, value, allowed in [
            ("--optimizer", self.optimizer, ("adamw", "rmsprop", "sgd")),
            ("--schedule", self.schedule, ("cosine", "constant")),
            ("--augment", self.augment, ("default", "paper", "strong", "seed", "none")),
            ("--select-by", self.select_by, ("val_dice", "train_loss")),
            ("--device", self.device, ("auto", "cpu", "cuda")),
            ("--precision", self.precision, ("auto", "fp32", "bf16", "fp16")),
            ("--mask-kind", self.mask_kind, ("auto", "classes", "instances")),
        ]:
            if value not in allowed:
                raise InputError(f"{name} {value}: unknown; choose one of {', '.join(allowed)}")

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        """A copy with the given fields replaced; None values mean "not given" and are skipped."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        data = {"align_outputs": False, **data}  # runs saved before label alignment existed continue without it
        return cls(**{k: v for k, v in data.items() if k in known})


_DURATION = re.compile(r"((?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*([hms])")


def parse_duration(text: str) -> float:
    """'90s', '10m', '1.5h', '1m30s', '1h 15m' -> seconds. A bare number is refused: `--budget 30` meant
    30 minutes to some and gave them a 30-second model."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    text = text.strip().lower()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        raise InputError(f"--budget {text}: give a unit, e.g. {number:g}s or {number:g}m (a bare number could be either)")
    sign, body = (-1.0, text[1:]) if text.startswith("-") else (1.0, text)  # the budget's own check explains negatives
    parts = _DURATION.findall(body)
    if not parts or _DURATION.sub("", body).strip() or len({unit for _, unit in parts}) < len(parts):
        raise InputError(f"--budget {text}: not a duration; write e.g. 90s, 10m, 1m30s or 1.5h")
    seconds = sign * sum(float(number) * units[unit] for number, unit in parts)
    if not math.isfinite(seconds) or abs(seconds) > MAX_BUDGET_S:  # said here with what was typed, not as "infs"
        raise InputError(f"--budget {text}: must be positive and at most {MAX_BUDGET_S // 86400:.0f} days")
    return seconds
