"""Does the diffusion U-Net draw EM images that fit their label maps, and do its pairs help segmentation? (issue 6)

    .venv/bin/python benchmarks/diffusion.py [--data ../shared/data/isbi2012] [--budget 20m] [--seg-budget 10m]
                                             [--patch 128] [--keep DIR] [--quick]

1. Train a label-conditioned diffusion U-Net (`unetkit diffusion train --labels`,
   64 x 64 patches) on ISBI sections 0-24 for --budget.
2. Train the default segmentation U-Net on the real sections 0-24 for --seg-budget.
3. (a) Consistency: cut --patch-sized label patches from the held-out sections
   25-29, generate one image for each (DDIM, 50 steps), segment the generated
   images with the model of step 2 and score membrane Dice against the labels
   they were generated for. The real images of the same patches, segmented by
   the same model, give the reference value.
4. (b) Train the default segmentation U-Net again for --seg-budget with
   `--synthetic` pairs from the diffusion run (their generation inside the
   budget; the same planned network and training as step 2) and compare the
   challenge scores on sections 25-29.
Writes benchmarks/diffusion_samples.png (generated images, drawn for ISBI label
patches) and benchmarks/diffusion_pairs.png (label | real | generated); both come
from the ISBI data and are git-ignored. Appends the tables to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from isbi_runs import SCORE_COLUMNS, add_data_argument, append_results, format_table, machine, run_main, train_and_score
from unetkit.config import parse_duration
from unetkit.demo import ISBI_HELD_OUT, link_isbi_subsets
from unetkit.diffusion.data import to_image_values
from unetkit.diffusion.generate import generate, grid_image, load_diffusion_run
from unetkit.diffusion.training import DiffusionConfig, train_diffusion
from unetkit.metrics import dice_per_class
from unetkit.predict import predict_probabilities
from unetkit.run import load_run
from unetkit.train.recipes import recipe

HERE = Path(__file__).parent
SAMPLES_PICTURE = HERE / "diffusion_samples.png"
PAIRS_PICTURE = HERE / "diffusion_pairs.png"
MEMBRANE = 0  # class index of the membrane (label value 0)


def held_out_patches(test_dir: Path, patch: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Four corner patches of each held-out section: (images, labels as 0/255 arrays)."""
    images, labels = [], []
    for section in ISBI_HELD_OUT:
        image = np.array(Image.open(test_dir / "image" / f"{section}.png"))
        label = np.array(Image.open(test_dir / "label" / f"{section}.png"))
        for top in (0, image.shape[0] - patch):
            for left in (0, image.shape[1] - patch):
                images.append(image[top : top + patch, left : left + patch])
                labels.append(label[top : top + patch, left : left + patch])
    return images, labels


