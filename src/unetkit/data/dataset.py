"""Paired image/label data in memory, and the seeded patch sampler that feeds training.

Pairs are matched by file stem (never by sort order); a multi-page TIFF pairs
page by page with a label stack of the same length. Everything is decoded,
validated, normalised and held as tensors once, so a training step never
touches the disk.
"""

from __future__ import annotations

import hashlib

from dataclasses import dataclass, replace
from collections.abc import Sequence
from typing import NamedTuple, TypeVar
from pathlib import Path

import numpy as np
import torch

from unetkit.data.io import (IMAGE_SUFFIXES, LOSSY_SUFFIXES, TIFF_SUFFIXES, Page, channel_pages_hint, grey_of,
                             list_image_files, natural_key, one_image, planar_colour_hint, read_pages)
from unetkit.data.labels import LabelEncoding, objects_and_borders
from unetkit.data.normalize import Normalization
from unetkit.errors import InputError
from unetkit.text import counted

# Label files are often named like their image plus one of these.
LABEL_SUFFIXES = ("_mask", "_masks", "_label", "_labels", "_seg", "_gt", "_annotation", "_cp_masks",  # Cellpose's
                  "-mask", "-masks", "-label", "-labels", "-seg", "-gt")
PAIRING_RULE = (f"a mask pairs with the image of the same name, or of its name less one of "
                f"{', '.join(LABEL_SUFFIXES)}")


@dataclass(frozen=True)
class RawPair:
    """One image page and its mask page, as decoded."""

    image: Page
    label: Page

    @property
    def name(self) -> str:
        return self.image.name


TRAINING_KINDS = ("image", "mask")
EVALUATION_KINDS = ("prediction", "true mask")  # evaluate pairs predicted masks with true ones


def stems_without_suffix(stem: str) -> list[str]:
    """The stem less each known mask suffix it ends with (`x_cp_masks` -> `x_cp`, `x`), in LABEL_SUFFIXES order."""
    return [stem[: -len(suffix)] for suffix in LABEL_SUFFIXES if stem.lower().endswith(suffix) and len(stem) > len(suffix)]


def stem_bases(stem: str) -> list[str]:
    """The stems a mask's stem may stand for: less each known suffix it ends with, or itself when it has none."""
    return stems_without_suffix(stem) or [stem]


def label_stem(stem: str, image_stems: set[str]) -> str:
    """The image stem a label file's stem belongs to: the same stem, or the stem less a known suffix."""
    if stem in image_stems:
        return stem
    return next((base for base in stems_without_suffix(stem) if base in image_stems), stem)


def _pair_suffixed_predictions(predictions: dict[str, Path], truths: dict[str, Path]) -> None:
    """Key predictions named with a mask suffix (another tool's `t0_mask.png`, `t0_seg.png`) under the stem of
    the true mask they belong to (`t0.png`, `t0_label.png`), in place, where that is one mask and no other
    prediction claims it: predictions are masks too, so either side may carry a suffix."""
    unmatched_truths: dict[str, set[str]] = {}
    for stem in set(truths) - set(predictions):
        for base in stem_bases(truths[stem].stem):
            unmatched_truths.setdefault(base, set()).add(stem)
    claims: dict[str, list[str]] = {}
    for stem in set(predictions) - set(truths):
        # every reading of the suffix counts (`t0_cp_masks`: `t0_cp` less _masks, `t0` less Cellpose's _cp_masks)
        candidates = {truth for base in stem_bases(stem) for truth in unmatched_truths.get(base, ())}
        if len(candidates) == 1:
            claims.setdefault(candidates.pop(), []).append(stem)
    for truth_stem, predicted in claims.items():
        if len(predicted) == 1:
            predictions[truth_stem] = predictions.pop(predicted[0])


