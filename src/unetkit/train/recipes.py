"""Named recipes: the defaults of a TrainConfig.

`seed` reproduces the tutorial this project grew from, so every improvement can
be measured against it (see DESIGN.md, "the seed recipe"). `default` is a
CPU-friendly starting point: a 16-wide U-Net (about 3.6 times the throughput of
a 32-wide one on 2 cores) on batches of 8 random 128 x 128 patches with AdamW, a
cosine schedule, CE + Dice and flip/rotation/intensity augmentation, stopped by
a 10-minute budget.
"""

from __future__ import annotations

from unetkit.config import TrainConfig
from unetkit.errors import InputError

RECIPES: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    "seed": TrainConfig(
        recipe="seed",
        base_width=64,
        depth=4,
        bilinear=True,
        single_logit=True,
        loss="bce",
        optimizer="rmsprop",
        lr=1e-5,
        weight_decay=1e-8,
        momentum=0.9,
        schedule="constant",
        batch_size=1,
        patch_size=None,
        epochs=40,
        budget_s=None,
        augment="seed",
        normalization="scale",
        select_by="train_loss",
    ),
}


def recipe(name: str) -> TrainConfig:
    if name not in RECIPES:
        raise InputError(f"--recipe {name}: unknown; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
