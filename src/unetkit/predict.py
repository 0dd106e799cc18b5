"""Prediction outside the network: tiles, mirroring, blending, test-time augmentation.

Two predictors, both streaming over row bands so memory stays bounded by a band
of tiles however large the image is:

* `sliding_window` for padded networks (output size = input size): overlapping
  windows whose class probabilities are blended with Gaussian weights.
* `overlap_tile` for the paper's valid network (output smaller than input by a
  margin): the image is mirror-extended by the margin, tiles are placed so that
  their valid outputs tile the whole image on the pooling grid, and outputs are
  stitched without blending. The result equals one valid pass over the
  mirror-extended image.

Both read the image through a `read(top, bottom, left, right)` callable (so a
memory-mapped or lazily normalised image works) and hand finished rows to a
`sink(top, probabilities)` callable; they accumulate in fp32.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from unetkit.alignment import Shift, shift_image
from unetkit.engine import autocast, available_memory_bytes
from unetkit.losses import class_probabilities
from unetkit.models.blocks import crop_padding, pad_to_multiple
from unetkit.models.fcn import FCNConfig
from unetkit.models.unet import UNetConfig

Reader = Callable[[int, int, int, int], torch.Tensor]  # (top, bottom, left, right) -> C x h x w, may reach outside
Sink = Callable[[int, torch.Tensor], None]  # (first row, K x rows x W probabilities)
Window = int | tuple[int, int]  # a sliding window's side, or its (rows, columns)


def gaussian_window(height: int, width: int, sigma_scale: float = 0.125) -> torch.Tensor:
    """H x W weights peaking at the centre: tile borders, where context is poorest, count least."""

    def axis(n: int) -> torch.Tensor:
        x = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        return torch.exp(-0.5 * (x / max(n * sigma_scale, 1e-3)) ** 2)

    window = axis(height)[:, None] * axis(width)[None, :]
    return (window / window.max()).clamp_min(1e-3)


def reflect_indices(start: int, stop: int, length: int) -> np.ndarray:
    """Indices start..stop-1 folded into [0, length) by mirroring (edge pixel not repeated), any distance out."""
    index = np.arange(start, stop)
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = np.mod(index, period)
    return np.where(index >= length, period - index, index)


def mirrored_crop(array: np.ndarray, top: int, bottom: int, left: int, right: int, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """array[top:bottom, left:right] on `axes`, mirrored where it reaches outside; touches only the rows it needs."""
    y_axis, x_axis = (a % array.ndim for a in axes)
    rows = reflect_indices(top, bottom, array.shape[y_axis])
    cols = reflect_indices(left, right, array.shape[x_axis])
    window = [slice(None)] * array.ndim
    window[y_axis] = slice(rows.min(), rows.max() + 1)
    window[x_axis] = slice(cols.min(), cols.max() + 1)
    block = np.asarray(array[tuple(window)])  # a memmap reads just this block
    block = np.take(block, rows - rows.min(), axis=y_axis)
    return np.take(block, cols - cols.min(), axis=x_axis)


def mirrored_reader(image: torch.Tensor | np.ndarray) -> Reader:
    """A reader over a C x H x W normalised image in memory, mirrored beyond the borders."""
    array = image.numpy() if isinstance(image, torch.Tensor) else image

    def read(top: int, bottom: int, left: int, right: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(mirrored_crop(array, top, bottom, left, right)))

    return read


_DIHEDRAL = [(turns, flip) for flip in (False, True) for turns in range(4)]


def _apply(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, turns, (-2, -1))
    return x.flip(-1) if flip else x


def _undo(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    x = x.flip(-1) if flip else x
    return torch.rot90(x, -turns, (-2, -1))


def tile_probabilities(model: torch.nn.Module, tile: torch.Tensor, tta: bool, shift: Shift | None = None) -> torch.Tensor:
    """1 x C x h x w -> 1 x K x h' x w' fp32 probabilities, averaged over the 8 flips/rotations with TTA.

    `shift` (down, right) moves them to the labels' convention (alignment.py), after TTA: it belongs to the image's frame.
    """
    if not tta:
        return shift_image(class_probabilities(model(tile).float()), shift)
    # A network that pads its input to its pooling grid pads at the end (bottom, right); a flipped tile had it
    # padded at the other end, so each flip saw another grid, and windows (which end on the grid) disagreed with
    # a whole-image pass by up to 0.07: the mask depended on the free memory. Padded once here, every flip sees
    # the grid of the unflipped pass.
    tile, pads = pad_to_multiple(tile, padded_grid(model))
    total = None
    for turns, flip in _DIHEDRAL:
        probs = _undo(class_probabilities(model(_apply(tile, turns, flip)).float()), turns, flip)
        total = probs if total is None else total + probs
    return shift_image(crop_padding(total / len(_DIHEDRAL), pads), shift)


def padded_grid(model: torch.nn.Module) -> int:
    """The multiple a network pads its input to itself (pad_to_multiple): a padded U-Net's 2**depth, an FCN's 32;
    1 for one that takes its input as it is (the valid U-Net crops instead)."""
    config = getattr(model, "config", None)
    return pooling_grid(model) if isinstance(config, (UNetConfig, FCNConfig)) else 1


WINDOW_MEMORY_SHARE = 0.25  # of the free memory, for one window's activations and its row band
# Peak inference bytes per pixel per unit of base width: 29 measured for the seed's fp32 pass over
# 2048^2 at width 64 (7.8 GB), 37 for the engine's channels-last pass with kept allocations (9.8 GB);
# 2 x 2 windows of 1024 ran as fast with 5.1 GB (benchmarks/RESULTS.md). bf16 halves the outputs.
BYTES_PER_WIDTH_PIXEL = {None: 40, "reduced": 24}


def pooling_grid(model: torch.nn.Module) -> int:
    """The shifts a network is equivariant to: 2**depth for a U-Net, 32 for an FCN (five poolings), else 1.
    Windows start on this grid so that each sees the image as a whole-image pass does."""
    config = getattr(model, "config", None)
    if isinstance(config, FCNConfig):
        return 32
    return 2 ** getattr(config, "depth", 0)


def context_halo(model: torch.nn.Module) -> int | None:
    """Real context around a window that makes its prediction equal a whole-image pass: half the
    receptive field and one grid step, on the pooling grid. None for networks without a known field."""
    config = getattr(model, "config", None)
    if not isinstance(config, (UNetConfig, FCNConfig)):
        return None
    align = pooling_grid(model)
    return -(-(config.receptive_field // 2) // align) * align + align


def memory_for_windows(device: torch.device) -> int:
    """Bytes a window may plan with: the host's free memory, and on a GPU no more than the GPU has free."""
    host = available_memory_bytes()
    if device.type == "cuda":
        return min(host, int(torch.cuda.mem_get_info(device)[0]))
    return host