@dataclass
class Matching:
    """Image and label files matched by stem, with what did not match (nothing raised: `unetkit check` lists it all)."""

    pairs: list[tuple[Path, Path]]
    orphan_images: list[Path]
    orphan_labels: list[Path]
    conflicts: list[str]  # one message per stem claimed twice, or a file/folder mix-up


def pairs_as_objects_and_borders(pairs: list[RawPair]) -> list[RawPair]:
    """Instance masks (object ids) as object/background masks with separating borders (labels.objects_and_borders),
    the background 0 (black) for every mask where any mask holds it: what a --mask-kind instances run learns."""
    background = 0 if any(not p.label.array.all() for p in pairs) else None
    return [replace(p, label=replace(p.label, array=objects_and_borders(p.label.array, background, str(p.label.location))))
            for p in pairs]


def match_files(images: Path, labels: Path, skip_suffixes: tuple[str, ...] = (),
                kinds: tuple[str, str] = ("image", "mask")) -> Matching:
    """Match image files with label files by stem (missing paths and empty folders still raise).

    TIFF files whose stem ends with one of `skip_suffixes` are left out where they lie beside the file they
    belong to (what predict writes beside NAME.png: NAME_prob.tif, NAME_cells.tif); `HeLa_cells.png`, or
    `HeLa_cells.tif` alone, is a mask of its own. `kinds`: what messages call the two sides.
    """
    if Path(images).is_dir() and Path(images).resolve() == Path(labels).resolve():
        fix = ("put the masks in a folder of their own (e.g. DATA/image and DATA/label)" if kinds[0] == "image"
               else f"give the {kinds[0]}s' folder and the {kinds[1]}s' folder")
        return Matching([], [], [], [f"{images}: given as both the {kinds[0]}s and the {kinds[1]}s; {fix}"])
    image_files = list_image_files(images)
    if skip_suffixes:  # a file given alone is judged by the folder it lies in
        folder = Path(images).parent if one_image(images) else Path(images)
        stems = {f.stem for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES}
        image_files = [f for f in image_files if not (f.suffix.lower() in TIFF_SUFFIXES and any(
            f.stem.endswith(suffix) and f.stem[: -len(suffix)] in stems for suffix in skip_suffixes))]
    label_files = list_image_files(labels)
    if one_image(images) != one_image(labels):
        folder_files = image_files if one_image(labels) else label_files
        only = f" (the folder's one file: {folder_files[0]})" if len(folder_files) == 1 else ""
        return Matching([], [], [], [f"{images} and {labels}: give both as folders or both as stacks (single "
                                     f"files){only}"])
    if one_image(images):
        if not image_files:
            return Matching([], [], [], [f"{images}: is not a mask but a map predict writes beside one "
                                         f"(NAME{' or NAME'.join(skip_suffixes)}); give the mask file"])
        return Matching([(image_files[0], label_files[0])], [], [], [])
    conflicts: list[str] = []
    by_stem: dict[str, Path] = {}
    for file in image_files:
        if file.stem in by_stem:
            conflicts.append(f"{file}: two images share the stem {file.stem!r} ({by_stem[file.stem].name}); rename one")
            continue
        by_stem[file.stem] = file
    labels_by_stem: dict[str, Path] = {}
    for file in label_files:
        stem = label_stem(file.stem, set(by_stem))
        if stem in labels_by_stem:
            conflicts.append(f"{file}: two masks belong to image {stem!r} ({labels_by_stem[stem].name}); keep one")
            continue
        labels_by_stem[stem] = file
    if kinds == EVALUATION_KINDS:
        _pair_suffixed_predictions(by_stem, labels_by_stem)
    ordered = lambda stems: sorted(stems, key=natural_key)  # noqa: E731
    return Matching(
        [(by_stem[stem], labels_by_stem[stem]) for stem in ordered(set(by_stem) & set(labels_by_stem))],
        [by_stem[stem] for stem in ordered(set(by_stem) - set(labels_by_stem))],
        [labels_by_stem[stem] for stem in ordered(set(labels_by_stem) - set(by_stem))],
        conflicts,
    )




