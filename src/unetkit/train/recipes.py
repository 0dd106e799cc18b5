"""Named recipes: the defaults of a TrainConfig.

`seed` reproduces the tutorial this project grew from, so every improvement can
be measured against it (see DESIGN.md, "the seed recipe"); it computes in
plain fp32 NCHW like the tutorial. `default` is planned: train/planning.py
chooses patch, batch, width, depth, loss and learning rate from the data and
the measured speed of the machine (the values below are what it starts from,
and what `--no-plan` uses: a 16-wide U-Net on batches of 8 random 128 x 128
patches with AdamW, a cosine schedule, CE + Dice and flip/rotation/intensity
augmentation), stopped by a 10-minute budget, in bf16 where the CPU is faster
with it.

`paper` follows Ronneberger et al. 2015 as far as a CPU allows: the valid
U-Net (23 convolutions, 31 M parameters) on one 572 x 572 tile per step,
cross-entropy weighted by the border weight map (w0 = 10, sigma = 5 px), SGD
with momentum 0.99, elastic deformation on a 3 x 3 grid (10 px), rotations,
shifts and grey-value changes. Where it differs: the paper trained for hours
on a GPU, here a budget (10 minutes by default) stops it; the paper does not
state its learning rate (1e-3 here, with the loss averaged over pixels: 1e-2
diverged within a minute on ISBI with momentum 0.99); the
intensities are normalised as in every unetkit run.
"""

from __future__ import annotations

from unetkit.config import TrainConfig
from unetkit.errors import InputError

RECIPES: dict[str, TrainConfig] = {
    "default": TrainConfig(plan=True),
    "seed": TrainConfig(
        recipe="seed",
        base_width=64,
        depth=4,
        bilinear=True,
        align_corners=True,
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
        align_outputs=False,
        precision="fp32",
        channels_last=False,
    ),
    "paper": TrainConfig(
        recipe="paper",
        model="unet-classic",
        base_width=64,
        depth=4,
        loss="weighted-ce",
        optimizer="sgd",
        lr=1e-3,
        weight_decay=0.0,
        momentum=0.99,
        schedule="constant",
        batch_size=1,
        patch_size=572,
        epochs=None,
        budget_s=600.0,
        augment="paper",
        normalization="percentile",
        select_by="val_dice",
        align_outputs=False,
        tile=572,
    ),
}


def recipe(name: str) -> TrainConfig:
    if name not in RECIPES:
        raise InputError(f"--recipe {name}: unknown; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
