"""Predict files, folders and stacks with a trained run, and write masks in the label encoding.

Outputs are named after the input's stem (name.png for name.png or name.tif; a
stack gives one stack, name.tif). The output folder is marked as unetkit's, so
a later run refuses to take it as input, and it may never be an input folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from unetkit.data.io import list_image_files, read_pages, write_mask, write_tiff
from unetkit.errors import InputError
from unetkit.predict import predict_probabilities
from unetkit.run import Run, load_run
from unetkit.devices import resolve_device

OUTPUT_MARKER = ".unetkit-predictions"


def _input_folders(inputs: list[Path]) -> set[Path]:
    return {(p if p.is_dir() else p.parent).resolve() for p in inputs}


def check_output_folder(out: Path, inputs: list[Path]) -> None:
    """Refuse an output folder that is an input folder, or that we cannot write, before any work starts."""
    out = Path(out)
    if out.resolve() in _input_folders(inputs):
        raise InputError(f"--out {out}: is an input folder; predictions never go beside the inputs, choose another --out")
    for path in inputs:
        folder = path if path.is_dir() else path.parent
        if (folder / OUTPUT_MARKER).exists():
            raise InputError(f"{path}: is a folder of unetkit predictions, not of images; give the folder with the images")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{np.random.randint(1 << 30)}"
        probe.write_bytes(b"")
        probe.unlink()
        (out / OUTPUT_MARKER).touch()
    except OSError as exc:
        raise InputError(f"--out {out}: not writable ({exc.strerror}); choose a folder you can write to") from None


def predict_paths(
    run: Run | Path,
    inputs: list[Path],
    out: Path,
    tta: bool = False,
    write_probabilities: bool = False,
    device: str = "auto",
    tile: int | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> list[Path]:
    """Predict every image of `inputs` into `out`; returns the mask files written."""
    inputs = [Path(p) for p in inputs]
    torch_device = resolve_device(device)
    if not isinstance(run, Run):
        run = load_run(run, torch_device)
    files = [f for path in inputs for f in list_image_files(path)]
    names = [f.stem for f in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"inputs share the stem {duplicates[0]!r}; outputs would overwrite each other, predict them separately")
    check_output_folder(out, inputs)
    tile = tile or run.config.tile
    written: list[Path] = []
    for file in tqdm(files, desc="predict", unit="file", disable=not progress):
        pages, _ = read_pages(file)
        masks, probabilities = [], []
        for index, page in enumerate(pages):
            source = f"{file}[{index}]" if len(pages) > 1 else str(file)
            image = torch.from_numpy(run.normalization.apply(page, source))
            probs = predict_probabilities(run.model, image, tile=tile, tta=tta, device=torch_device)
            masks.append(run.encoding.to_values(probs.argmax(0).numpy()))
            if write_probabilities:
                probabilities.append(probs.numpy().astype(np.float32))
        if len(pages) > 1:
            target = Path(out) / f"{file.stem}.tif"
            write_tiff(target, np.stack(masks))
        else:
            target = Path(out) / f"{file.stem}.png"
            write_mask(target, masks[0], list(run.encoding.palette) if run.encoding.palette else None)
        if write_probabilities:
            write_tiff(Path(out) / f"{file.stem}_prob.tif", np.stack(probabilities) if len(pages) > 1 else probabilities[0])
        written.append(target)
    say(f"wrote {len(written)} mask(s) to {out}")
    return written