def _kinds(images_are_masks: bool) -> tuple[str, str]:
    """What messages call the two sides of a pair."""
    return EVALUATION_KINDS if images_are_masks else TRAINING_KINDS


def pair_files(images: Path, labels: Path, skip_suffixes: tuple[str, ...] = (),
               kinds: tuple[str, str] = TRAINING_KINDS, unpaired_labels: list[Path] | None = None
               ) -> list[tuple[Path, Path]]:
    """Matched (image, label) files; the first conflict or orphan is an error naming the files (as `kinds`).
    `unpaired_labels`: given, labels without an image are left out and added to it, not an error (evaluating
    a subset of the images)."""
    matching = match_files(images, labels, skip_suffixes, kinds)
    image, label = kinds
    if matching.conflicts:
        raise InputError(matching.conflicts[0])
    if matching.orphan_images:
        names = ", ".join(f.name for f in matching.orphan_images[:5])
        rule = f" ({PAIRING_RULE})" if matching.orphan_labels and kinds == TRAINING_KINDS else ""
        raise InputError(f"{Path(images)}: no {label} in {Path(labels)} for {names}{rule}; add the {label}s or move these "
                         f"{image}s out")
    if unpaired_labels is not None:
        unpaired_labels.extend(matching.orphan_labels)
    elif matching.orphan_labels:
        names = ", ".join(f.name for f in matching.orphan_labels[:5])
        raise InputError(f"{Path(labels)}: no {image} in {Path(images)} for {names}; add the {image}s or move these {label}s out")
    return matching.pairs


def read_label_pages(path: Path) -> tuple[np.ndarray, list[int] | None]:
    """A mask file's pages (palette indices kept); lossy JPEG masks are refused: their edges hold values between classes."""
    if Path(path).suffix.lower() in LOSSY_SUFFIXES:
        raise InputError(f"{path}: JPEG masks are lossy (their edges hold values between the classes); save the masks as PNG or TIFF")
    return read_pages(path, labels=True)


def read_pair(image_file: Path, label_file: Path, images_are_masks: bool = False) -> tuple[list[RawPair], list[int] | None]:
    """Decode one image file and its mask file into pairs of pages, checking page counts and sizes; also the mask's palette.

    `images_are_masks` (evaluation: predicted masks against true ones) reads both sides as masks, palette indices kept.
    """
    image_pages, image_palette = read_pages(image_file, labels=images_are_masks)
    label_pages, palette = read_label_pages(label_file)
    if images_are_masks and (image_palette is None) != (palette is None):
        other = label_pages if palette is None else image_pages
        instead = "RGB colours" if other.ndim == 4 else "grey values"
        raise InputError(f"{image_file}: one of it and its mask {label_file} has a palette and the other not; save both "
                         f"with the same palette (or both as {instead})")
    if images_are_masks and image_palette is not None:
        check = PaletteCheck()
        conflict = check.conflict(label_file, palette, list(label_pages)) or check.conflict(image_file, image_palette, list(image_pages))
        if conflict:
            raise InputError(f"{image_file}: {conflict}")
    if len(image_pages) != len(label_pages):
        raise InputError(
            f"{image_file}: has {counted(len(image_pages), 'page')} but its mask {label_file} has {len(label_pages)}; give stacks of the "
            f"same length{planar_colour_hint(image_file) or channel_pages_hint(image_file, len(image_pages), len(label_pages))}"
        )
    stacked = len(image_pages) > 1
    pairs = []
    for index, (image, label) in enumerate(zip(image_pages, label_pages)):
        page = index if stacked else None
        pair = RawPair(Page(image_file, page, image), Page(label_file, page, label))
        if image.shape[:2] != label.shape[:2]:
            kind, other = _kinds(images_are_masks)
            raise InputError(
                f"{pair.image.location}: is {image.shape[1]} x {image.shape[0]} (width x height) but its {other} "
                f"{pair.label.location} is {label.shape[1]} x {label.shape[0]}; {'an' if kind[0] in 'aeiou' else 'a'} {kind} must have the size of its {other}"
            )
        pairs.append(pair)
    return pairs, palette


