"""Sub-pixel alignment of a network's outputs with the label convention of its data.

Why: labels are drawn by hand or rasterised from outlines, and a labelling
tool can place them systematically a fraction of a pixel away from the
structures in the image. The ISBI 2012 membrane labels sit about half a pixel
above the membranes in the images. Training with flips and rotations (the
default augmentation) turns such an offset into eight opposite offsets, so the
network learns to centre its masks on the image and misses the convention at
every edge: on ISBI that cost about 0.004 of pixel error (5 % of it: 0.0772 -> 0.0735 between two 10-minute runs).

So each validation (of runs that select their weights by validation, the
default; valid networks excepted, whose tiles have no context to shift in) also
measures, on the validation images, which shift of the
predicted probabilities (a grid of quarter pixels up to one pixel each way)
gives the fewest misclassified pixels. A shift is used only with evidence: it
must gain at least MIN_RELATIVE_GAIN overall, and be better than no shift in
significantly more BLOCK_PX-pixel blocks of the validation images than it is
worse (a sign test, p <= MAX_P_VALUE). An undertrained network's errors also
favour some shift by a few per cent, by chance: on two 128-pixel validation
images a 6-step run "gained" 2.4 % with a shift that was better in 32 blocks and
worse in 33, and made held-out masks worse; on ISBI the half-pixel offset is
better in 1791 blocks and worse in 1027. The test is optimistic (the shift is the best
of 81 on the same blocks, and neighbouring blocks are not independent), hence the strict
threshold; it also means that tiny validation sets (under ten blocks where the shift
matters, e.g. one 48-pixel image) never adopt a shift. The shift is saved with the best
weights in run.json and applied to every prediction of the run. Data without
such an offset get (0, 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from scipy.stats import binom

from unetkit.data.labels import IGNORE_CLASS
from unetkit.losses import most_likely_class

SHIFT_STEP_PX = 0.25
MAX_SHIFT_PX = 1.0
MIN_RELATIVE_GAIN = 0.02  # a shift must cut the validation pixel error by 2 % to be used ...
BLOCK_PX = 16  # ... and be better in significantly more blocks of this size than it is worse
MAX_P_VALUE = 1e-3  # one-sided sign test over those blocks (ties left out)

Shift = tuple[float, float]  # (down, right) in pixels: output(y, x) = input(y - down, x - right)


def candidate_shifts(step: float = SHIFT_STEP_PX, limit: float = MAX_SHIFT_PX) -> list[Shift]:
    """Every (down, right) on a grid of `step` pixels within `limit` each way, (0, 0) included."""
    count = int(round(limit / step))
    values = [i * step for i in range(-count, count + 1)]
    return [(dy, dx) for dy in values for dx in values]


def _shift_axis(x: torch.Tensor, amount: float, axis: int) -> torch.Tensor:
    """Move the content of `x` by `amount` pixels along `axis` (linear interpolation, edges repeated)."""
    if amount == 0:
        return x
    length = x.shape[axis]
    whole = math.floor(amount)
    part = amount - whole
    index = torch.arange(length, device=x.device)
    # output[i] = input[i - amount] = (1 - part) * input[i - whole] + part * input[i - whole - 1]
    near = x.index_select(axis, (index - whole).clamp(0, length - 1))
    if part == 0:
        return near
    far = x.index_select(axis, (index - whole - 1).clamp(0, length - 1))
    return near * (1 - part) + far * part


def shift_image(x: torch.Tensor, shift: Shift | None) -> torch.Tensor:
    """Shift the last two axes of `x` by (down, right) pixels, fractions included; the edge values are repeated."""
    if shift is None:
        return x
    return _shift_axis(_shift_axis(x, float(shift[0]), x.ndim - 2), float(shift[1]), x.ndim - 1)


@dataclass
class ShiftSearch:
    """Counts, over validation images, the misclassified pixels of every candidate shift of the probabilities."""

    step: float = SHIFT_STEP_PX
    limit: float = MAX_SHIFT_PX
    shifts: list[Shift] = field(init=False)
    errors: torch.Tensor = field(init=False)
    pixels: int = 0
    block_errors: list[torch.Tensor] = field(default_factory=list)  # per image: shifts x blocks misclassified pixels

    def __post_init__(self) -> None:
        self.shifts = candidate_shifts(self.step, self.limit)  # down-major: (dy0, dx0), (dy0, dx1), ...
        self.errors = torch.zeros(len(self.shifts), dtype=torch.float64)

    def add(self, probs: torch.Tensor, truth: torch.Tensor) -> None:
        """probs: K x H x W (any float type), truth: H x W class indices (IGNORE_CLASS pixels are not counted).

        Only pixels near a class edge are shifted (shifting all K maps 81 times made a 3-class run's validation
        25 times slower than a 2-class one's; shifting two classes' score difference whole took 7.7 s of a
        3000 x 2500 validation image with sparse objects, this 1.5 s, and ISBI's 512 x 512 0.12 s, this 0.09 s).
        A shift of at most one pixel mixes each pixel's 3 x 3 neighbourhood (edges repeated); where the
        whole neighbourhood predicts one class, every mix of it does too, so those pixels' errors do not
        depend on the shift. The others are mixed with each shift's weights directly.
        """
        probs, labelled = probs.float(), truth != IGNORE_CLASS  # the shift weights are float32
        classes, height, width = probs.shape
        predicted = most_likely_class(probs)
        padded = torch.nn.functional.pad(predicted[None, None].float(), (1, 1, 1, 1), mode="replicate")
        edge = (torch.nn.functional.max_pool2d(padded, 3, 1) != -torch.nn.functional.max_pool2d(-padded, 3, 1))[0, 0]
        steady = (predicted != truth) & ~edge & labelled
        ys, xs = edge.nonzero(as_tuple=True)
        rows, cols = -(-height // BLOCK_PX), -(-width // BLOCK_PX)
        block_of = (ys // BLOCK_PX) * cols + xs // BLOCK_PX
        # neighbourhood[a, b] = probs at (y - a, x - b) for a, b in (-1, 0, 1): K x N each
        neighbourhood = torch.stack([torch.stack([probs[:, (ys - a).clamp(0, height - 1), (xs - b).clamp(0, width - 1)]
                                                  for b in (-1, 0, 1)]) for a in (-1, 0, 1)])  # 3 x 3 x K x N
        truth_at = truth[ys, xs]
        steady_blocks = _block_sums(steady)
        blocks = []
        for index, (dy, dx) in enumerate(self.shifts):
            mixed = torch.einsum("a,b,abkn->kn", _weights(dy), _weights(dx), neighbourhood)
            wrong = (most_likely_class(mixed) != truth_at) & labelled[ys, xs]
            self.errors[index] += float(steady.sum()) + float(wrong.sum())
            moved_blocks = torch.zeros(rows * cols).index_add_(0, block_of, wrong.float())
            blocks.append(steady_blocks + moved_blocks)
        self.block_errors.append(torch.stack(blocks))
        self.pixels += int(labelled.sum())

    def evidence(self, shift: Shift) -> tuple[int, int, float]:
        """(blocks where `shift` has fewer errors than none, blocks where it has more, one-sided sign-test p)."""
        blocks = torch.cat(self.block_errors, dim=1)
        with_shift, without = blocks[self.shifts.index(shift)], blocks[self.shifts.index((0.0, 0.0))]
        better, worse = int((with_shift < without).sum()), int((with_shift > without).sum())
        p_value = float(binom.sf(better - 1, better + worse, 0.5)) if better else 1.0
        return better, worse, p_value

    def best(self, min_relative_gain: float = MIN_RELATIVE_GAIN) -> dict[str, object]:
        """The shift to use ((0, 0) unless one gains enough) with the pixel errors with and without it."""
        if self.pixels == 0:
            return {"shift_px": [0.0, 0.0], "val_pixel_error": None, "val_pixel_error_shifted": None}
        rates = self.errors / self.pixels
        unshifted = float(rates[self.shifts.index((0.0, 0.0))])
        # the fewest errors, and among equals the smallest shift (a perfect or empty prediction gains nothing from one)
        best = min(range(len(self.shifts)), key=lambda i: (float(rates[i]), abs(self.shifts[i][0]) + abs(self.shifts[i][1])))
        gains = unshifted > 0 and float(rates[best]) < unshifted * (1 - min_relative_gain)
        better, worse, p_value = self.evidence(self.shifts[best])
        chosen = self.shifts[best] if gains and p_value <= MAX_P_VALUE else (0.0, 0.0)
        return {"shift_px": [float(chosen[0]), float(chosen[1])], "val_pixel_error": unshifted,
                "val_pixel_error_shifted": float(rates[self.shifts.index(chosen)]),
                "best_shift_px": [float(self.shifts[best][0]), float(self.shifts[best][1])],
                "blocks_better_worse": [better, worse], "p_value": p_value}


def _weights(amount: float) -> torch.Tensor:
    """_shift_axis's interpolation weights of the input offsets (-1, 0, 1) for a shift of `amount` in [-1, 1]."""
    whole = math.floor(amount)
    part = amount - whole
    weights = torch.zeros(3)
    weights[whole + 1] += 1 - part  # offset `whole` sits at index whole + 1
    if part:
        weights[whole + 2] += part
    return weights


def _block_sums(wrong: torch.Tensor) -> torch.Tensor:
    """H x W booleans -> the count in each BLOCK_PX x BLOCK_PX block (the last ones padded), flattened."""
    height, width = wrong.shape
    padded = torch.nn.functional.pad(wrong.float()[None], (0, -width % BLOCK_PX, 0, -height % BLOCK_PX))[0]
    rows, cols = padded.shape[0] // BLOCK_PX, padded.shape[1] // BLOCK_PX
    return padded.reshape(rows, BLOCK_PX, cols, BLOCK_PX).sum((1, 3)).flatten()
