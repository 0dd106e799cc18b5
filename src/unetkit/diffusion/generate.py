"""Sample images from a trained diffusion run: unconditionally, or one image per given label map.

    unetkit diffusion sample RUN --n 16 --out DIR                 DIR/sample_000.png ..., DIR/grid.png
    unetkit diffusion sample RUN --labels MASKS --out DIR         DIR/NAME.png beside DIR/NAME_label.png
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from unetkit.data.io import first_clash, list_image_files, read_pages, write_atomic, write_mask, write_tiff
from unetkit.data.labels import LabelEncoding
from unetkit.data.normalize import Normalization
from unetkit.devices import resolve_device
from unetkit.diffusion.data import to_image_values
from unetkit.diffusion.samplers import classifier_free_guidance, ddim_sample, ddim_timesteps, ddpm_sample
from unetkit.diffusion.samples_folder import earlier_samples, record_samples
from unetkit.diffusion.schedule import NoiseSchedule, make_schedule
from unetkit.diffusion.training import DiffusionConfig
from unetkit.engine import autocast, autocast_dtype, inference_precision
from unetkit.errors import InputError
from unetkit.folder_lock import folder_lock
from unetkit.models.diffusion_unet import DiffusionUNet, DiffusionUNetConfig
from unetkit.run import damage_named, read_run_json
from unetkit.text import counted
from unetkit.train.checkpoint import WEIGHTS_FILE, load_weights

MAX_SAMPLE_SIZE = 4096  # unconditional sample side: one 4096^2 sample already needs several GB
MAX_GUIDANCE = 100.0

SAMPLERS = ("ddim", "ddpm")


@dataclass
class DiffusionRun:
    path: Path
    config: DiffusionConfig
    model: DiffusionUNet
    schedule: NoiseSchedule
    normalization: Normalization
    encoding: LabelEncoding | None
    amp_dtype: torch.dtype | None
    trained_on: list[Path]  # the folders of its training images and labels: samples never go there


def load_diffusion_run(run_dir: Path, device: str | torch.device = "cpu") -> DiffusionRun:
    run_dir = Path(run_dir)
    record = read_run_json(run_dir, writer="unetkit diffusion train")
    if record.get("kind") != "diffusion":
        raise InputError(f"{run_dir}: is a segmentation run; give a run written by `unetkit diffusion train`")
    with damage_named(run_dir):  # a field the checks refuse, or a missing one, named as run.json's
        config = DiffusionConfig.from_json(record["config"])
        model = DiffusionUNet(DiffusionUNetConfig(**record["model"]["options"]))
        normalization = Normalization.from_json(record["normalization"])
        encoding = LabelEncoding.from_json(record["classes"]) if record.get("classes") else None
    load_weights(run_dir / WEIGHTS_FILE, model)
    device = torch.device(device)
    model = model.to(device).eval()
    data = record.get("data") or {}
    trained_on = [Path(data[key]) for key in ("images", "labels") if data.get(key)]
    return DiffusionRun(run_dir, config, model, make_schedule(config.schedule, config.timesteps), normalization,
                        encoding, autocast_dtype(device, inference_precision(device, config.precision)), trained_on)


@torch.no_grad()
def generate(
    run: DiffusionRun, count: int, size: tuple[int, int], seed: int = 0, labels: torch.Tensor | None = None,
    steps: int = 50, sampler: str = "ddim", guidance: float = 1.0, eta: float = 0.0, batch_size: int = 16,
    progress: bool = False,
) -> torch.Tensor:
    """count x C x H x W samples in [-1, 1]; with `labels` (count x H x W classes) one sample per label map.

    The same seed gives the same samples (the noise is drawn batch by batch from one generator). `progress`: a
    bar of denoising steps (DDPM on a CPU takes minutes, and said nothing until the end).
    """
    if sampler not in SAMPLERS:
        raise InputError(f"--sampler {sampler}: unknown; choose one of {', '.join(SAMPLERS)}")
    if labels is not None and run.encoding is None:
        raise InputError(f"{run.path}: was trained without labels and cannot follow --labels; train it with --labels")
    if sampler == "ddim":
        ddim_timesteps(run.schedule.steps, steps)  # a --steps the model cannot take: refused before the bar starts
    device = next(run.model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    outputs = []
    per_batch = run.schedule.steps if sampler == "ddpm" else min(steps, run.schedule.steps)
    bar = tqdm(total=math.ceil(count / batch_size) * per_batch, desc="sample", unit="step", disable=not progress)
    for start in range(0, count, batch_size):
        batch = min(batch_size, count - start)
        maps = None if labels is None else labels[start : start + batch].to(device)

        def conditional(x: torch.Tensor, t: torch.Tensor, maps: torch.Tensor | None = maps) -> torch.Tensor:
            with autocast(device, run.amp_dtype):
                return run.model(x, t, maps).float()

        def unconditional(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with autocast(device, run.amp_dtype):
                return run.model(x, t, None).float()

        guided = classifier_free_guidance(conditional, unconditional, guidance) if maps is not None else conditional

        def denoiser(x: torch.Tensor, t: torch.Tensor, guided: Callable = guided) -> torch.Tensor:
            bar.update()
            return guided(x, t)

        shape = (batch, run.model.config.in_channels, *size)
        if sampler == "ddpm":
            samples = ddpm_sample(denoiser, run.schedule, shape, generator, run.config.prediction, device)
        else:
            samples = ddim_sample(denoiser, run.schedule, shape, generator, steps, eta, run.config.prediction, device)
        outputs.append(samples.cpu())
    bar.close()
    return torch.cat(outputs)


def _as_rgb(tile: np.ndarray) -> np.ndarray:
    """A uint8 tile as H x W x 3: grey repeated, grey + alpha as its grey, RGBA without its alpha."""
    if tile.ndim == 2:
        tile = tile[..., None]
    return np.repeat(tile[..., :1], 3, axis=-1) if tile.shape[-1] < 3 else tile[..., :3]


def grid_image(tiles: list[np.ndarray], columns: int, gap: int = 2) -> np.ndarray:
    """Tiles of equal size (H x W or H x W x C, uint8) in rows of `columns`, separated by white gaps. Tiles of
    different channel counts (RGB samples beside grey masks) are all shown as RGB."""
    if len({tile.shape[2:] for tile in tiles}) > 1:
        tiles = [_as_rgb(tile) for tile in tiles]
    height, width = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    shape = (rows * (height + gap) - gap, columns * (width + gap) - gap, *tiles[0].shape[2:])
    canvas = np.full(shape, 255, dtype=np.uint8)
    for index, tile in enumerate(tiles):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        canvas[top : top + height, left : left + width] = tile
    return canvas


def _write_image(out: Path, name: str, image: np.ndarray) -> Path:
    """PNG for integer images, float32 TIFF for float ones (as the training images were)."""
    if image.dtype.kind == "f":
        path = out / f"{name}.tif"
        write_tiff(path, image.astype(np.float32))
    else:
        path = out / f"{name}.png"
        write_atomic(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))
    return path


def _as_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float64)
    low, high = float(image.min()), float(image.max())
    return np.zeros(image.shape, np.uint8) if high <= low else np.rint(255 * (image - low) / (high - low)).astype(np.uint8)


@dataclass
class LabelMap:
    """One mask to draw an image for: its output name, its file, the mask as read (and its palette), its classes."""

    name: str
    source: Path
    raw: np.ndarray
    palette: list[int] | None
    classes: np.ndarray


def _read_label_maps(run: DiffusionRun, labels: Path) -> list[LabelMap]:
    """Every mask file (every page of a stack), refusing names whose outputs would overwrite each other."""
    maps = []
    for file in list_image_files(labels):
        pages, palette = read_pages(file, labels=True)
        for index, page in enumerate(pages):
            name = file.stem if len(pages) == 1 else f"{file.stem}_{index:03d}"
            classes = run.encoding.to_classes(page, str(file)).astype(np.int64)  # type: ignore[union-attr]
            maps.append(LabelMap(name, file, page, palette, classes))
    if not maps:
        raise InputError(f"{labels}: holds no masks; give a folder of label images")
    _refuse_clashing_names(maps)
    return maps


GRID = "grid"
LABEL_SUFFIX = "_label"


def _refuse_clashing_names(maps: list[LabelMap]) -> None:
    """Each mask writes NAME (the sample) and NAME_label (its copy), and one size writes grid: no two may share a name."""
    outputs: list[tuple[str, Path | str]] = [(GRID, "the overview picture")] if len({m.classes.shape for m in maps}) == 1 else []
    outputs += [(output, entry.source) for entry in maps for output in (entry.name, entry.name + LABEL_SUFFIX)]
    clash = first_clash(outputs)
    if clash:
        name, taken, source = clash
        raise InputError(f"{source}: its output {name} would overwrite the one of {taken}; "
                         "rename one of the masks (names ending in _label, and 'grid', are taken)")


def _write_samples(out: Path, earlier: list[str], named: list[tuple[str, np.ndarray, LabelMap | None]],
                   columns: int) -> list[Path]:
    """Write each sample (and its label map beside it), the grid when `columns`, and the folder's record, which
    drops the files of the earlier call (`earlier`) that this one did not write; returns the sample files."""
    written: list[Path] = []
    files: list[Path] = []  # the label maps beside the samples and the grid
    tiles: list[np.ndarray] = []
    for name, image, entry in named:
        written.append(_write_image(out, name, image))
        if entry is not None:
            files.append(out / f"{entry.name}{LABEL_SUFFIX}.png")
            write_mask(files[-1], entry.raw, entry.palette)
            tiles.append(_as_uint8(entry.raw))
        tiles.append(_as_uint8(image))
    if columns:
        files.append(_write_image(out, GRID, grid_image(tiles, columns)))
    record_samples(out, earlier, written + files)
    return written


def sample_to_folder(
    run_dir: Path, out: Path, count: int = 16, labels: Path | None = None, steps: int = 50, seed: int = 0,
    sampler: str = "ddim", guidance: float = 1.0, size: int | None = None, device: str = "auto",
    say: Callable[[str], None] = print, progress: bool = False,
) -> list[Path]:
    """Write samples (and, with labels, each label beside its sample) and grid.png; returns the sample files.

    The labels and the run's training images and labels are inputs: --out may be none of them.
    """
    if size is not None and not 1 <= size <= MAX_SAMPLE_SIZE:
        raise InputError(f"--size {size}: must be 1 to {MAX_SAMPLE_SIZE} pixels (default: the training patch size)")
    if not (math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE):
        raise InputError(f"--guidance {guidance}: must be a number from 0 (unconditional) to {MAX_GUIDANCE:g}; "
                         "1 is no guidance, 2-5 the usual range")
    if guidance != 1.0 and labels is None:
        raise InputError(f"--guidance {guidance:g}: guides samples towards --labels; give --labels or drop --guidance")
    run = load_diffusion_run(run_dir, resolve_device(device))
    inputs = ([Path(labels)] if labels else []) + run.trained_on
    out = Path(out)
    earlier_samples(out, inputs)  # refused before any work; checked again, held, when the files are written
    named: list[tuple[str, np.ndarray, LabelMap | None]] = []  # (file stem, sample, its label map)
    if labels is not None:
        if run.encoding is None:
            raise InputError(f"{run_dir}: was trained without labels and cannot follow --labels; train it with --labels")
        maps = _read_label_maps(run, labels)
        shapes = {m.classes.shape for m in maps}
        for shape in sorted(shapes):  # one batch per size
            chosen = [m for m in maps if m.classes.shape == shape]
            samples = generate(run, len(chosen), shape, seed, torch.from_numpy(np.stack([m.classes for m in chosen])),
                               steps, sampler, guidance, progress=progress)
            named += [(entry.name, image, entry) for entry, image in zip(chosen, to_image_values(samples, run.normalization))]
        columns = 2 * max(1, min(4, len(maps))) if len(shapes) == 1 else 0  # tiles of different sizes make no grid
    else:
        side = size or run.config.size
        generated = generate(run, count, (side, side), seed, None, steps, sampler, guidance, progress=progress)
        named = [(f"sample_{index:03d}", image, None) for index, image in enumerate(to_image_values(generated, run.normalization))]
        columns = max(1, int(np.ceil(np.sqrt(count))))
    out.mkdir(parents=True, exist_ok=True)  # only once every check has passed: a refusal leaves no folder
    with folder_lock(out, "wait until it ends, or sample into another --out"):
        written = _write_samples(out, earlier_samples(out, inputs), named, columns)
    say(f"{counted(len(written), 'sample')} written to {out}" + (f" (and {GRID}.png)" if columns else ""))
    return written