def default_window(
    model: torch.nn.Module, amp_dtype: torch.dtype | None, height: int, width: int, classes: int = 2,
    available: int | None = None,
) -> tuple[int, int]:
    """The sliding window (rows, columns) `unetkit predict` uses for a padded network: of the ways to cut the
    image into n x m equal windows that fit in memory, the one that computes the fewest pixels.

    What must fit in WINDOW_MEMORY_SHARE of the free memory is one window's
    activations with its context (bytes per pixel measured on padded U-Nets:
    benchmarks/speed.py reports the peaks) and the row band of blended
    probabilities and weights, window rows x image width x (classes + 1) float32.
    An image that fits is one window, i.e. one whole-image pass. A larger one is
    cut into windows read with context_halo of real context each side, which is
    computed twice: for a 2048^2 image just too large for one pass, 2 x 2 square
    windows computed 1.68 times its pixels, two halves of full width 1.30 times.
    """
    config = getattr(model, "config", None)
    base_width, depth = getattr(config, "base_width", 64), getattr(config, "depth", 4)
    align = 2**depth
    budget = WINDOW_MEMORY_SHARE * (available_memory_bytes() if available is None else available)
    per_pixel = base_width * BYTES_PER_WIDTH_PIXEL[None if amp_dtype is None else "reduced"]
    band_rows = int(budget / 2 / (4 * (classes + 1) * width))  # rows of the blended band that fit
    if grid_length(height, align) * grid_length(width, align) * per_pixel <= budget and height <= band_rows:
        return grid_length(height, align), grid_length(width, align)  # one whole-image pass
    halo = context_halo(model) or 0
    row_options = [option for option in window_options(height, halo, align) if option[0] <= band_rows]
    col_options = window_options(width, halo, align)
    best: tuple[int, int, int] | None = None  # (pixels computed, rows, columns)
    for rows, row_read, row_windows in row_options:
        for cols, col_read, col_windows in col_options:
            cost = row_read * row_windows * col_read * col_windows
            if row_read * col_read * per_pixel <= budget and (best is None or cost < best[0]):
                best = (cost, rows, cols)
    if best is None:  # not even one grid step fits: the smallest windows there are
        return align, align
    return best[1], best[2]