def grey_among_grey(pairs: list[RawPair], channels: int | None = None) -> list[RawPair]:
    """Images whose three colour channels are equal taken as their one grey channel, unless `channels` (a run's or
    the training images') is 3: a grey image saved as GIF or WebP, or by Fiji as RGB, reads as RGB; one among
    grey PNGs was refused for its channel count, and a set of them trained a 3-channel network that then refused
    grey PNGs. Nothing is lost; a set with real colour in it keeps its channels."""
    if channels not in (None, 1):
        return pairs
    greys = [grey_of(p.image.array) if p.image.channels == 3 else None for p in pairs]
    if not any(g is not None for g in greys) or any(p.image.channels == 3 and g is None for p, g in zip(pairs, greys)):
        return pairs  # no grey RGB, or colour among them: keep
    return [p if g is None else replace(p, image=replace(p.image, array=g)) for p, g in zip(pairs, greys)]


def read_pairs(
    images: Path, labels: Path, skip_suffixes: tuple[str, ...] = (), images_are_masks: bool = False,
    unpaired_labels: list[Path] | None = None, palettes: "PaletteCheck | None" = None, channels: int | None = None,
) -> tuple[list[RawPair], list[int] | None]:
    """Decode every pair, page by page, and check the sizes match; also return the masks' palette if any.

    Palette indices are the classes, so every palette mask must share the first one's palette.
    `unpaired_labels`: see `pair_files`. `palettes`: a check that has seen other masks (the training ones, when
    these are validation masks), else a new one. `channels`: the images' channel count when it is known already
    (a run's, the training images'), for grey_among_grey.
    """
    pairs: list[RawPair] = []
    palettes = PaletteCheck() if palettes is None else palettes
    for image_file, label_file in pair_files(images, labels, skip_suffixes, _kinds(images_are_masks), unpaired_labels):
        pages, label_palette = read_pair(image_file, label_file, images_are_masks)
        pairs.extend(pages)
        conflict = palettes.conflict(label_file, label_palette, [page.label.array for page in pages])
        if conflict:
            raise InputError(f"{label_file}: {conflict}")
    if not images_are_masks:
        pairs = grey_among_grey(pairs, channels)
    check_images_alike(images, [pair.image for pair in pairs], same_dtype=not images_are_masks)
    return pairs, palettes.palette


def check_images_alike(images: Path, pages: list[Page], same_dtype: bool = True) -> None:
    """One network takes them all: one channel count and (`same_dtype`) one pixel type; else an error naming
    the odd ones out, as `check` does."""
    by_channels: dict[int, list[Page]] = {}
    for page in pages:
        by_channels.setdefault(page.channels, []).append(page)
    if len(by_channels) > 1:
        odd = min(by_channels.values(), key=len)[0]
        counts = ", ".join(f"{len(group)} with {count}" for count, group in sorted(by_channels.items()))
        raise InputError(f"{odd.location}: has {counted(odd.channels, 'channel')}, the images have different channel "
                         f"counts ({counts}); save them all greyscale or all RGB")
    dtypes = {page.array.dtype.name: page.path for page in pages}
    if len(dtypes) > 1 and same_dtype:
        found = ", ".join(f"{dtype} ({path.name})" for dtype, path in sorted(dtypes.items()))
        raise InputError(f"{images}: images have different pixel types: {found}; save them all with the same bit depth")


