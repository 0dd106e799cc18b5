"""Draw docs/diffusion_synthetic.png: label | real | generated, for the built-in synthetic EM data.

    .venv/bin/python docs/diffusion_figure.py [--budget 5m] [--keep DIR]

The figure of `benchmarks/diffusion.py` shows ISBI data and stays out of the
repository (the data's terms), so the README shows the same experiment on the
synthetic EM-like sections of `unetkit demo`: a label-conditioned diffusion
U-Net is trained on 24 synthetic 256 x 256 sections, then draws an image for
each of eight 128-px label patches of four sections it never saw, next to the
real synthetic image of the same patch.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unetkit.config import parse_duration
from unetkit.data.synthetic import make_em_dataset, save_pairs
from unetkit.diffusion.data import to_image_values
from unetkit.diffusion.generate import generate, grid_image, load_diffusion_run
from unetkit.diffusion.training import DiffusionConfig, train_diffusion

FIGURE = Path(__file__).with_name("diffusion_synthetic.png")
PATCH = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="5m", help="diffusion training time (default 5m)")
    parser.add_argument("--keep", type=Path, help="keep the data and the run here (default: a temporary folder)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="unetkit-diffusion-figure-"))
    images, labels = make_em_dataset(28, (256, 256), seed=0)
    train_images, train_labels = save_pairs(work / "train", images[:24], labels[:24])
    run = work / "diffusion"
    if not (run / "model.safetensors").is_file():
        train_diffusion(train_images, train_labels, run, DiffusionConfig(size=64, budget_s=parse_duration(args.budget)),
                        progress=False)
    real = [images[i, top : top + PATCH, left : left + PATCH] for i in range(24, 28) for top, left in ((0, 0), (128, 128))]
    masks = [labels[i, top : top + PATCH, left : left + PATCH] for i in range(24, 28) for top, left in ((0, 0), (128, 128))]
    diffusion = load_diffusion_run(run)
    maps = torch.from_numpy(np.stack([diffusion.encoding.to_classes(m, "patch") for m in masks]).astype(np.int64))
    drawn = to_image_values(generate(diffusion, len(maps), (PATCH, PATCH), seed=0, labels=maps, steps=50),
                            diffusion.normalization)
    tiles = [tile for mask, image, sample in zip(masks, real, drawn) for tile in (mask, image, np.asarray(sample, np.uint8))]
    Image.fromarray(grid_image(tiles, 6)).save(FIGURE)
    print(f"wrote {FIGURE} (run in {run})")


if __name__ == "__main__":
    main()
