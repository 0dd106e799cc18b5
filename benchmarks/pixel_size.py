"""Predicting images of another pixel size: as they are, and with `predict --match-pixel-size`.

    .venv/bin/python benchmarks/pixel_size.py [--data ../shared/data/isbi2012] [--run RUN | --budget 3m] [--record]

ISBI 2012 sections are 4 nm pixels. A run trained on sections 0-24 (the default recipe, `--budget`, or a given
`--run` trained so) predicts sections 25-29 as they are (4 nm), and as an instrument with other pixels would
have imaged them: resampled to 8 nm (half the size: images smoothed against aliasing, labels by nearest
neighbour) and to 2.67 nm (1.5 times the size). Each is saved as an ImageJ TIFF declaring its pixel size and
predicted twice: as it is, and matched to the training's 4 nm (`--match-pixel-size --training-pixel-size 4nm`,
since the ISBI PNGs declare none). Each row is scored against the labels at that pixel size with `unetkit evaluate`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile
from isbi_runs import add_data_argument, finish, format_table, run_main

from unetkit.config import parse_duration
from unetkit.data.io import read_pages, write_mask
from unetkit.demo import link_isbi_subsets
from unetkit.evaluate import evaluate_paths
from unetkit.predict_files import predict_paths
from unetkit.rescale import nearest, resample_image
from unetkit.run import load_run
from unetkit.train.recipes import recipe
from unetkit.train.start import train

TRAINING_NM = 4.0
SCALES_NM = (8.0, 8 / 3)  # coarser, finer


def write_at(test_dir: Path, target: Path, nm: float) -> Path:
    """Sections 25-29 as imaged with `nm` pixels: ImageJ TIFFs declaring it in target/image, masks in target/label."""
    for image_file in sorted((test_dir / "image").iterdir()):
        image = read_pages(image_file)[0][0]
        label = read_pages(test_dir / "label" / image_file.name)[0][0]
        shape = (round(image.shape[0] * TRAINING_NM / nm), round(image.shape[1] * TRAINING_NM / nm))
        for folder in ("image", "label"):
            (target / folder).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(target / "image" / f"{image_file.stem}.tif", resample_image(image, shape), imagej=True,
                         resolution=(1 / nm, 1 / nm), metadata={"unit": "nm"})
        write_mask(target / "label" / f"{image_file.stem}.png", nearest(label, shape))
    return target


def score(run_dir: Path, data: Path, out: Path, matched: bool) -> list[str]:
    """Predict data/image (matched to 4 nm, or as they are) and score the masks against data/label."""
    predict_paths(load_run(run_dir), [data / "image"], out, progress=False, say=lambda _: None, match_pixel_size=matched,
                  training_pixel_size=f"{TRAINING_NM}nm")
    mean = evaluate_paths(out, data / "label")
    scores, membrane = mean["mean"], mean["classes"].index(0)
    return [f"{scores['pixel_error']:.4f}", f"{scores['dice'][membrane]:.4f}", f"{scores['rand_error']:.4f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--run", type=Path, help="a run trained on ISBI sections 0-24 (default: train one)")
    parser.add_argument("--budget", default="3m", help="training budget when no --run is given (default 3m)")
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    parser.add_argument("--keep", type=Path, help="keep the run, data and predictions here")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="unetkit-pixel-size-"))
    started = time.monotonic()
    train_dir, test_dir = link_isbi_subsets(args.data, work / "data")
    run_dir = args.run
    if run_dir is None:
        run_dir = work / "run"
        config = replace(recipe("default"), budget_s=parse_duration(args.budget), epochs=None)
        train(train_dir / "image", train_dir / "label", run_dir, config, progress=False, say=lambda _: None)
    rows = [["sections 25-29 at", "predicted", "pixel_err", "membrane_dice", "rand_err"]]
    rows.append([f"{TRAINING_NM:.3g} nm (training)", "as they are", *score(run_dir, test_dir, work / "pred-native", False)])
    for nm in SCALES_NM:
        data = write_at(test_dir, work / f"data-{nm:.3g}nm", nm)
        for label, matched in (("as they are", False), ("--match-pixel-size", True)):
            tag = f"{nm:.3g}nm-{'matched' if matched else 'plain'}"
            rows.append([f"{nm:.3g} nm", label, *score(run_dir, data, work / f"pred-{tag}", matched)])
            print("  ".join(rows[-1]), flush=True)
    steps = load_run(run_dir).record["progress"]["step"]
    finish(format_table(rows), started, "Inputs of another pixel size, with and without --match-pixel-size",
           [f"Run: {'given, ' + str(args.run) if args.run else 'the default recipe at ' + args.budget} ({steps} steps) "
            "on sections 0-24; sections 25-29 resampled to each pixel size (images linearly, smoothed when shrunk; "
            "labels by nearest neighbour), scored against their labels at that size"],
           args.record, work, bool(args.keep))


if __name__ == "__main__":
    run_main(main)