class PaletteCheck:
    """Palette indices are the classes, so an index must show the same colour in every palette mask that uses it.

    Only the entries the masks use are compared: tools save the same colours with
    palettes of 3 or 256 entries, and the unused ones do not matter.
    """

    def __init__(self) -> None:
        self.first: list[int] | None = None
        self.used: dict[int, tuple[tuple[int, ...], Path]] = {}  # index -> (colour, first mask that used it)

    @classmethod
    def of_run(cls, palette: list[int] | tuple[int, ...], indices: Sequence[int], run: Path) -> "PaletteCheck":
        """A check that has seen a trained run's masks: its palette, and the indices that are its classes."""
        check = cls()
        check.first = list(palette)
        for index in indices:
            check.used[int(index)] = (tuple(palette[3 * index : 3 * index + 3]) or (0, 0, 0), Path(run))
        return check

    @property
    def palette(self) -> list[int] | None:
        """The masks' palette: the first palette mask's, with the colours of indices only later masks use; None
        when no mask has one."""
        if self.first is None:
            return None
        merged = list(self.first)
        for index, (colour, _) in sorted(self.used.items()):
            merged.extend([0] * max(0, 3 * index + 3 - len(merged)))
            merged[3 * index : 3 * index + 3] = colour
        return merged

    def conflict(self, mask_file: Path, palette: list[int] | None, pages: Sequence[np.ndarray]) -> str | None:
        """Why this mask's palette cannot join the earlier ones, or None when it can (its used colours are remembered).

        pages: the mask's pages of palette indices."""
        if palette is None:
            return None
        if self.first is None:
            self.first = list(palette)
        used = sorted(set().union(*(np.unique(page).tolist() for page in pages)))
        for index in used:
            colour = tuple(palette[3 * index : 3 * index + 3]) or (0, 0, 0)  # an index beyond the palette shows black
            new = index not in self.used
            known = self.used.setdefault(index, (colour, mask_file))
            if known[0] != colour:
                return (f"its palette shows index {index} as RGB {list(colour)} but {known[1].name}'s as {list(known[0])}, "
                        "so the same index would mean two classes; save all masks with one palette (or as grey values or RGB colours)")
            other = next((i for i, (c, _) in self.used.items() if c == colour and i != index), None) if new else None
            if other is not None:  # the same colour at two indices: two classes no one can tell apart (audit)
                del self.used[index]  # the masks after this one are judged by the others
                return (f"its palette shows index {index} as RGB {list(colour)}, the colour of index {other} in "
                        f"{self.used[other][1].name}, so one colour would be two classes; save all masks with one "
                        "palette (or as grey values or RGB colours)")
        return None


Item = TypeVar("Item")  # a pair, or its summary (validate.PairSummary)


def check_val_fraction(val_fraction: float) -> None:
    """--val-fraction is a share: over 0 and under 1."""
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"--val-fraction {val_fraction:g}: the share of the images held out for validation must be "
                         "over 0 and under 1, e.g. 0.2; to hold none out, give a validation set with "
                         "--val-images/--val-labels")


def split_contiguous(pairs: list[Item], val_fraction: float) -> tuple[list[Item], list[Item]]:
    """Hold out the last block of pairs (or of their summaries): neighbouring sections look alike, so a random
    split would leak."""
    check_val_fraction(val_fraction)
    if len(pairs) < 2:
        raise InputError(f"only {len(pairs)} image: need at least 2 to hold one out for validation, or give --val-images/--val-labels")
    n_val = min(len(pairs) - 1, max(1, round(len(pairs) * val_fraction)))
    return pairs[:-n_val], pairs[-n_val:]


