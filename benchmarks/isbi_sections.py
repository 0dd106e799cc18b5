"""Where a trained run's pixel error comes from, section by section of ISBI 2012: the images, the labels, the run.

    .venv/bin/python benchmarks/isbi_sections.py [--data ../shared/data/isbi2012] [--run DIR ...] [--tta] [--record]

No training; a few seconds per run (eight times that with --tta). For each of the 30 labelled sections:

* `fine`: the share of the image's spectral power above 3/8 cycles per pixel
  (per mille). Filtered or differently acquired sections stand out here;
* `membrane`: the label's membrane fraction;
* `width_px`: the label's mean membrane width, membrane pixels per pixel of
  their skeleton (annotators draw some sections thinner than others).

For each --run, each section's pixel error as `unetkit predict` makes it (with
--tta as `unetkit predict --tta` does) and the predicted minus the labelled
membrane fraction (`bias`). A last line per run gives the probability threshold
that minimises the pixel error of the run's own validation sections and what it
does to sections 25-29 against the 0.5 of the argmax masks (would a threshold
tuned on held-out labels help?), the best single threshold for 25-29, and an
oracle: each of 25-29 at the threshold best for its own labels, a bound on
what any recalibration of these probabilities could reach.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from isbi_runs import add_data_argument, append_results, format_table, run_main
from PIL import Image
from skimage.morphology import skeletonize

from unetkit.predict import predict_probabilities
from unetkit.run import Run, load_run

SECTIONS = range(30)
TEST = range(25, 30)
MEMBRANE = 0  # ISBI labels: 0 = membrane, 255 = cell interior
FINE_CYCLES = 3 / 8  # of a cycle per pixel; Nyquist is 1/2
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.025), 3)


def fine_detail(image: np.ndarray) -> float:
    """Share (per mille) of the zero-mean image's spectral power above FINE_CYCLES cycles per pixel.

    A Hann window first, so that the jump between opposite borders (the FFT's wrap-around) adds no false detail.
    """
    values = (image.astype(np.float64) - image.mean()) * np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    power = np.abs(np.fft.fft2(values)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(values.shape[0]), np.fft.fftfreq(values.shape[1]), indexing="ij")
    return float(1000 * power[np.hypot(fy, fx) > FINE_CYCLES].sum() / power.sum())


def membrane_width(membrane: np.ndarray) -> float:
    """Mean width of the drawn membranes: their area over the length of their skeleton."""
    return float(membrane.sum() / max(int(skeletonize(membrane).sum()), 1))


def run_probabilities(run: Run, image: np.ndarray, name: str, tta: bool = False) -> np.ndarray:
    """The membrane probability `unetkit predict` computes for one section (whole image, the run's alignment)."""
    normalised = torch.from_numpy(run.normalization.apply(image, name))
    probs = predict_probabilities(run.model, normalised, amp_dtype=run.amp_dtype, shift=run.output_shift, tta=tta)
    return probs[run.encoding.values.index(MEMBRANE)].numpy()


def errors_by_threshold(probability: np.ndarray, membrane: np.ndarray) -> np.ndarray:
    return np.array([np.mean((probability > t) != membrane) for t in THRESHOLDS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--run", type=Path, action="append", default=[], help="a trained run folder; repeat for more")
    parser.add_argument("--tta", action="store_true", help="predict with test-time augmentation (8 passes)")
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    started = time.monotonic()
    folder = args.data / "train"
    images = [np.asarray(Image.open(folder / "image" / f"{i}.png")) for i in SECTIONS]
    membranes = [np.asarray(Image.open(folder / "label" / f"{i}.png")) == MEMBRANE for i in SECTIONS]
    runs = [load_run(path) for path in args.run]
    header = ["section", "fine", "membrane", "width_px"]
    for k in range(len(runs)):
        header += [f"err_{k}", f"bias_{k}"]
    rows = [[str(i), f"{fine_detail(images[i]):.2f}", f"{membranes[i].mean():.3f}", f"{membrane_width(membranes[i]):.2f}"]
            for i in SECTIONS]
    summary = []
    for k, run in enumerate(runs):
        validation = {int(name) for name in run.record["data"]["val"]}
        val_errors, test_errors = np.zeros(len(THRESHOLDS)), np.zeros(len(THRESHOLDS))
        oracle = 0.0
        for i in SECTIONS:
            probability = run_probabilities(run, images[i], str(i), args.tta)
            predicted = probability > 0.5
            rows[i] += [f"{np.mean(predicted != membranes[i]):.4f}", f"{predicted.mean() - membranes[i].mean():+.3f}"]
            if i in validation:
                val_errors += errors_by_threshold(probability, membranes[i]) / len(validation)
            if i in TEST:
                section_errors = errors_by_threshold(probability, membranes[i])
                test_errors += section_errors / len(TEST)
                oracle += section_errors.min() / len(TEST)
        half, tuned = int(np.flatnonzero(THRESHOLDS == 0.5)[0]), int(np.argmin(val_errors))
        summary.append(f"run {k} ({args.run[k]}): validation sections {min(validation)}-{max(validation)}: threshold "
                       f"{THRESHOLDS[tuned]:.3f} (error {val_errors[tuned]:.4f}, at 0.5 {val_errors[half]:.4f}); sections "
                       f"25-29 at it {test_errors[tuned]:.4f}, at 0.5 {test_errors[half]:.4f}, at their own best "
                       f"{test_errors.min():.4f} ({THRESHOLDS[int(np.argmin(test_errors))]:.3f}), each at its own best "
                       f"(oracle) {oracle:.4f}")
    table = format_table([header] + rows)
    body = table + ("\n\n" + "\n".join(summary) if summary else "")
    print(body)
    print(f"total {time.monotonic() - started:.0f} s")
    if args.record:
        details = [f"Total {time.monotonic() - started:.0f} s", "Predictions with TTA" if args.tta else "Predictions without TTA"]
        details += [f"Run {k}: {path}" for k, path in enumerate(args.run)]
        append_results("Pixel error section by section on ISBI 2012 (issue 5)", details, body)


if __name__ == "__main__":
    run_main(main)
