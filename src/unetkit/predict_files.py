"""Predict files, folders and stacks with a trained run, and write masks in the label encoding.

Outputs are named after the input's stem (name.png for name.png or name.tif; a
stack gives one stack, name.tif). The output folder is marked as unetkit's, so
a later run refuses to take it as input, and it may never be an input folder;
the mark records which image each file belongs to (output_owners.py).
Images stream through the predictor in row bands: only the mask (one byte per
pixel) is image-sized, and above STREAM_PIXELS (16384 x 16384) even the mask
goes to a memory-mapped TIFF (name.tif) band by band; --prob probabilities are
always a memory-mapped float32 TIFF. A stack's outputs are filled page by page in
memory-mapped files (stack_outputs.py), so that a stopped predict keeps its finished
pages for --skip-done. --instances also writes name_cells.tif, the
regions a two-class boundary labelling separates (cells), one integer label
each, by a seeded watershed on the boundary probability (instances.py).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import safetensors.torch
import tifffile
import torch
from tqdm import tqdm

from unetkit.data.io import (
    CELLS_SUFFIX,
    IMAGE_SUFFIXES,
    PREDICTIONS_MARKER,
    PROB_SUFFIX,
    ZARR_SUFFIX,
    grey_of,
    declared_size,
    imagej_can_hold,
    first_clash,
    is_predictions_folder,
    list_image_files,
    make_writable_folder,
    missing_folders,
    natural_key,
    read_pages_lazily,
    remove_empty_folders,
    reserve_disk_space,
    tiff_options,
    write_mask,
    write_tiff,
)
from unetkit.data.calibration import Calibration, PageAxes, page_axes_of, readable_length
from unetkit.devices import resolve_device, same_device
from unetkit.data.labels import unpack_colours
from unetkit.data.zarr_pages import is_zarr
from unetkit.errors import InputError
from unetkit.folder_lock import folder_lock, interrupts_deferred
from unetkit.engine import configure_process
from unetkit.instances import object_regions, watershed_regions
from unetkit.output_owners import (OwnerIndex, already_predicted, read_owners, record_outputs, recorded_mask,
                                   refuse_clashes, remove_leftovers, stamp, write_owners)
from unetkit.losses import most_likely_class
from unetkit.predict import mirrored_crop, predict_rows, prediction_windows
from unetkit.rescale import PixelSizes, check_resampling_fits, resample, resample_image, scaled_shape
from unetkit.run import RUN_FILE, Run, load_run, refuse_output_among_inputs
from unetkit.stack_outputs import (StackOutputs, discard_kept_pages, settle_kept_pages, unfinished_stacks,
                                   work_folder)
from unetkit.text import counted

MIN_TILE = 16  # a smaller window is mostly halo; 0 or less cannot be one
STREAM_PIXELS = 1 << 28  # single images above this many pixels get their mask streamed into a TIFF
ROW_PROGRESS_PIXELS = 1 << 24  # pages of this many pixels (4096^2) or more show their rows' progress


def check_output_folder(out: Path, inputs: list[Path]) -> None:
    """Refuse an output folder that is an input folder, or that we cannot write, before any work starts."""
    out = Path(out)
    refuse_output_among_inputs(out, inputs, "predictions")  # nor inside a folder given, as train and export refuse
    for path in inputs:
        if is_predictions_folder(path):
            raise InputError(f"{path}: is a folder of unetkit predictions, not of images; give the folder with the images")
    if not out.exists() and out.suffix.lower() == ZARR_SUFFIX:
        raise InputError(f"--out {out}: names a zarr image, but --out is a folder that the masks are written into as "
                         f"TIFF or PNG files, each named after its input; give a folder, e.g. --out {out.with_suffix('')}")
    if not out.exists() and out.suffix.lower() in IMAGE_SUFFIXES:  # `--out mask.png` made a folder so named (audit)
        raise InputError(f"--out {out}: names an image file, but --out is a folder that the masks are written into, "
                         f"each named after its input; give a folder, e.g. --out {out.with_suffix('')}")
    if out.is_dir() and not (out / PREDICTIONS_MARKER).exists():
        if (out / RUN_FILE).is_file():
            raise InputError(f"--out {out}: is a training run; choose a new or empty folder for the predictions")
        theirs = next((p for p in sorted(out.iterdir()) if not p.name.startswith(".")), None)
        if theirs is not None:  # a folder of the user's own files (their labels, say): never written into
            shown = f"{theirs.name}/" if theirs.is_dir() else theirs.name
            raise InputError(f"--out {out}: holds files unetkit did not write ({shown}); choose a new or empty "
                             "folder for the predictions")
    try:
        make_writable_folder(out)
        (out / PREDICTIONS_MARKER).touch()
    except OSError as exc:
        raise InputError(f"--out {out}: not writable ({exc.strerror}); choose a folder you can write to") from None


def streamed_mask_dtype(run: Run, pages: int, page_pixels: int) -> np.dtype | None:
    """The dtype of a mask written band by band into a memory-mapped TIFF (one grey page above STREAM_PIXELS;
    1-bit masks as 0/1 bytes), or None for a mask held in memory and written compressed."""
    if pages != 1 or page_pixels <= STREAM_PIXELS or run.encoding.colour:
        return None
    return np.dtype(np.uint8 if run.encoding.output_dtype == bool else run.encoding.output_dtype)


def check_free_space(out: Path, sizes: dict[Path, tuple[int, int]], run: Run, write_probabilities: bool,
                     cells: bool = False) -> None:
    """Refuse before any work when the output disk cannot hold what predict writes uncompressed and memory-mapped:
    the float32 probabilities of --prob, the masks streamed_mask_dtype streams, and a stack's mask and cell ids
    while its pages are predicted (StackOutputs; other masks are compressed and not counted). `sizes`: each
    input's (pages, pixels of all pages), as its header declares. The pages a stopped predict kept of these
    inputs' stacks count as free (settle_kept_pages left only those a resume fills); those kept of other
    stacks are named when the space is short."""
    probability_bytes = 4 * run.encoding.num_classes if write_probabilities else 0
    # cell ids: uint16, and while they are widened past 65,535 a uint32 copy beside them
    stack_bytes = np.dtype(run.encoding.output_dtype).itemsize * (3 if run.encoding.colour else 1) + 6 * cells
    needed = 0
    for pages, count in sizes.values():
        streamed = streamed_mask_dtype(run, pages, count // max(pages, 1))
        needed += count * (probability_bytes + (streamed.itemsize if streamed is not None else 0)
                           + (stack_bytes if pages > 1 else 0))
    if not needed:
        return
    inputs = {file.resolve() for file in sizes}
    kept = unfinished_stacks(out) if Path(out).is_dir() else []
    free = shutil.disk_usage(out).free + sum(held for file, _, _, held in kept if file in inputs)
    if needed > free:
        others = [(file, done, pages, held) for file, done, pages, held in kept if file not in inputs]
        held_note = ""
        if others:
            file, done, pages, held = others[0]
            more = f" and {counted(len(others) - 1, 'more stack')}'s" if len(others) > 1 else ""
            held_note = (f" ({_size(held)} of the disk holds the {done} finished pages of {pages} of {file}{more}, "
                         f"kept in {work_folder(out, file.stem)} to go on with --skip-done; delete it if not needed)")
        raise InputError(f"--out {out}: needs about {_size(needed)} for the outputs but the disk has "
                         f"{_size(free)} free{held_note}; free space or choose another --out")


def _size(count: float) -> str:
    """Bytes for people: 812 bytes, 19.5 KiB, 3.2 GiB."""
    if count < 1024:
        return f"{count:.0f} bytes"
    for unit in ("KiB", "MiB"):
        count /= 1024
        if count < 1024:
            return f"{count:.1f} {unit}"
    return f"{count / 1024:.1f} GiB"


def _probability_store(path: Path, shape: tuple[int, ...], dtype: Any = np.float32, labels: list[str] | None = None,
                       calibration: Calibration | None = None, page_axes: PageAxes | None = None) -> np.ndarray:
    """A TIFF on disk, memory-mapped for writing band by band; grey pages, one per class (left to tifffile,
    3 or 4 classes would be saved as one RGB(A) image and read back with the fourth taken as alpha). `labels`:
    a name for each plane, written as ImageJ labels of a hyperstack whose channels are the classes (a stack's
    sections its slices), so that Fiji and napari show which is which class (the file said nothing of it, audit);
    tifffile reads it as the (sections x) classes x H x W array it was. `calibration`: the input's pixel size;
    `page_axes`: its stack's T and Z, kept as the hyperstack's (tifffile reads T x Z x classes x H x W)."""
    axes = None if labels is None else "ZCYX" if len(shape) == 4 else "CYX"
    stored = shape
    if axes == "ZCYX" and page_axes is not None and page_axes.holds(shape[0]) and imagej_can_hold(shape, dtype):
        stored, axes = (*page_axes.sizes, *shape[1:]), page_axes.letters + "CYX"
    options = tiff_options(stored, dtype, calibration, axes, {"Labels": labels})
    return tifffile.memmap(path, shape=stored, dtype=dtype, **options).reshape(shape)


def predict_page(
    run: Run, page: np.ndarray, source: str, tile: int | None, tta: bool, device: torch.device,
    probabilities: np.ndarray | None = None, mask: np.ndarray | None = None, progress: bool = False,
    scale: tuple[float, float] | None = None,
) -> np.ndarray:
    """One (H, W[, C]) raw page -> its mask in the label encoding, written band by band.

    `mask` (H x W[, 3] in the encoding's dtype) may be a memory-mapped file, and
    `probabilities` (K x H x W float32) too: then nothing image-sized stays in memory. `progress`: a page of
    ROW_PROGRESS_PIXELS or more gets a bar of its rows done (a 16400^2 image took 6.5 minutes at "0/1 files").
    `scale` (rows, columns): the page is predicted resampled by these factors, and its probabilities resampled
    back (--match-pixel-size); the page and both probability maps are then held in memory.
    """
    height, width = page.shape[:2]
    if mask is None:
        mask = np.empty((height, width, 3) if run.encoding.colour else (height, width), dtype=run.encoding.output_dtype)
    if scale is not None:
        scaled = np.empty((run.encoding.num_classes, *scaled_shape(page.shape, scale)), np.float32)
        predict_page(run, resample_image(page, scaled.shape[1:]), source, tile, tta, device, scaled,
                     progress=progress)
        back = resample(scaled, (height, width), channels_last=False)
        mask[:] = run.encoding.to_values(most_likely_class(torch.from_numpy(back)).numpy())
        if probabilities is not None:
            probabilities[:] = back
        return mask
    tile, overlap, halo = prediction_windows(run.model, run.amp_dtype, height, width, run.encoding.num_classes,
                                             device, tile, run.config.tile)

    def read(top: int, bottom: int, left: int, right: int) -> torch.Tensor:
        return torch.from_numpy(run.normalization.apply(mirrored_crop(page, top, bottom, left, right, axes=(0, 1)), source))

    rows_done = tqdm(total=height, desc=f"  {Path(source).name}", unit="row", leave=False,
                     disable=not progress or height * width < ROW_PROGRESS_PIXELS)

    def sink(top: int, probs: torch.Tensor) -> None:
        rows = slice(top, top + probs.shape[1])
        mask[rows] = run.encoding.to_values(most_likely_class(probs).numpy())
        if probabilities is not None:
            probabilities[:, rows] = probs.numpy()
        rows_done.update(probs.shape[1])

    with rows_done:
        predict_rows(run.model, read, height, width, sink, tile=tile, overlap=overlap, tta=tta, device=device,
                     amp_dtype=run.amp_dtype, halo=halo, shift=run.output_shift)
    return mask


def boundary_class(run: Run, value: int) -> int:
    """The class index of the boundary label `value` in a two-class run, or one line saying why not."""
    encoding = run.encoding
    classes = list(encoding.describe_values())
    if encoding.num_classes != 2:
        raise InputError(f"--instances: cells come from a two-class labelling (boundary and cell), but this run has "
                         f"{encoding.num_classes} classes {classes}; predict without --instances and label the regions "
                         "of a class yourself, or train a two-class run")
    if value not in encoding.values:
        shown = unpack_colours(np.asarray(value)).tolist() if encoding.colour else value
        example = ",".join(str(c) for c in classes[0]) if encoding.colour else classes[0]
        raise InputError(f"--instances: the boundary value {shown} is not one of this run's classes {classes}; "
                         f"give the boundary's with --boundary-value (e.g. --boundary-value {example})")
    return encoding.values.index(value)


BACKGROUND_SHARE = 0.5  # a boundary class covering more than this of the masks is a background, not membranes
OBJECTS, CELLS = "objects on background 0", "cells"  # what NAME_cells.tif holds, as the last line says


def objects_on_background(run: Run, boundary: int, boundary_maps: np.ndarray, kind: str = "auto",
                          earlier: set[str] = frozenset()) -> bool:
    """Whether instances are objects on a background (nuclei on black) rather than cells that tile the image.

    `kind` "cells" or "objects" says so; "auto": the run's boundary class covered most of its training masks
    (run.json's class fractions; membranes never cover half an image). A run saved before the fractions were
    recorded is judged by the first prediction of the call (`earlier`: the kinds written so far), so that one
    call writes one kind."""
    if kind != "auto":
        return kind == "objects"
    fractions = run.record.get("classes", {}).get("fractions")
    if fractions:
        return fractions[boundary] > BACKGROUND_SHARE
    if earlier:
        return OBJECTS in earlier
    return float(boundary_maps.mean()) > BACKGROUND_SHARE


class CellPages:
    """A stack's cell labels, made page by page as each page's boundary probability is predicted, so that only
    one page's probabilities are held (the whole stack's were: --instances refused stacks over STREAM_PIXELS).
    The ids go on from page to page: with each page's starting at 1, napari's 3-D labels joined unrelated cells
    of neighbouring sections into one object (audit); cells are not linked through the sections. Held as uint16
    until the ids need uint32. `objects`: the boundary class is a background: objects 1..N on 0
    (instances.object_regions), else cells that tile the page (instances.watershed_regions)."""

    def __init__(self, shape: tuple[int, ...], objects: bool, ids: np.ndarray | None = None, offset: int = 0,
                 widen: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """`ids`: where the (P x) H x W ids go (a memory-mapped file of StackOutputs; by default in memory),
        `offset` the ids used by the pages done, `widen` makes a uint32 copy of `ids` (by default in memory)."""
        self.ids = np.zeros(shape, np.uint16) if ids is None else ids
        self.regions = object_regions if objects else watershed_regions
        self.objects = objects
        self.offset = offset
        self.widen = widen or (lambda ids: ids.astype(np.uint32))

    def add(self, index: int, boundary: np.ndarray) -> None:
        """Label page `index` from its H x W boundary probability."""
        ids = self.regions(boundary)
        top = int(ids.max(initial=0))
        if self.offset + top >= 2**16 and self.ids.dtype == np.uint16:
            self.ids = self.widen(self.ids)
        page = self.ids.reshape(-1, *self.ids.shape[-2:])[index]
        page[...] = np.where(ids > 0, ids.astype(np.int64) + self.offset, 0)
        self.offset += top


def cell_labels(boundary: np.ndarray, objects: bool = False) -> np.ndarray:
    """(P x) H x W boundary probabilities -> (P x) H x W cell labels, as uint16 where they fit (CellPages)."""
    cells = CellPages(boundary.shape, objects)
    for index, page in enumerate(boundary.reshape(-1, *boundary.shape[-2:])):
        cells.add(index, page)
    return cells.ids


def read_for_run(run: Run, file: Path) -> np.ndarray:
    """A file's (P, H, W[, C]) pages as the run takes them: an RGB image whose three channels are equal, given to
    a greyscale run, is its one grey channel (what Fiji's RGB export of a grey image, or a grey palette PNG, holds;
    nothing is lost), instead of a refusal for its channel count."""
    pages = read_pages_lazily(file)
    grey_run = len(run.normalization.low) == 1
    grey = grey_of(pages) if grey_run and pages.ndim == 4 and pages.shape[-1] == 3 else None
    return pages if grey is None else grey


def run_on(run: Run | Path, device: str, precision: str | None) -> tuple[Run, torch.device]:
    """The run (a folder, or a Run loaded earlier) computing on `device` in `precision` (None: the run's own)."""
    torch_device = resolve_device(device)
    if not isinstance(run, Run):
        return load_run(run, torch_device, precision), torch_device
    if not same_device(torch_device, run.device) or precision is not None:  # a Run loaded earlier: as a folder
        return run.computing_on(torch_device, precision), torch_device
    return run, torch_device


def predict_array(run: Run | Path, image: np.ndarray, tta: bool = False, probabilities: bool = False,
                  device: str | None = None, tile: int | None = None, precision: str | None = None,
                  warn: Callable[[str], None] | None = None, pixel_size: str | None = None,
                  match_pixel_size: bool = False, training_pixel_size: str | None = None,
                  ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """One image held in memory, (H, W) or (H, W, C) as a file of it reads, -> its mask in the masks' own values
    (what predict would write), and with `probabilities` also the (K, H, W) class probabilities. A notebook has
    its images as arrays already, and saving each one to predict it cost a disk round trip and a folder to clear.
    The same checks as for a file: channels and pixel type against the run's, `warn` for unusual intensities and
    for a `pixel_size` ("8nm": an array declares none) unlike the training images'; `match_pixel_size` and
    `training_pixel_size` as predict_paths's."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 4:  # RGBA: the colour values are used, as for a file
        image = image[..., :3]
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise InputError(f"image of shape {image.shape}: give one image, (height, width) or (height, width, channels)")
    if image.ndim == 3 and image.shape[0] <= 4 < image.shape[-1]:  # (C, H, W), as torch and tifffile hold channels
        raise InputError(f"image of shape {image.shape}: its channels come first; give (height, width, channels), "
                         "np.moveaxis(image, 0, -1)")
    if tile is not None and tile < MIN_TILE:
        raise InputError(f"tile {tile}: windows must be at least {MIN_TILE} pixels (None: the automatic choice)")
    configure_process()
    if device is None:  # a Run loaded once for many arrays stays where it is: copying it to a GPU each call cost a copy
        device = run.device.type if isinstance(run, Run) else "auto"
    run, torch_device = run_on(run, device, precision)
    grey = grey_of(image) if image.ndim == 3 and image.shape[-1] == 3 and len(run.normalization.low) == 1 else None
    image = image if grey is None else grey
    run.normalization.check_compatible(image, "image")
    unlike = run.normalization.unlike_training(image, "image")
    if unlike and warn is not None:
        warn(unlike)
    sizes = PixelSizes.for_run(run.record.get("pixel_size"), match_pixel_size, pixel_size, training_pixel_size)
    mine = None if sizes.given_m is None else (sizes.given_m, sizes.given_m)
    if match_pixel_size and mine is None:
        raise InputError("match_pixel_size: an array declares no pixel size; give its size too, e.g. pixel_size='8nm'")
    scale = sizes.scale_for("image", mine)
    if scale is not None:
        check_resampling_fits("image", image.shape[0] * image.shape[1], scale, len(run.normalization.low),
                              run.encoding.num_classes, STREAM_PIXELS)
    other_scale = sizes.warning_for("image", mine)
    if other_scale and warn is not None:
        warn(other_scale)
    maps = np.empty((run.encoding.num_classes, *image.shape[:2]), np.float32) if probabilities else None
    mask = predict_page(run, np.ascontiguousarray(image), "image", tile, tta, torch_device, maps,
                        scale=scale)
    return (mask, maps) if maps is not None else mask


def _predict_file(run: Run, file: Path, out: Path, tile: int | None, tta: bool, torch_device: torch.device,
                  write_probabilities: bool, boundary: int | None, on_disk: contextlib.ExitStack,
                  kinds: set[str], instance_kind: str = "auto", warn: Callable[[str], None] | None = None,
                  progress: bool = False, *, sizes: PixelSizes, scale: tuple[float, float] | None = None,
                  identity: dict[str, Any] | None = None, resume: bool = False,
                  ) -> tuple[Path, set[Path], list[Callable[[], None]]]:
    """One input file's mask (and probabilities, cells), computed: returns the mask's path, every file it will
    write, and the writes still to do. Memory-mapped outputs are filled under hidden names and renamed when
    `on_disk` closes; nothing of this input is visible before the writes run (see predict_paths).
    `kinds` collects what the cell files hold ("cells" that tile the image, or "objects" on background 0);
    `warn` says whether the image looks unlike the training images (for files check_inputs did not read).
    `sizes`: the pixel sizes (the outputs' calibration, the warning); `scale`: the factors predict_paths found for
    this input (PixelSizes.scale_of) to predict it resampled by (--match-pixel-size). A stack's pages go to
    StackOutputs as they are done: `identity` (the prediction key and the input's stamp) tells its journal
    which call they belong to, and `resume` (--skip-done) goes on from the pages an earlier call finished."""
    num_classes = run.encoding.num_classes
    pages = read_for_run(run, file)
    unlike = run.normalization.unlike_training(pages[0], str(file)) if warn is not None else None
    if unlike:
        warn(unlike)
    stack = len(pages) > 1
    calibration = sizes.calibration(file)  # every output declares the input's pixel size (and a stack's spacing)
    other_scale = sizes.warning(file) if warn is not None else None
    if other_scale:
        warn(other_scale)
    page_axes = page_axes_of(file) if stack else None  # and keeps a stack's frames and slices
    prob_shape = (len(pages), num_classes, *pages.shape[1:3]) if stack else (num_classes, *pages.shape[1:3])
    labels = None  # each probability plane's name, for Fiji and napari: built only when --prob writes them
    if write_probabilities:
        names = run.encoding.channel_names()
        labels = [f"{page}: {name}" for page in range(len(pages)) for name in names] if stack else names
    prob_path = out / f"{file.stem}{PROB_SUFFIX}.tif"
    cells_path = out / f"{file.stem}{CELLS_SUFFIX}.tif"
    written = {prob_path} if write_probabilities else set()
    if boundary is not None:
        written.add(cells_path)
    if stack:
        target_path = out / f"{file.stem}.tif"
        work = StackOutputs.begin(
            out, file, identity or {}, (*pages.shape[:3], 3) if run.encoding.colour else pages.shape[:3],
            run.encoding.output_dtype, prob_shape if write_probabilities else None,
            lambda path: _probability_store(path, prob_shape, np.float32, labels, calibration, page_axes),
            cells=boundary is not None, resume=resume, calibration=calibration, page_axes=page_axes)
        try:
            _predict_stack(run, file, pages, work, tile, tta, torch_device, boundary, kinds, instance_kind, progress,
                           scale)
        except BaseException:
            work.stopped()  # the pages done stay for --skip-done
            raise
        finish = functools.partial(work.finish, target_path, cells_path if boundary is not None else None,
                                   prob_path if write_probabilities else None)
        return target_path, written | {target_path}, [finish]
    writes: list[Callable[[], None]] = []
    probabilities = None
    if write_probabilities:
        probabilities = on_disk.enter_context(_memory_mapped(prob_path, prob_shape, np.float32, labels, calibration))
    target = probabilities
    if boundary is not None and probabilities is None:  # the cells need the probabilities of the page
        target = np.empty((num_classes, *pages.shape[1:3]), dtype=np.float32)
    streamed = streamed_mask_dtype(run, len(pages), pages[0].shape[0] * pages[0].shape[1])
    if streamed is not None:  # too large to hold: the mask goes to a memory-mapped TIFF, band by band
        assert boundary is None and scale is None, "predict_paths refuses --instances and rescaling for pages this large"
        target_path = out / f"{file.stem}.tif"
        mask = on_disk.enter_context(_memory_mapped(target_path, pages[0].shape[:2], streamed, calibration=calibration))
        predict_page(run, pages[0], str(file), tile, tta, torch_device, probabilities, mask, progress, scale)
    else:
        mask = predict_page(run, pages[0], str(file), tile, tta, torch_device, target, progress=progress, scale=scale)
        if run.encoding.fits_png:
            target_path = out / f"{file.stem}.png"
            writes.append(functools.partial(write_mask, target_path, mask,
                                            list(run.encoding.palette) if run.encoding.palette else None, calibration))
        else:
            target_path = out / f"{file.stem}.tif"
            writes.append(functools.partial(write_tiff, target_path, mask, calibration))
    if boundary is not None:
        assert target is not None
        objects = objects_on_background(run, boundary, target[boundary], instance_kind, kinds)
        kinds.add(OBJECTS if objects else CELLS)
        cells = CellPages(pages.shape[1:3], objects)
        cells.add(0, target[boundary])
        writes.append(functools.partial(write_tiff, cells_path, cells.ids, calibration))
    return target_path, written | {target_path}, writes


def _predict_stack(run: Run, file: Path, pages: np.ndarray, work: StackOutputs, tile: int | None, tta: bool,
                   torch_device: torch.device, boundary: int | None, kinds: set[str], instance_kind: str,
                   progress: bool, scale: tuple[float, float] | None) -> None:
    """Predict the pages of a stack not done yet into `work`, each counted done as soon as it is complete."""
    page_probabilities = None  # one page's, for its cells, when no probabilities file holds them
    if boundary is not None and work.probabilities is None:
        page_probabilities = np.empty((run.encoding.num_classes, *pages.shape[1:3]), dtype=np.float32)
    cells: CellPages | None = None
    if boundary is not None and work.objects is not None:  # a stopped call's cells go on
        assert work.cells is not None
        cells = CellPages(work.cells.shape, work.objects, work.cells, work.cell_offset, work.widen_cells)
        kinds.add(OBJECTS if work.objects else CELLS)
    # a stack's pages get a bar of their own: a 100-page stack showed "0/1 files" for 74 s (audit)
    for index in tqdm(range(work.done, len(pages)), desc=f"  {file.name}", unit="page", leave=False,
                      initial=work.done, total=len(pages), disable=not progress):
        target = page_probabilities if work.probabilities is None else work.probabilities[index]
        predict_page(run, pages[index], f"{file}[{index}]", tile, tta, torch_device, target, work.mask[index],
                     progress, scale)
        if boundary is not None:  # cells page by page: only this page's probabilities are needed
            assert target is not None and work.cells is not None
            if cells is None:  # a run without recorded class fractions: judged by the first page
                objects = objects_on_background(run, boundary, target[boundary], instance_kind, kinds)
                kinds.add(OBJECTS if objects else CELLS)
                cells = CellPages(work.cells.shape, objects, work.cells, 0, work.widen_cells)
            cells.add(index, target[boundary])
        work.page_done(cells.offset if cells else 0, cells.objects if cells else None)


def prediction_key(run: Run, tta: bool, probabilities: bool, boundary: int | None, instance_kind: str,
                   tile: int | None, sizes: PixelSizes | None = None) -> str:
    """A digest of all that decides an input's outputs besides the input: the network's weights (as computed
    on, whatever file they came from), the run's encoding, normalisation and label shift, the precision, and
    the options. Equal keys: predicting again would write what is there (--skip-done)."""
    digest = hashlib.sha256(safetensors.torch.save({name: tensor.detach().cpu().contiguous()
                                                    for name, tensor in run.model.state_dict().items()}))
    settings = {key: run.record.get(key) for key in ("model", "classes", "normalization", "alignment")}
    options = {"tta": tta, "prob": probabilities, "boundary": boundary, "instances": instance_kind, "tile": tile,
               "precision": str(run.amp_dtype), "run_tile": run.config.tile}
    if sizes is not None and (sizes.match or sizes.given_m):  # keys of calls without them stay as they were
        options["pixel_sizes"] = sizes.key()
    digest.update(json.dumps({"settings": settings, "options": options}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def remove_earlier_outputs(out: Path, file: Path, written: set[Path], index: OwnerIndex,
                           made_with: str | None = None, source: dict[str, int] | None = None) -> None:
    """An image predicted again into the same folder: remove what an earlier predict wrote for it and this one
    did not, so that the folder never mixes two runs' outputs of one image (a new mask beside the first run's
    NAME_prob.tif or NAME_cells.tif; a NAME.tif mask beside a new NAME.png), then record this call's files as
    the image's (`index.owners`, updated in place). Other images' outputs, and files the record does not name, stay
    (refuse_clashes refused the call before any work if this one would have written over them)."""
    stale = {out / name for name in index.outputs_of(file)}
    for path in stale - written:
        path.unlink(missing_ok=True)
        index.owners.pop(path.name, None)
    record_outputs(index.owners, file, written, made_with, source)


@contextlib.contextmanager
def _memory_mapped(path: Path, shape: tuple[int, ...], dtype: Any, labels: list[str] | None = None,
                   calibration: Calibration | None = None, page_axes: PageAxes | None = None) -> Iterator[np.ndarray]:
    """A TIFF on disk to fill band by band, written under a hidden name and renamed when filled: an interrupted
    prediction leaves no half-written file that evaluate would take for a result. `labels`, `calibration`,
    `page_axes`: _probability_store's."""
    partial = path.with_name(f".{path.name}.partial")
    array = _probability_store(partial, shape, dtype, labels, calibration, page_axes)
    try:
        reserve_disk_space(partial, path)
        yield array
        array.flush()
    except BaseException:
        del array  # the map closes with its last reference: Windows can neither rename nor delete an open one
        partial.unlink(missing_ok=True)
        raise
    del array
    os.replace(partial, path)


SHOWN_WARNINGS = 3  # one line each for the first inputs unlike the training images, then a count
CHECK_AHEAD_PIXELS = 1 << 26  # inputs up to this size (all pages) are read once before any is predicted


def check_inputs(run: Run, files: list[Path], pixels: dict[Path, int], sizes: PixelSizes) -> list[str]:
    """Read every input (but the largest) and check it against the run before predicting any.

    A bad image 150 of 200 (damaged, colour for a greyscale run) stopped the run after
    149 had been predicted, and the rerun predicted them again. Decoding is cheap beside
    the network, so each file is read here once more; a file above CHECK_AHEAD_PIXELS (by `pixels`, what the
    headers declare) is checked when its turn comes. Returns a warning for each input whose intensities lie mostly outside
    the training images' (Normalization.unlike_training), or whose pixel size is not theirs and is not matched
    (`sizes`, PixelSizes.warning): it is predicted, but its mask is suspect.
    """
    problems: list[tuple[Path, InputError]] = []
    warnings: list[str] = []
    for file in files:
        if pixels[file] > CHECK_AHEAD_PIXELS:
            continue
        try:
            pages = read_for_run(run, file)
            first_page = pages[0]
            run.normalization.check_compatible(first_page, str(file))
            for index in range(len(pages)) if first_page.dtype.kind == "f" else ():  # NaN on any page: refused now
                run.normalization.check_finite(pages[index], f"{file}[{index}]" if len(pages) > 1 else str(file))
        except InputError as exc:
            problems.append((file, exc))
            continue
        for warning in (run.normalization.unlike_training(first_page, str(file)),
                        sizes.warning(file)):
            if warning:
                warnings.append(warning)
    if problems:
        first, others = problems[0][1], [file.name for file, _ in problems[1:]]
        fail = "fails" if len(others) == 1 else "fail"
        more = f" ({counted(len(others), 'more input')} {fail} too: {', '.join(others[:3])}{', ...' if len(others) > 3 else ''})"
        raise InputError(f"{first}{more if others else ''}; nothing was predicted")
    return warnings


def predict_paths(
    run: Run | Path,
    inputs: list[Path] | Path | str,
    out: Path,
    tta: bool = False,
    write_probabilities: bool = False,
    device: str = "auto",
    tile: int | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
    precision: str | None = None,
    instances: int | None = None,
    instance_kind: str = "auto",
    skip_done: bool = False,
    match_pixel_size: bool = False,
    pixel_size: str | None = None,
    training_pixel_size: str | None = None,
) -> list[Path]:
    """Predict every image of `inputs` into `out`; returns the mask files of all inputs.

    `precision` (auto, fp32, bf16, fp16) overrides the run's own. `instances`: the boundary's label value
    of a two-class run; each image's cells are also written as NAME_cells.tif (`instance_kind`: "cells", "objects"
    or "auto", see `objects_on_background`). `skip_done`: leave an input whose outputs in `out` this run wrote
    with these options from the input as it is (a stopped predict of 2000 images started again from the first).
    `match_pixel_size`: resample each input to the training images' pixel size for the network, and its
    probabilities back; `pixel_size` ("8nm"): the inputs' size, in place of what the files declare (their outputs
    declare it too); `training_pixel_size` ("4nm"): the training images', where run.json has none (rescale.py).
    """
    inputs = [Path(inputs)] if isinstance(inputs, (str, os.PathLike)) else [Path(p) for p in inputs]  # one, or several
    if tile is not None and tile < MIN_TILE:
        raise InputError(f"--tile {tile}: windows must be at least {MIN_TILE} pixels (leave it out for the automatic choice)")
    configure_process()
    run, torch_device = run_on(run, device, precision)
    files = _each_file_once([f for path in inputs for f in list_image_files(path)])
    clash = first_clash([(f.stem, f) for f in files])
    if clash:
        raise InputError(f"{clash[1]} and {clash[2]} share the name {clash[0]!r}; their outputs would overwrite each "
                         "other, predict them separately")
    boundary = None if instances is None else boundary_class(run, instances)
    sizes = PixelSizes.for_run(run.record.get("pixel_size"), match_pixel_size, pixel_size, training_pixel_size)
    created = missing_folders(out)
    check_output_folder(out, inputs)
    written: list[Path] = []
    scales: dict[Path, tuple[float, float] | None] = {}
    done: dict[Path, Path] = {}  # input -> its mask, for the inputs --skip-done leaves
    made_with = prediction_key(run, tta, write_probabilities, boundary, instance_kind, tile, sizes)
    with folder_lock(out, "wait until it ends, or predict into another --out"):  # one process at a time records outputs in its marker
        try:
            owners = OwnerIndex(read_owners(out))
            if skip_done:
                done = {file: recorded_mask(Path(out), file, owners) for file in files
                        if already_predicted(Path(out), file, owners, made_with, write_probabilities, boundary is not None)}
            every_input, files = files, [file for file in files if file not in done]
            for file in done:  # a stack done earlier, whose predict again was stopped: its outputs stand
                discard_kept_pages(out, file)
            sizes_of = {file: declared_size(file) or (1, 0) for file in files}  # (pages, pixels): each header read once
            pixels = {file: count for file, (_, count) in sizes_of.items()}
            # a killed predict's hidden partial files hold space the check must not count as used
            remove_leftovers(Path(out), files, write_probabilities, boundary is not None)
            settle_kept_pages(Path(out), files, made_with if skip_done else None)
            check_free_space(out, sizes_of, run, write_probabilities, boundary is not None)
            too_large = next((f for f, (count, total) in sizes_of.items()
                              if boundary is not None and total > STREAM_PIXELS * max(count, 1)), None)
            if too_large:
                raise InputError(f"{too_large}: a page over {STREAM_PIXELS} pixels, too large for --instances (a page's "
                                 "cells come from its probabilities, held in memory); predict it without --instances, "
                                 "or cut it into smaller images")
            scales = {file: sizes.scale_of(file) for file in files}
            for file, factors in scales.items():
                if factors is not None:
                    count, total = sizes_of[file]
                    check_resampling_fits(str(file), total // max(count, 1), factors, len(run.normalization.low),
                                          run.encoding.num_classes, STREAM_PIXELS)
            refuse_clashes(out, files, owners, write_probabilities, boundary is not None)
            warnings = check_inputs(run, files, pixels, sizes)
            for warning in warnings[:SHOWN_WARNINGS]:
                say(warning)
            if len(warnings) > SHOWN_WARNINGS:
                more = len(warnings) - SHOWN_WARNINGS
                say(f"warning: {counted(more, 'more input')} {'looks' if more == 1 else 'look'} unlike the training images too "
                    "(intensities or pixel size)")
            kinds: set[str] = set()
            for file in tqdm(files, desc="predict", unit="file", disable=not progress):
                with contextlib.ExitStack() as on_disk:  # memory-mapped outputs get their names only when complete
                    source = stamp(file)  # the input as it is read: an input saved again later is not done
                    mask, outputs, writes = _predict_file(run, file, Path(out), tile, tta, torch_device,
                                                          write_probabilities, boundary, on_disk, kinds, instance_kind,
                                                          warn=say if pixels[file] > CHECK_AHEAD_PIXELS else None,
                                                          progress=progress, sizes=sizes, scale=scales[file],
                                                          identity={"made_with": made_with, "source": source},
                                                          resume=skip_done)
                    with interrupts_deferred():  # the files and the record naming them land together
                        for write in writes:
                            write()
                        on_disk.close()
                        remove_earlier_outputs(Path(out), file, outputs, owners, made_with, source)
                        write_owners(out, owners.owners)
                written.append(mask)
        except BaseException as exc:
            if not written and created:  # a refusal at the first file leaves no empty output folder behind
                remove_empty_folders(created, leftover=PREDICTIONS_MARKER)  # the marker alone would keep it
            if written and isinstance(exc, InputError):
                raise InputError(f"{exc} ({len(written)} of {len(files)} inputs were predicted into {out} before it; "
                                 "run again with --skip-done once it is fixed)") from None
            raise
    said = " and ".join(sorted(kinds)) or "cells or objects"  # all left by --skip-done: their kind was not read
    extras = [f"their {said} (NAME{CELLS_SUFFIX}.tif)"] if boundary is not None else []
    if write_probabilities:  # which page is which class: also the pages' labels, for Fiji and napari
        extras.append(f"their class probabilities (NAME{PROB_SUFFIX}.tif, a page per class: "
                      f"{', '.join(map(str, run.encoding.describe_values()))})")
    resampled = sum(1 for file in files if scales.get(file) is not None)
    if sizes.match and sizes.training_m is not None:
        trained, others = readable_length(sizes.training_m[0]), counted(len(files) - resampled, "input")
        say(f"{counted(resampled, 'input')} resampled to the training images' pixel size ({trained}) for the network "
            f"(masks on each input's own pixels); {others} had that size already or declared none")
    done_note = f" ({counted(len(done), 'input')} predicted earlier left as they were: --skip-done)" if done else ""
    say(f"wrote {counted(len(written), 'mask')} to {out}" + (f" with {' and '.join(extras)}" if extras else "") + done_note)
    kept = unfinished_stacks(out)  # of stacks this call did not predict: left for their --skip-done
    if kept:
        file, done_pages, pages, held = kept[0]
        more = f" (and {counted(len(kept) - 1, 'more stopped stack')})" if len(kept) > 1 else ""
        say(f"note: {out} keeps the {done_pages} finished pages of {pages} of {file}, stopped earlier{more}, "
            f"{_size(held)} in {work_folder(out, file.stem)}: predict it with --skip-done and the same run and options "
            "to finish it, or delete that folder")
    unsearched = _subfolders_with_images(inputs, Path(out))
    if unsearched:
        more = f" and {counted(len(unsearched) - 1, 'more subfolder')}" if len(unsearched) > 1 else ""
        say(f"warning: {unsearched[0]}{more} {'hold' if more else 'holds'} images too, not predicted: subfolders are "
            "not searched; give them as inputs to predict them")
    masks = iter(written)
    return [done[file] if file in done else next(masks) for file in every_input]


def _each_file_once(files: list[Path]) -> list[Path]:
    """Each input once, where it is given twice (a file and its folder) or through a link ("latest.png" beside
    the file it points to): by the file's own name, not the link's (the mask was named after whichever came
    last, and the real file's recorded mask was then removed as an earlier output of the same input)."""
    chosen: dict[Path, Path] = {}
    for file in files:
        key = file.resolve()
        if key not in chosen or (chosen[key].is_symlink() and not file.is_symlink()):
            chosen[key] = file
    return list(chosen.values())


def _subfolders_with_images(inputs: list[Path], out: Path) -> list[Path]:
    """The subfolders of the input folders that hold images (but not the output folder): a folder of images in
    sub-folders by day or well was predicted in part, with only "wrote 2 masks" said (audit)."""
    found = []
    for folder in inputs:
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
            try:
                if (entry.is_dir() and not entry.name.startswith(".") and entry.resolve() != out.resolve() and not is_zarr(entry)
                        and not is_predictions_folder(entry) and any(f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") for f in entry.iterdir())):
                    found.append(entry)
            except OSError:  # unreadable: nothing to say about it
                continue
    return found