@dataclass
class TensorPairs:
    """Normalised images (C x H x W float32) and class maps (H x W uint8/int64), ready for training.

    `weights` holds per-pixel loss weights (H x W float32) when the loss uses them.
    """

    names: list[str]
    images: list[torch.Tensor]
    labels: list[torch.Tensor]
    weights: list[torch.Tensor] | None = None

    @classmethod
    def build(cls, pairs: list[RawPair], encoding: LabelEncoding, normalization: Normalization) -> "TensorPairs":
        return cls(
            [p.name for p in pairs],
            [torch.from_numpy(normalization.apply(p.image.array, p.image.location)) for p in pairs],
            [torch.from_numpy(encoding.to_classes(p.label.array, p.label.name)) for p in pairs],
        )

    def __len__(self) -> int:
        return len(self.images)

    def digest(self) -> str:
        """sha256 over names, images and labels: a resumed run checks that its data has not changed."""
        hasher = hashlib.sha256()
        for name, image, label in zip(self.names, self.images, self.labels):
            hasher.update(name.encode(errors="surrogateescape"))  # a file name that is not UTF-8 (an old share)
            hasher.update(image.contiguous().numpy().tobytes())
            hasher.update(label.contiguous().numpy().tobytes())
        return hasher.hexdigest()

    @property
    def pixel_count(self) -> int:
        return sum(int(label.numel()) for label in self.labels)


