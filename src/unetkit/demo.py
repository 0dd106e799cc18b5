"""`unetkit demo`: the whole job on built-in data, in a few minutes on a laptop CPU.

Synthetic EM-like images (or ISBI 2012 sections 0-24 when UNETKIT_DATA or
--data points at it) -> train with the default recipe for a short budget ->
predict the held-out images (synthetic test images, or ISBI sections 25-29) ->
pixel error and membrane Dice -> image | truth | prediction pictures.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from unetkit.data.io import read_pages
from unetkit.data.synthetic import make_em_dataset, save_pairs
from unetkit.errors import InputError
from unetkit.evaluate import score_masks
from unetkit.plots import plot_panel
from unetkit.predict_files import predict_paths
from unetkit.run import load_run, refuse_inside_inputs
from unetkit.train.recipes import recipe
from unetkit.train.start import train
from unetkit.train.trainer import CURVES_FILE

ISBI_TRAIN = range(0, 25)
ISBI_HELD_OUT = range(25, 30)
MEMBRANE_VALUE = 0  # ISBI encoding, used by the synthetic data too: 0 = membrane, 255 = cell interior
ISBI_PIXEL_SIZE = "4nm"  # the challenge's sections: 4 x 4 nm pixels, 50 nm apart
SYNTHETIC_SIZE = (256, 256)
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 24, 6


def _link_or_copy(source: Path, target: Path) -> None:
    """Link (or copy) source to target; a target that already is the source (a rerun) is kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() and target.resolve() == source.resolve():
        return
    try:
        target.symlink_to(source.resolve())
    except OSError:
        shutil.copyfile(source, target)


def isbi_files(isbi: Path, named_by: str = "--data") -> list[tuple[Path, Path]]:
    """(ISBI file, where it goes under DATA) for sections 0-24 (train) and 25-29 (test); a missing file is an
    error naming what gave the folder (`named_by`: --data, or UNETKIT_DATA when the user set that)."""
    files = [(Path(isbi) / "train" / kind / f"{i}.png", Path(split) / kind / f"{i}.png")
             for split, sections in (("train", ISBI_TRAIN), ("test", ISBI_HELD_OUT))
             for kind in ("image", "label") for i in sections]
    missing = next((source for source, _ in files if not source.is_file()), None)
    if missing is not None:
        raise InputError(f"{missing}: missing; {named_by} must point to the ISBI 2012 folder (train/image, train/label)")
    return files


def link_isbi_subsets(isbi: Path, data_dir: Path) -> tuple[Path, Path]:
    """Link ISBI sections 0-24 and 25-29 into DATA/train and DATA/test (no copies of the data)."""
    for source, target in isbi_files(isbi):
        _link_or_copy(source, data_dir / target)
    return data_dir / "train", data_dir / "test"


def _synthetic_subsets(data_dir: Path, seed: int) -> tuple[Path, Path]:
    images, labels = make_em_dataset(SYNTHETIC_TRAIN + SYNTHETIC_TEST, SYNTHETIC_SIZE, seed=seed)
    save_pairs(data_dir / "train", images[:SYNTHETIC_TRAIN], labels[:SYNTHETIC_TRAIN])
    save_pairs(data_dir / "test", images[SYNTHETIC_TRAIN:], labels[SYNTHETIC_TRAIN:])
    return data_dir / "train", data_dir / "test"


def run_demo(
    out: Path,
    data: Path | None = None,
    budget_s: float = 180.0,
    seed: int = 0,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo into `out` (replacing an earlier demo there); returns the held-out scores."""
    out = Path(out)
    named_by = "--data" if data else "UNETKIT_DATA"
    data = data or (Path(os.environ["UNETKIT_DATA"]) if os.environ.get("UNETKIT_DATA") else None)
    # what can be refused is refused before the folder is replaced or anything is written into it
    config = replace(recipe("default"), budget_s=budget_s, epochs=None, seed=seed)
    if data:
        isbi_files(Path(data), named_by)
        config = replace(config, pixel_size=ISBI_PIXEL_SIZE)  # its PNGs declare none: run.json records it
        refuse_inside_inputs(out, [data])  # the demo's run, predictions and pictures went among the ISBI files
        if Path(data).resolve().is_relative_to(out.resolve()):  # and an earlier demo's folder is replaced whole
            raise InputError(f"{named_by} {data}: is inside --out {out}, which the demo replaces; choose an --out "
                             "outside the data")
    if out.exists():
        if any(out.iterdir()) and not (out / "demo.txt").is_file():
            raise InputError(f"--out {out}: exists and is not an earlier demo output; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "demo.txt").write_text("written by `unetkit demo`; safe to delete\n")
    if data:
        say(f"demo on ISBI 2012 from {data}: sections 0-24 train, 25-29 held out")
        train_dir, test_dir = link_isbi_subsets(Path(data), out / "data")
    else:
        say(f"demo on synthetic EM-like data: {SYNTHETIC_TRAIN} training and {SYNTHETIC_TEST} held-out images of {SYNTHETIC_SIZE[0]} x {SYNTHETIC_SIZE[1]}")
        train_dir, test_dir = _synthetic_subsets(out / "data", seed)
    run_dir = out / "run"
    train(train_dir / "image", train_dir / "label", run_dir, config, progress=progress, say=say)
    run = load_run(run_dir)
    masks = predict_paths(run, [test_dir / "image"], out / "predictions", progress=False, say=say)
    membrane = run.encoding.values.index(MEMBRANE_VALUE)
    scores, panels = [], out / "panels"
    panels.mkdir()
    for mask_file in masks:
        image = read_pages(test_dir / "image" / mask_file.name)[0][0]
        truth = run.encoding.to_classes(read_pages(test_dir / "label" / mask_file.name, labels=True)[0][0], mask_file.name)
        pred = run.encoding.to_classes(read_pages(mask_file, labels=True)[0][0], mask_file.name)
        score = score_masks(pred, truth, run.encoding.num_classes)
        scores.append(score)
        title = f"{mask_file.stem}: pixel error {score['pixel_error']:.3f}, membrane Dice {score['dice'][membrane]:.3f}"
        plot_panel(image, truth, pred, panels / f"{mask_file.stem}.png", title)
    summary = {
        "pixel_error": float(np.mean([s["pixel_error"] for s in scores])),
        "membrane_dice": float(np.mean([s["dice"][membrane] for s in scores])),
        "images": len(scores),
    }
    shutil.copyfile(run_dir / CURVES_FILE, out / CURVES_FILE)
    say(f"held-out images: {summary['images']}  pixel error {summary['pixel_error']:.4f}  membrane Dice {summary['membrane_dice']:.4f}")
    say(f"pictures: {panels}/ (image | truth | prediction), curves: {out / CURVES_FILE}, run: {run_dir}")
    return summary