def window_options(length: int, halo: int, align: int) -> list[tuple[int, int, int]]:
    """(window, pixels read per window, windows) for each way to cut an axis into equal windows on the grid:
    the distinct sizes are few (about twice the square root of the grid steps), so every pair is costed."""
    sizes = sorted({grid_length(-(-length // pieces), align) for pieces in range(1, -(-length // align) + 1)})
    return [(size, read_span(length, size, halo, align), len(window_spans(length, size, 0.0, align))) for size in sizes]


def grid_length(length: int, align: int) -> int:
    """`length` rounded up to the pooling grid, as the network pads it."""
    return -(-length // align) * align


def read_span(length: int, window: int, halo: int, align: int) -> int:
    """The pixels computed per window along an axis, as sliding_window reads its windows: each with `halo` of
    context each side, in one span for all (context_span), or the whole axis when one span covers it."""
    span = context_length(window_spans(length, window, 0.0, align), halo, align)
    return grid_length(length, align) if length <= span else span


def context_length(spans: list[tuple[int, int]], halo: int, align: int) -> int:
    """The one length every window of an axis is read in: the longest window, `halo` each side and a grid step
    for the start's alignment, on the grid (context_span)."""
    return grid_length(max(stop - start for start, stop in spans) + 2 * halo + align, align)


def prediction_windows(
    model: torch.nn.Module, amp_dtype: torch.dtype | None, height: int, width: int, classes: int,
    device: str | torch.device, tile: int | None, run_tile: int,
) -> tuple[Window, float, int | None]:
    """(window, overlap, halo) for predicting an image: `tile` when one is asked for (overlapping windows,
    blended); else valid networks tile as they trained (`run_tile`) and padded ones take the windows that fit
    in memory and compute least (default_window), each with the context that makes it equal a whole-image
    pass. Validation uses it too, so the scores and the label alignment it measures are those of the
    probabilities `predict` writes."""
    if tile is not None:
        return tile, 0.25, None
    halo = context_halo(model)
    if hasattr(model, "margin") or halo is None:
        return run_tile, 0.25, halo
    window = default_window(model, amp_dtype, height, width, classes, memory_for_windows(torch.device(device)))
    return window, 0.0, halo  # the halo gives every window its full context: no seams to blend away


def window_spans(length: int, tile: int, overlap: float, align: int = 1) -> list[tuple[int, int]]:
    """(start, stop) of overlapping windows covering [0, length), starts on multiples of `align`.

    Aligned starts keep every window on the pooling grid of a whole-image pass
    (a U-Net is shift-equivariant only for shifts by multiples of 2**depth);
    the stride is the overlap stride rounded down to the grid (never below one
    grid step), so neighbouring windows always touch; the last window is
    stretched to the border instead of being shifted off the grid.
    """
    tile = max(tile, align)
    if length <= tile:
        return [(0, length)]
    stride = max(align, int(tile * (1 - overlap)) // align * align)
    starts = list(range(0, length - tile + 1, stride))
    last = (length - tile) // align * align
    if starts[-1] < last:
        starts.append(last)
    return [(start, start + tile) for start in starts[:-1]] + [(starts[-1], length)]


def context_span(start: int, stop: int, length: int, halo: int, align: int, span: int) -> tuple[int, int]:
    """Where to read the window [start, stop) of an image axis `length` long: with at least `halo` pixels of
    real context each side (as far as the image goes), beginning on the pooling grid, and `span` pixels long
    once the network has padded it to its grid (the image's end is padded at the end, as in a whole-image
    pass). So every window of an image has one shape: windows of a few shapes (edge windows had less
    context) left the blocks the engine keeps for reuse (engine.keep_freed_memory) piling up, 8.6 GB
    resident for a 3.1 GB window pass. `span` (a multiple of `align`) must be at least the window plus
    2 * halo + align; the extra context changes nothing the window's pixels see within the network's
    receptive field (without --tta, with the automatic windows: a whole-image pass, as before).
    """
    if length <= span:
        return 0, length
    begin = (start - min(halo, start)) // align * align
    if begin + span <= length:
        return begin, begin + span
    return -(-(length - span) // align) * align, length  # ends at the image's end, padded to `span` by the network


@torch.no_grad()
def sliding_window(
    model: torch.nn.Module, read: Reader, height: int, width: int, sink: Sink,
    tile: Window = 512, overlap: float = 0.25, tta: bool = False, device: str | torch.device = "cpu",
    halo: int | None = None, shift: Shift | None = None,
) -> None:
    """Padded networks: Gaussian-blended overlapping windows, one row band at a time. `tile`: the window's
    side, or its (rows, columns).

    The blending happens on `device` (a GPU's pass over a 2048^2 image took a tenth of the time the host took
    to blend it) and each finished band goes to the sink on the CPU.

    Each window is predicted with up to `halo` pixels of real image around it
    (default: a quarter of the tile, rounded up to the pooling grid, so at least one
    grid step: a small --tile on a deep network got none, and the output shift
    repeated each window's edge at the seams), which are cut off again: a window's
    edge pixels then see the context they would see in a whole-image pass instead
    of the network's zero padding. Windows start on the network's pooling grid.
    """
    align = pooling_grid(model)
    tile_rows, tile_cols = (tile, tile) if isinstance(tile, int) else tile
    halo = grid_length(max(1, min(tile_rows, tile_cols) // 4), align) if halo is None else halo - halo % align
    rows, cols = window_spans(height, tile_rows, overlap, align), window_spans(width, tile_cols, overlap, align)
    row_span, col_span = (context_length(spans, halo, align) for spans in (rows, cols))
    total: torch.Tensor | None = None  # K x band rows x W, rows [band_top, band_top + band rows)
    weight = torch.zeros(0, width, device=device)
    windows: dict[tuple[int, int], torch.Tensor] = {}  # the Gaussian weights of each window size, on the device
    band_top = 0
    for index, (top, bottom) in enumerate(rows):
        grow = bottom - band_top - weight.shape[0]
        if grow > 0:
            weight = torch.cat([weight, torch.zeros(grow, width, device=device)])
            total = None if total is None else torch.cat([total, torch.zeros(total.shape[0], grow, width, device=device)], 1)
        band_rows = slice(top - band_top, bottom - band_top)
        for left, right in cols:
            # read real context around the window (not beyond the image), predict, keep only the window
            (first_row, last_row), (first_col, last_col) = (context_span(top, bottom, height, halo, align, row_span),
                                                            context_span(left, right, width, halo, align, col_span))
            patch = read(first_row, last_row, first_col, last_col)[None].to(device)
            probs = tile_probabilities(model, patch, tta, shift)[0]  # K x (h + context) x (w + context)
            above, before = top - first_row, left - first_col
            probs = probs[:, above : above + bottom - top, before : before + right - left]
            size = (bottom - top, right - left)
            if size not in windows:
                windows[size] = gaussian_window(*size).to(device)
            window = windows[size]
            if total is None:
                total = torch.zeros(probs.shape[0], weight.shape[0], width, device=device)
            total[:, band_rows, left:right] += probs * window
            weight[band_rows, left:right] += window
        done = (rows[index + 1][0] if index + 1 < len(rows) else height) - band_top  # no later window reaches these rows
        assert total is not None
        sink(band_top, (total[:, :done] / weight[:done]).cpu())
        total, weight, band_top = total[:, done:], weight[done:], band_top + done


def overlap_tile_layout(length: int, tile_output: int, stride_multiple: int) -> tuple[int, int, int]:
    """(output size of a tile, stride, tile count) along one axis.

    The stride is the tile output rounded down to a multiple of 2**depth, so
    every tile sits on the pooling grid of one pass over the whole extended
    image; the few overlapping output rows are identical and simply overwritten.
    """
    stride = tile_output - tile_output % stride_multiple
    if length <= tile_output:
        return tile_output, stride, 1
    return tile_output, stride, math.ceil((length - tile_output) / stride) + 1


@torch.no_grad()
def overlap_tile(
    model: torch.nn.Module, read: Reader, height: int, width: int, sink: Sink,
    tile: int = 572, tta: bool = False, device: str | torch.device = "cpu", shift: Shift | None = None,
) -> None:
    """The paper's overlap-tile strategy for valid networks; `tile` is the network input size (rounded to a valid one).

    Images smaller than a tile use the smallest valid tile that covers them.
    """
    margin, multiple = model.margin, 2**model.config.depth
    layouts = []
    for length in (height, width):
        tile_input = model.nearest_valid_input_size(max(tile, 2 * margin + 1))
        tile_input = max(tile_input, model.input_size_for_output(multiple))  # outputs of at least one grid step
        tile_input = min(tile_input, model.input_size_for_output(length))  # no bigger than the image needs
        layouts.append(overlap_tile_layout(length, model.valid_output_size(tile_input), multiple))
    (out_h, stride_h, count_h), (out_w, stride_w, count_w) = layouts
    for row in range(count_h):
        top = row * stride_h
        band = None
        for col in range(count_w):
            left = col * stride_w
            patch = read(top - margin, top + out_h + margin, left - margin, left + out_w + margin)[None].to(device)
            probs = tile_probabilities(model, patch, tta, shift)[0].cpu()  # K x out_h x out_w
            if band is None:
                band = torch.zeros(probs.shape[0], out_h, (count_w - 1) * stride_w + out_w)
            band[:, :, left : left + out_w] = probs
        rows = min(stride_h if row + 1 < count_h else out_h, height - top)  # rows no later band rewrites
        assert band is not None
        sink(top, band[:, :rows, :width])


def predict_rows(
    model: torch.nn.Module, read: Reader, height: int, width: int, sink: Sink,
    tile: Window | None = None, overlap: float = 0.25, tta: bool = False, device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None, halo: int | None = None, shift: Shift | None = None,
) -> None:
    """Dispatch on the network: overlap-tile for valid networks (they have a margin; `tile` is then a side),
    sliding windows otherwise.

    `amp_dtype` runs the network under autocast (engine.autocast_dtype); probabilities stay fp32.
    """
    model.eval()
    with autocast(torch.device(device), amp_dtype):
        if hasattr(model, "margin"):
            side = tile if tile is None or isinstance(tile, int) else max(tile)  # a valid network's tile is square
            overlap_tile(model, read, height, width, sink, tile=side or 572, tta=tta, device=device, shift=shift)
        else:
            sliding_window(model, read, height, width, sink, tile=tile or 512, overlap=overlap, tta=tta, device=device,
                           halo=halo, shift=shift)


def predict_probabilities(
    model: torch.nn.Module,
    image: torch.Tensor,
    tile: Window | None = None,
    overlap: float = 0.25,
    tta: bool = False,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    shift: Shift | None = None,
    halo: int | None = None,
) -> torch.Tensor:
    """C x H x W normalised image in memory -> K x H x W class probabilities (fp32, on the CPU)."""
    height, width = image.shape[-2:]
    parts: list[torch.Tensor] = []
    predict_rows(model, mirrored_reader(image), height, width, lambda top, probs: parts.append(probs),
                 tile=tile, overlap=overlap, tta=tta, device=device, amp_dtype=amp_dtype, halo=halo, shift=shift)
    return torch.cat(parts, dim=1)


from unetkit.api import make_module_callable  # noqa: E402 (after the module's own names)

make_module_callable(__name__, "predict")  # `unetkit.predict(...)` is the API function (api.py)