def _pad(array: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Mirror-pad the last two axes without repeating the edge pixel, as prediction and the U-Net's own padding do
    (a network trained on one mirror and used with another sees different context at the border); numpy
    mirrors again where a pad exceeds the image."""
    if not (top or bottom or left or right):
        return array
    widths = [(0, 0)] * (array.dim() - 2) + [(top, bottom), (left, right)]
    return torch.from_numpy(np.pad(array.numpy(), widths, mode="reflect"))


def _pad_to(array: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Mirror-pad the bottom and right up to at least (height, width)."""
    return _pad(array, 0, max(0, height - array.shape[-2]), 0, max(0, width - array.shape[-1]))


class Batch(NamedTuple):
    """One training batch. With a margin (valid networks) labels and weights still have the image's size:
    the trainer crops them to the network's output after augmentation."""

    images: torch.Tensor  # B x C x H x W float32
    labels: torch.Tensor  # B x H x W int64
    weights: torch.Tensor | None  # B x H x W float32 loss weights, or None
    names: list[str]  # source image of each sample


class PatchSampler:
    """Random patches (or whole images) drawn with one seeded generator, so runs repeat exactly.

    `margin` (valid networks) mirror-extends every image by that many pixels, so
    that the network's smaller output can still cover the image up to its border.
    `synthetic` pairs join the real ones so that a share `synthetic_share` of the
    patches comes from them (an epoch still counts the real pixels only).
    """

    def __init__(
        self, data: TensorPairs, patch_size: int | None, batch_size: int, generator: torch.Generator, margin: int = 0,
        synthetic: TensorPairs | None = None, synthetic_share: float = 0.0,
    ) -> None:
        if len(data) == 0:
            raise InputError("no training images left after the validation split; give more images or a smaller --val-fraction")
        if margin and patch_size is None:
            raise InputError("networks with valid convolutions train on tiles: give --patch-size (e.g. 572)")
        # the sampler's own lists: padding them (or adding synthetic pairs) must not change the caller's data
        data = TensorPairs(list(data.names), list(data.images), list(data.labels),
                           None if data.weights is None else list(data.weights))
        self.data = data
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.generator = generator
        self.margin = margin
        # each image's own pixels, before any padding: its share of the patches and of an epoch (a 40 x 40
        # image padded to 176 x 176 drew 19 times its share, mostly of mirrored copies)
        self._pixels = [int(y.shape[-2]) * int(y.shape[-1]) for y in data.labels]
        if patch_size is not None:
            if not margin:  # patches never larger than the largest image
                patch_size = min(patch_size, max(max(y.shape) for y in data.labels))
            self.patch_size = patch_size
            output = patch_size - 2 * margin

            def prepare(x: torch.Tensor) -> torch.Tensor:  # pad once here, not at every step
                x = _pad_to(x, output, output)
                return _pad(x, margin, margin, margin, margin)

            data.images = [prepare(x) for x in data.images]
            data.labels = [prepare(y) for y in data.labels]
            if data.weights is not None:
                data.weights = [prepare(w) for w in data.weights]
        sizes = torch.tensor([float(pixels) for pixels in self._pixels])
        self._image_weights = sizes / sizes.sum()
        self._real_count = len(data)
        if synthetic is not None and len(synthetic) and synthetic_share > 0:
            if patch_size is None or margin:
                raise InputError("synthetic pairs join patch training of padded networks: give --patch-size and --model unet")
            extra = torch.tensor([float(y.numel()) for y in synthetic.labels])
            self._image_weights = torch.cat([(1 - synthetic_share) * self._image_weights, synthetic_share * extra / extra.sum()])
            data.names = data.names + synthetic.names
            data.images = data.images + [_pad_to(x, self.patch_size, self.patch_size) for x in synthetic.images]
            data.labels = data.labels + [_pad_to(y, self.patch_size, self.patch_size) for y in synthetic.labels]
            if data.weights is not None:
                if synthetic.weights is None:
                    raise InputError("weighted-ce needs border weights for the synthetic pairs too")
                data.weights = data.weights + [_pad_to(w, self.patch_size, self.patch_size) for w in synthetic.weights]
        self._order: list[int] = []
        self._batches: list[list[int]] = []

    def steps_per_epoch(self) -> int:
        """Whole images: one pass over the images. Patches: enough patches to cover every pixel once on average
        (the images' own pixels: padding does not make an epoch longer)."""
        if self.patch_size is None:  # images of different sizes cannot share a batch: each size is batched apart
            counts: dict[tuple[int, ...], int] = {}
            for label in self.data.labels:
                counts[tuple(label.shape)] = counts.get(tuple(label.shape), 0) + 1
            return sum(-(-count // self.batch_size) for count in counts.values())
        output = self.patch_size - 2 * self.margin
        return max(1, -(-sum(self._pixels) // (self.batch_size * output**2)))  # unpadded pixels

    def start_epoch(self) -> None:
        """Shuffle the image order (whole-image mode draws images without replacement within an epoch)."""
        self._order = torch.randperm(self._real_count, generator=self.generator).tolist()
        self._batches = self._whole_image_batches(self._order)

    def _whole_image_batches(self, order: list[int]) -> list[list[int]]:
        """The shuffled order cut into batches of one image size each, in the order their first image comes.

        With one size this is the order cut every `batch_size` images; with several, no image is skipped.
        """
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i in order:
            by_size.setdefault(tuple(self.data.labels[i].shape), []).append(i)
        batches = [group[k : k + self.batch_size] for group in by_size.values() for k in range(0, len(group), self.batch_size)]
        position = {i: n for n, i in enumerate(order)}
        return sorted(batches, key=lambda batch: position[batch[0]])

    def batch(self, step_in_epoch: int) -> Batch:
        """The next batch: whole images in the epoch's order, or random patches."""
        weights = self.data.weights
        if self.patch_size is None:
            indices = self._batches[step_in_epoch]
            crops = [(i, slice(None), slice(None)) for i in indices]
        else:
            size = self.patch_size
            indices = torch.multinomial(self._image_weights, self.batch_size, replacement=True, generator=self.generator).tolist()
            crops = []
            for i in indices:
                height, width = self.data.labels[i].shape
                top = int(torch.randint(0, height - size + 1, (1,), generator=self.generator))
                left = int(torch.randint(0, width - size + 1, (1,), generator=self.generator))
                crops.append((i, slice(top, top + size), slice(left, left + size)))
        return Batch(
            torch.stack([self.data.images[i][:, rows, cols] for i, rows, cols in crops]),
            torch.stack([self.data.labels[i][rows, cols] for i, rows, cols in crops]).long(),
            None if weights is None else torch.stack([weights[i][rows, cols] for i, rows, cols in crops]),
            [self.data.names[i] for i in indices],
        )