def membrane_dice(run_dir: Path, images: list[np.ndarray], labels: list[np.ndarray]) -> float:
    """Mean membrane Dice of the segmentation run's masks of `images` against `labels`."""
    run = load_run(run_dir)
    scores = []
    for image, label in zip(images, labels):
        tensor = torch.from_numpy(run.normalization.apply(image))
        probs = predict_probabilities(run.model, tensor, amp_dtype=run.amp_dtype, shift=run.output_shift)
        truth = run.encoding.to_classes(label, "patch")
        scores.append(dice_per_class(probs.argmax(0).numpy(), truth, 2)[MEMBRANE])
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--budget", default="20m", help="diffusion training time (default 20m)")
    parser.add_argument("--seg-budget", default="10m", help="segmentation training time, each run (default 10m)")
    parser.add_argument("--patch", type=int, default=128, help="side of the held-out label patches (default 128)")
    parser.add_argument("--quick", action="store_true", help="smoke run: seconds of training, nothing recorded")
    parser.add_argument("--keep", type=Path, help="keep runs here (default: a temporary folder)")
    args = parser.parse_args()
    budget_s, seg_budget_s = (20.0, 30.0) if args.quick else (parse_duration(args.budget), parse_duration(args.seg_budget))
    work = args.keep or Path(tempfile.mkdtemp(prefix="unetkit-diffusion-"))
    train_dir, test_dir = link_isbi_subsets(args.data, work / "data")
    started = time.monotonic()

    diffusion_run = work / "diffusion"
    config = DiffusionConfig(size=64, budget_s=budget_s, base_width=8 if args.quick else 32)
    if not (diffusion_run / "model.safetensors").is_file():
        train_diffusion(train_dir / "image", train_dir / "label", diffusion_run, config, progress=False)
    seg_config = replace(recipe("default"), budget_s=seg_budget_s, epochs=None)
    real_cells = train_and_score(seg_config, train_dir, test_dir, work / "seg-real", work / "pred-real")

    images, labels = held_out_patches(test_dir, 32 if args.quick else args.patch)
    diffusion = load_diffusion_run(diffusion_run)
    maps = torch.from_numpy(np.stack([diffusion.encoding.to_classes(label, "patch") for label in labels]).astype(np.int64))
    generate_started = time.monotonic()
    generated = to_image_values(generate(diffusion, len(maps), maps.shape[-2:], seed=0, labels=maps,
                                         steps=5 if args.quick else 50), diffusion.normalization)
    generate_s = time.monotonic() - generate_started
    dice_generated = membrane_dice(work / "seg-real", list(generated), labels)
    dice_real = membrane_dice(work / "seg-real", images, labels)

    planned = json.loads((work / "seg-real" / "run.json").read_text())["config"]  # the same network and training
    same_plan = {k: planned[k] for k in ("base_width", "depth", "patch_size", "batch_size", "loss", "lr", "ema")}
    synthetic_config = replace(seg_config, plan=False, synthetic=str(diffusion_run), **same_plan,
                               **({"synthetic_count": 4} if args.quick else {}))
    synthetic_cells = train_and_score(synthetic_config, train_dir, test_dir, work / "seg-synthetic", work / "pred-synthetic")
    total = time.monotonic() - started

    consistency = format_table([
        ["images segmented", "patches", "membrane_dice vs the labels"],
        ["real sections 25-29 (reference)", str(len(images)), f"{dice_real:.4f}"],
        ["generated for their labels", str(len(images)), f"{dice_generated:.4f}"],
    ])
    training = format_table([
        ["segmentation training", *SCORE_COLUMNS],
        ["real pairs only", *real_cells.values()],
        [f"real + synthetic ({synthetic_config.synthetic_fraction:.0%} of patches)", *synthetic_cells.values()],
    ])
    print(consistency, "\n", training, sep="\n")
    print(f"\ngeneration: {len(images)} images of {args.patch} px in {generate_s:.0f} s; total {total:.0f} s; {machine()}")
    samples = [np.asarray(g, dtype=np.uint8) for g in generated[:8]]
    if not args.quick:
        Image.fromarray(grid_image(samples, 4)).save(SAMPLES_PICTURE)
        pairs = [tile for label, image, sample in zip(labels[:8], images[:8], samples) for tile in (label, image, sample)]
        Image.fromarray(grid_image(pairs, 6)).save(PAIRS_PICTURE)
        append_results("Diffusion U-Net: label-conditioned EM images (issue 6)", [
            f"Diffusion: {config.base_width}-wide U-Net, {config.size}-px patches, {budget_s:.0f} s "
            f"({load_run_steps(diffusion_run)} steps); segmentation runs {seg_budget_s:.0f} s each; total {total:.0f} s",
            f"Generation: {len(images)} label patches of {args.patch} px from sections 25-29, DDIM 50 steps, {generate_s:.0f} s",
            "Pictures (drawn from ISBI data, not committed): benchmarks/diffusion_samples.png, benchmarks/diffusion_pairs.png",
        ], consistency + "\n\n" + training)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def load_run_steps(run_dir: Path) -> int:
    return int(json.loads((run_dir / "run.json").read_text())["progress"]["step"])


if __name__ == "__main__":
    run_main(main)
