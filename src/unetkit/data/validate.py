"""Dataset checks: every problem of an image/mask folder pair at once, before any training.

`unetkit check` runs `check_dataset` and prints its table; `unetkit train` runs
`inspect_pairs` on the pairs it has decoded anyway (no second read) and stops
on the first error, naming how many there are. Readers and pairing already
refuse what cannot be read (missing, corrupt, truncated, lossy JPEG masks,
decompression bombs); the checks here look at what decodes but would train
badly or silently wrong: NaN and infinite pixels, constant images, channel
counts that differ, masks with only one value (all background), stray mask
values that only a few pixels of a few masks hold (antialiased or resampled
masks), values outside a trained run's classes, absurd sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from unetkit.data.calibration import (calibration_of, length_unit, mixed_scale_note, pixel_size_record,
                                      scale_change_note)
from unetkit.data.io import planar_colour_hint, refuse_predictions_folder
from unetkit.data.dataset import (PAIRING_RULE, PaletteCheck, RawPair, grey_among_grey, match_files,
                                  pairs_as_objects_and_borders, read_pair, split_contiguous)
from unetkit.data.labels import (MAX_CLASSES, LabelEncoding, mostly_colour, refuse_grey_value_for_colour, scalar_codes,
                                 unpack_colours)
from unetkit.errors import InputError
from unetkit.text import aligned_table, counted

MIN_SIDE = 8  # smaller images cannot pass even a shallow U-Net's poolings meaningfully
STRAY_PIXEL_SHARE = 0.001  # a value on fewer than 0.1 % of a mask's pixels ...
# Masks of more than MAX_CLASSES values of which 2 to SMOOTHED_CLASSES, each on 1 % of the pixels or more, cover
# SMOOTHED_SHARE of them were smoothed (resized bilinearly, drawn antialiased): the audit's 163 values, 3 on 97 %.
# Sparse instance maps (one value, the background, on 1 % or more) and images (values spread evenly) are not.
SMOOTHED_CLASSES, SMOOTHED_SHARE = 8, 0.85
STRAY_MASK_SHARE = 0.5  # ... and in fewer than half of the masks is probably an artefact
MAX_TABLE_ROWS = 40
LONE_VALUE_MIN_MASKS = 3  # with fewer masks a value in one of them is normal
INSTANCES = "instances"  # Finding.kind of masks that look like instance ids
ENCODING = "encoding"  # Finding.kind of a mask that shares only the background with the others: another encoding
SMOOTHED = "smoothed"  # Finding.kind of masks of a few classes and many edge values, below MAX_CLASSES values
# Between SMOOTHED_MIN_VALUES and MAX_CLASSES values, masks are called smoothed when the values besides the few
# common ones number SMOOTHED_EDGE_VALUES times the common ones or more: antialiasing leaves dozens of edge values
# (the audit's 48: 4 classes on 94 %, 44 values on edges), a set of many real classes a few rare ones.
SMOOTHED_MIN_VALUES, SMOOTHED_EDGE_VALUES = 16, 3
INSTANCE_MIN_IDS = 3  # a mask with this many object values, each one connected region, looks like an instance map
INSTANCE_MANY_IDS = 6  # ... and with the same ids in every mask, this many of them (few could be organs' classes)
INSTANCE_REGION_SLACK = 1.2  # regions per object value up to this still count as one region each (cut at an edge)
BINARY_FOREGROUNDS = (1, 255, 65535)  # the usual foreground values of two-valued masks: mixing them makes 3 classes

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem: how bad, which file, what is wrong and what to do."""

    severity: Severity
    file: str
    message: str
    kind: str = ""  # "instances": the masks look like instance ids (train refuses them unless told what they are)

    def line(self) -> str:
        return f"{self.severity}: {self.file}: {self.message}"


@dataclass
class PairSummary:
    """What one image/mask pair (or stack page) holds, for the table."""

    name: str
    size: str
    image_dtype: str
    channels: int
    mask_values: str
    label_file: str = ""  # the mask (page) it came from
    values: tuple[int, ...] | None = None  # the mask's values as class codes (colours packed); None if unreadable
    pixel_size: str = "-"  # what the image file declares (4 nm; 0.5 x 0.6 um), "-" when nothing


@dataclass
class CheckReport:
    pairs: list[PairSummary] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    colour: bool = False  # the masks are colour masks (their values are packed colours)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]


def _values_text(values: list[int], encoding_colour: bool) -> str:
    if encoding_colour:  # as users wrote them, like LabelEncoding's messages
        shown = [str(unpack_colours(np.asarray(v)).tolist()) for v in values[:6]]
    else:
        shown = [str(v) for v in values[:6]]
    return ", ".join(shown) + (f", ... ({len(values)})" if len(values) > 6 else "")


def inspect_pairs(pairs: list[RawPair], classes: LabelEncoding | None = None, in_channels: int | None = None,
                  image_dtype: str | None = None, reference: str = "the run's", ignore_value: int | None = None
                  ) -> CheckReport:
    """Checks on decoded pairs. `classes`: a trained run's encoding (values outside it are errors); `in_channels`
    and `image_dtype`: its input (a float run takes any float images, as its normalisation does); `ignore_value`:
    the masks' value of unlabelled pixels, which is not a class."""
    report = CheckReport()
    if not pairs:
        return report
    colour = report.colour = classes.colour if classes is not None else mostly_colour(p.label.array for p in pairs)
    if colour and ignore_value is not None:
        refuse_grey_value_for_colour(ignore_value, "--ignore-value", _where(pairs[0].label))
    against_training_set = reference == "the training images'"  # a validation set checked while its run is set up
    masks_reference = ("most masks" if classes is None else
                       "the training masks" if against_training_set else "the run's training masks")
    channel_counts = [p.image.channels for p in pairs]
    usual_channels = in_channels or max(set(channel_counts), key=channel_counts.count)
    dtypes = [p.image.array.dtype.name for p in pairs]
    usual_dtype = max(set(dtypes), key=dtypes.count)
    codes_per_mask: list[tuple[RawPair, np.ndarray, np.ndarray] | None] = []
    ignore_seen = False
    instance_like: list[tuple[str, tuple[int, ...]]] = []  # masks that look like instance maps, with their values
    for pair, channels in zip(pairs, channel_counts):
        image, label = pair.image.array, pair.label.array
        height, width = image.shape[:2]
        image_file, label_file = _where(pair.image), _where(pair.label)
        if min(height, width) < MIN_SIDE:
            report.findings.append(Finding("error", image_file, f"is {width} x {height} pixels; images need at least {MIN_SIDE} pixels a side"))
        if channels != usual_channels:
            expected = reference if in_channels else "most images'"
            report.findings.append(Finding("error", image_file, f"has {counted(channels, 'channel')}, {expected} {usual_channels}; "
                                           f"save all images with the same channels (greyscale or RGB){planar_colour_hint(image_file)}"))
        if image_dtype is not None:
            if image.dtype.name != image_dtype and not (image.dtype.kind == image_dtype[0] == "f"):
                report.findings.append(Finding("error", image_file, f"is {image.dtype.name}, the run's images "
                                               f"{image_dtype}; convert it to {image_dtype}, or train on images like it"))
        elif image.dtype.name != usual_dtype:
            report.findings.append(Finding("error", image_file, f"is {image.dtype.name}, most images' {usual_dtype}; "
                                           "save all images with the same bit depth"))
        if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
            count = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
            report.findings.append(Finding("error", image_file, f"holds {count} NaN or infinite {'pixel' if count == 1 else 'pixels'}; "
                                           "replace them (e.g. by the image's median) and save again"))
        elif image.size and image.min() == image.max():
            report.findings.append(Finding("warning", image_file, f"is constant (every pixel {image.flat[0]}); "
                                           "it teaches nothing: is it the right file?"))
        try:
            codes = scalar_codes(label, label_file, colour, masks_reference)
        except InputError as exc:
            report.findings.append(Finding("error", label_file, _without_source(str(exc), label_file)))
            codes_per_mask.append(None)
            report.pairs.append(PairSummary(pair.name, f"{width} x {height}", image.dtype.name, channels, "?", label_file))
            continue
        values, counts = np.unique(codes, return_counts=True)
        if ignore_value is not None:  # unlabelled pixels: not a value of the classes
            labelled = values != ignore_value
            ignore_seen = ignore_seen or not labelled.all()
            values, counts = values[labelled], counts[labelled]
            if not len(values):
                report.findings.append(Finding("warning", label_file, f"holds only the --ignore-value {ignore_value}: "
                                               "no labelled pixel; it teaches nothing"))
                codes_per_mask.append(None)
                report.pairs.append(PairSummary(pair.name, f"{width} x {height}", image.dtype.name, channels, "-",
                                                label_file, ()))
                continue
        codes_per_mask.append((pair, values, counts))
        if classes is None and looks_like_instance_ids(codes, values, counts):
            instance_like.append((label_file, tuple(values.tolist())))
        report.pairs.append(PairSummary(pair.name, f"{width} x {height}", image.dtype.name, channels,
                                        _values_text(values.tolist(), colour), label_file, tuple(values.tolist())))
        if len(values) == 1:
            report.findings.append(Finding("warning", label_file, f"holds only the value {_values_text(values.tolist(), colour)} "
                                           "(all background?); it teaches only that class"))
    declared: dict[Path, str] = {}  # a stack's pages share their file's
    for summary, pair in zip(report.pairs, pairs):
        if pair.image.path not in declared:
            declared[pair.image.path] = pixel_size_text(pair.image.path)
        summary.pixel_size = declared[pair.image.path]
    if ignore_value is not None and not ignore_seen:
        report.findings.append(Finding("warning", str(pairs[0].label.path.parent), f"--ignore-value "
                                       f"{_values_text([ignore_value], colour)} appears in no mask; is it the value of "
                                       "your unlabelled pixels? (as it is, every value is a class)"))
    elif ignore_value is not None and all(p.values == () for p in report.pairs):
        report.findings.append(Finding("error", str(pairs[0].label.path.parent), f"every mask holds only the "
                                       f"--ignore-value {_values_text([ignore_value], colour)}; label some pixels"))
    instance_findings = _instance_findings(instance_like, sum(entry is not None for entry in codes_per_mask))
    report.findings.extend(instance_findings)
    mixed, odd = _mixed_binary_findings(codes_per_mask) if classes is None and not colour else ([], set())
    report.findings.extend(mixed)
    report.findings.extend(_value_findings(codes_per_mask, classes, colour, said=odd, for_validation=against_training_set,
                                           instance_maps=bool(instance_findings)))
    return report


def looks_like_instance_ids(codes: np.ndarray, values: np.ndarray, counts: np.ndarray) -> bool:
    """Whether a mask is an instance label map: several object values beside the background (its most common
    value), each one connected region. Classes of a semantic mask are usually scattered over many regions."""
    objects = len(values) - 1
    if objects < INSTANCE_MIN_IDS:
        return False
    from skimage.measure import label  # connected regions of equal value, in one pass

    background = values[np.argmax(counts)]
    regions = int(label(codes, background=background, connectivity=2).max())
    return regions <= INSTANCE_REGION_SLACK * objects


def masks_are_instance_maps(instance_like: list[tuple[str, tuple[int, ...]]], masks: int) -> bool:
    """Whether a set of `masks` is one of instance label maps, given those that look like one (looks_like_instance_ids,
    with their values): most of them. Organ or heart masks also hold a few classes of one region each, but the
    same few in every mask: the ids must differ between masks, or be many (INSTANCE_MANY_IDS)."""
    if not instance_like or len(instance_like) * 2 < masks:
        return False
    differ = len({values for _, values in instance_like}) > 1
    return differ or float(np.median([len(values) - 1 for _, values in instance_like])) >= INSTANCE_MANY_IDS


def _instance_findings(instance_like: list[tuple[str, tuple[int, ...]]], masks: int) -> list[Finding]:
    """One warning when most masks look like instance label maps: each id would become a class."""
    if not masks_are_instance_maps(instance_like, masks):
        return []
    return [Finding("warning", instance_like[0][0], f"looks like an instance label map ({len(instance_like)} of {masks} "
                    "masks hold several values, each one connected object): as classes, each object id would be one; "
                    "train with --mask-kind instances to learn the objects and the borders between touching ones "
                    "(then predict --instances), or --mask-kind classes if the values are classes that each form "
                    "one region", INSTANCES)]


ILASTIK_PAIR = (1, 2)  # ilastik's exported two-class masks: 1 background, 2 foreground


def _binary_foreground(values: Sequence[int]) -> int | None:
    """The foreground value of a usual two-valued mask (0/1, 0/255, 0/65535), else None."""
    if len(values) == 2 and values[0] == 0 and int(values[1]) in BINARY_FOREGROUNDS:
        return int(values[1])
    return None


def _encoding_fix(values: list[int], run_values: tuple[int, ...]) -> str | None:
    """The fix when a two-valued mask only encodes its foreground differently from a two-class run (0/1 against 0/255)."""
    mine, theirs = _binary_foreground(values), _binary_foreground(run_values)
    if mine is None or theirs is None or mine == theirs:
        return None
    return f"the mask is 0/{mine}, the run's masks 0/{theirs}: save it as 0/{theirs} (mask > 0, times {theirs})"


def _binary_pair(values: Sequence[int]) -> tuple[int, int] | None:
    """The two values of a usual two-valued mask: 0/1, 0/255, 0/65535, or ilastik's 1/2 (1 background)."""
    foreground = _binary_foreground(values)
    if foreground is not None:
        return 0, foreground
    return (1, 2) if len(values) == 2 and tuple(int(v) for v in values) == ILASTIK_PAIR else None


def _mixed_binary_findings(codes_per_mask: list) -> tuple[list[Finding], set[str]]:
    """Two-valued masks in different binary encodings (0/1 beside 0/255, or beside ilastik's 1/2): together they
    would make three classes, one of them background in some masks and foreground in others. One warning naming
    the masks of the less common encodings; and those masks."""
    by_pair: dict[tuple[int, int], list[str]] = {}
    for entry in codes_per_mask:
        pair = None if entry is None else _binary_pair(entry[1])
        if pair is not None:
            by_pair.setdefault(pair, []).append(_where(entry[0].label))
    if len(by_pair) < 2:
        return [], set()
    every_value = {value for pair in by_pair for value in pair}
    if any(entry is not None and every_value <= set(entry[1].tolist()) for entry in codes_per_mask):
        return [], set()  # a mask holds them all: three classes, some masks missing one (a tile without nuclei)
    usual, *others = sorted(by_pair, key=lambda pair: -len(by_pair[pair]))
    odd = [name for pair in others for name in by_pair[pair]]
    encodings = ", ".join(f"{low}/{high}" for low, high in others)
    uses = "uses" if len(odd) == 1 else "use"
    values = " and ".join(str(value) for value in sorted(every_value))
    how = f" (mask > 0, times {usual[1]})" if usual[0] == 0 and all(low == 0 for low, _ in others) else ""
    classes = len(every_value)
    return [Finding("warning", odd[0], f"{counted(len(odd), 'mask')} {uses} {encodings} ({', '.join(Path(n).name for n in odd[:3])}"
                    f"{', ...' if len(odd) > 3 else ''}) where {len(by_pair[usual])} use {usual[0]}/{usual[1]}: together "
                    f"they make {classes} classes; save them all as {usual[0]}/{usual[1]}{how}, or, if "
                    f"{values} are classes of their own, train with --mask-kind classes",
                    ENCODING)], set(odd)  # train refuses it unless told (setup.py): 3 classes trained after a warning


def _value_findings(codes_per_mask: list, classes: LabelEncoding | None, colour: bool, said: set[str] = frozenset(),
                    for_validation: bool = False, instance_maps: bool = False) -> list[Finding]:
    """Values outside a run's classes (errors); too many values, or stray values of few pixels in few masks (warnings).
    `said`: masks already named by another warning (a mixed 0/1 and 0/255 set), not named again for their lone value.
    `for_validation`: the classes are those of the training masks of the run being set up, not of a trained run.
    `instance_maps`: the masks look like instance label maps (a background and a large cell are not smoothing)."""
    found = [entry for entry in codes_per_mask if entry is not None]
    findings: list[Finding] = []
    if classes is not None:
        known = set(classes.values)
        for pair, values, _ in found:
            unknown = sorted(set(values.tolist()) - known)
            if unknown:
                whose, otherwise = (("the training masks'", "fix the mask or leave the pair out of the validation set")
                                    if for_validation else ("the run's", "fix the mask or train a new run"))
                findings.append(Finding("error", _where(pair.label), f"values {_values_text(unknown, colour)} are not among "
                                        f"{whose} classes {classes.describe_values()}; "
                                        f"{_encoding_fix(values.tolist(), classes.values) or otherwise}"))
        return findings
    masks_with: dict[int, int] = {}
    pixels_with: dict[int, int] = {}
    for _, values, counts in found:
        for value, count in zip(values.tolist(), counts.tolist()):
            masks_with[value] = masks_with.get(value, 0) + 1
            pixels_with[value] = pixels_with.get(value, 0) + count
    if not found:  # every mask unreadable, or all unlabelled: said elsewhere
        return findings
    folder = str(found[0][0].label.path.parent)
    total = sum(pixels_with.values())
    common = [(value, count) for value, count in sorted(pixels_with.items(), key=lambda item: -item[1])[:SMOOTHED_CLASSES]
              if count >= 0.01 * total]  # a few classes of 1 % or more, edge values between them
    smoothed = (len(common) >= 2 and sum(count for _, count in common) >= SMOOTHED_SHARE * total and not instance_maps)
    if smoothed and (len(masks_with) > MAX_CLASSES or (len(masks_with) > SMOOTHED_MIN_VALUES and
                                                      len(masks_with) - len(common) >= SMOOTHED_EDGE_VALUES * len(common))):
        said = (f"masks hold {len(masks_with)} distinct values, but {len(common)} of them "
                f"({_values_text(sorted(value for value, _ in common), colour)}) cover "
                f"{sum(count for _, count in common) / total:.1%} of the pixels: the rest lie on edges, as in masks "
                "resized or drawn with smoothing (antialiasing), and each would become a class; re-save them without it "
                "(nearest-neighbour resizing, antialiasing off)")
        if len(masks_with) > MAX_CLASSES:
            return [Finding("error", folder, said)]
        return [Finding("warning", folder, said + ", or, if every value is a class, train with --mask-kind classes",
                        SMOOTHED)]  # train refuses it unless told (setup.py), as it does instance maps
    if len(masks_with) > MAX_CLASSES:
        return [Finding("error", folder, f"masks hold {len(masks_with)} distinct values, "
                        f"more than {MAX_CLASSES} classes (an image, an instance map or lossy masks?); save class masks, or "
                        "train instance maps (object ids) with --mask-kind instances")]
    if len(masks_with) == 1:
        return [Finding("error", str(found[0][0].label.path.parent), f"every mask holds only the value "
                        f"{_values_text(list(masks_with), colour)}; labels need at least two classes")]
    background = max(pixels_with, key=pixels_with.get)  # the most common value of the set
    for pair, values, counts in found:
        share = counts / counts.sum()
        stray = [v for v, s in zip(values.tolist(), share) if s < STRAY_PIXEL_SHARE and masks_with[v] < STRAY_MASK_SHARE * len(found)]
        if stray:
            findings.append(Finding("warning", _where(pair.label), f"values {_values_text(stray, colour)} cover under "
                                    f"{STRAY_PIXEL_SHARE:.1%} of it and appear in few masks (antialiased or resampled?); "
                                    "each distinct value becomes a class"))
        alone = [v for v in values.tolist() if masks_with[v] == 1 and v not in stray]
        if alone and len(found) >= LONE_VALUE_MIN_MASKS and _where(pair.label) not in said:
            shared = set(values.tolist()) - set(alone)
            if len(alone) >= 2 and shared <= {background}:  # nothing but the background in common: another encoding
                findings.append(Finding("warning", _where(pair.label), f"shares only the background "
                                        f"{_values_text([background], colour)} with the other {len(found) - 1} masks: its "
                                        f"values {_values_text(alone, colour)} appear in none of them, and each would "
                                        "become a class; if it uses another encoding (0..4 beside 0, 64, 128, ...; other "
                                        "colours), convert it, or, if they are classes of their own, train with "
                                        "--mask-kind classes", ENCODING))  # train refuses it unless told (setup.py)
                continue
            findings.append(Finding("warning", _where(pair.label), f"values {_values_text(alone, colour)} appear in no other "
                                    f"of the {len(found)} masks, and each becomes a class: if this mask uses another "
                                    "encoding (0/1 beside 0/255, other colours) or instance ids, convert it; a rare class is fine"))
    return findings


def held_out_findings(train: list[PairSummary], val: list[PairSummary], colour: bool) -> list[Finding]:
    """Values that only held-out masks hold (from inspect_pairs' summaries, split as training splits the pairs):
    no training mask shows them, so the network could not learn them.

    The classes come from the training masks, so training would stop on these
    masks; this names them with the fixes, for `check` and `train` alike.
    """
    trained = set().union(*(pair.values or () for pair in train))
    findings = []
    for pair in val:
        unseen = sorted(set(pair.values or ()) - trained)
        if unseen:
            findings.append(Finding("error", pair.label_file, f"values {_values_text(unseen, colour)} appear only in the "
                                    f"held-out block (the last {len(val)} of {len(train) + len(val)} images in "
                                    "name order), in no training mask, so the network could not learn them; rename so that "
                                    "an image holding them comes earlier, give --val-images/--val-labels, or change --val-fraction"))
    if val and all(pair.values == () for pair in val):  # all --ignore-value: nothing to validate on
        return findings + [Finding("error", val[0].label_file, f"the held-out block (the last {len(val)} of "
                                   f"{len(train) + len(val)} images) holds no labelled pixel, only the --ignore-value, so "
                                   "validation could score nothing; label some of its pixels, or give "
                                   "--val-images/--val-labels")]
    held = set().union(*(pair.values or () for pair in val))
    untested = sorted(trained - held)
    if val and untested:  # trained, but validation cannot tell how well: it scores the classes it holds
        holder = next(pair for pair in train if untested[0] in (pair.values or ()))  # the mask to move last, named
        findings.append(Finding("warning", holder.label_file, f"values {_values_text(untested, colour)} appear in no "
                                f"mask of the held-out block (the last {len(val)} of {len(train) + len(val)} images), so "
                                "validation cannot score them; rename so that an image holding them comes last, or give "
                                "--val-images/--val-labels"))
    return findings


def check_dataset(
    images: Path, labels: Path, classes: LabelEncoding | None = None, in_channels: int | None = None,
    image_dtype: str | None = None, val_fraction: float | None = None, ignore_value: int | None = None,
    run_pixel_size: dict[str, Any] | None = None, run: Path | None = None, mask_kind: str = "classes",
) -> CheckReport:
    """Pair, read and inspect everything, collecting every problem instead of stopping at the first.

    `val_fraction`: the share `train` would hold out (none with a run's classes or when None); values only the
    held-out block holds are errors, as they are for `train`. `run_pixel_size`: the run's run.json `pixel_size`,
    to warn when the images are at another scale. `run`: the folder of the run `classes` come from, whose
    palette the masks' must agree with; `mask_kind`: "instances" for a run that learnt object ids (its masks are
    checked as the objects and borders it learns, as `train --from` reads them).
    """
    refuse_predictions_folder(images, "--images")
    refuse_predictions_folder(labels, "--labels")
    matching = match_files(images, labels)
    report = CheckReport()
    report.findings += [Finding("error", message.split(": ", 1)[0], message.split(": ", 1)[-1]) for message in matching.conflicts]
    report.findings += [Finding("error", str(f), f"has no mask in {labels}; add its mask or move it out") for f in matching.orphan_images]
    rule = f" ({PAIRING_RULE})" if matching.orphan_images else ""  # orphans on both sides: names that do not pair
    report.findings += [Finding("error", str(f), f"has no image in {images}{rule}; add its image or move it out")
                        for f in matching.orphan_labels]
    pairs: list[RawPair] = []
    # the run's palette too (train --from refuses a palette that shows its indices in other colours)
    palettes = PaletteCheck.of_run(classes.palette, classes.values, run) \
        if classes is not None and classes.palette and run is not None else PaletteCheck()
    for image_file, label_file in matching.pairs:
        try:
            read, palette = read_pair(image_file, label_file)
            pairs.extend(read)
            conflict = palettes.conflict(label_file, palette, [page.label.array for page in read])
            if conflict:
                report.findings.append(Finding("error", str(label_file), conflict))
        except InputError as exc:
            file, _, message = str(exc).partition(": ")
            report.findings.append(Finding("error", file, message))
    if mask_kind == "instances":
        pairs = pairs_as_objects_and_borders(pairs)
    inspected = inspect_pairs(grey_among_grey(pairs, in_channels), classes, in_channels, image_dtype, ignore_value=ignore_value)
    report.pairs = inspected.pairs
    report.findings += inspected.findings
    values_unclear = any(f.kind in (INSTANCES, SMOOTHED, ENCODING) for f in report.findings)  # classes split: its symptom
    if classes is None and val_fraction is not None and len(pairs) >= 2 and not report.errors and not values_unclear:
        report.findings += held_out_findings(*split_contiguous(inspected.pairs, val_fraction), inspected.colour)
    declared = pixel_size_record([image for image, _ in matching.pairs])
    mixed_scales = mixed_scale_note(declared)
    if mixed_scales and classes is None:
        report.findings.append(Finding("warning", str(images), mixed_scales))
    other_scale = scale_change_note(declared, run_pixel_size)
    if other_scale:
        report.findings.append(Finding("warning", str(images), other_scale))
    if classes is None and val_fraction is not None and len(pairs) == 1:  # what train would refuse
        report.findings.append(Finding("warning", _where(pairs[0].image), "the only pair: `unetkit train` needs a "
                                       "second to hold out for validation, or --val-images/--val-labels"))
    return report


def pixel_size_text(path: Path) -> str:
    """The pixel size an image file declares, as the check table shows it: 4 nm, 0.5 x 0.6 um, 2 unit (not a
    length unetkit knows), or "-"."""
    calibration = calibration_of(path)
    if calibration is None:
        return "-"
    metres = calibration.in_metres()
    unit, size = (calibration.unit, 1.0) if metres is None else length_unit(metres[0])
    width, height = (calibration.pixel_width, calibration.pixel_height) if metres is None else (m / size for m in metres)
    shown = f"{width:.3g}" if f"{width:.3g}" == f"{height:.3g}" else f"{width:.3g} x {height:.3g}"
    return f"{shown} {unit}"


def format_report(report: CheckReport) -> str:
    """The table of pairs (the first MAX_TABLE_ROWS), then every finding, then a count. A pixel size column
    when any image declares one (a mixed set shows which do)."""
    header = ["pair", "size (w x h)", "image dtype", "channels", "mask values"]
    rows = [[p.name, p.size, p.image_dtype, str(p.channels), p.mask_values] for p in report.pairs[:MAX_TABLE_ROWS]]
    if any(p.pixel_size != "-" for p in report.pairs[:MAX_TABLE_ROWS]):
        header.append("pixel size")
        for row, p in zip(rows, report.pairs):
            row.append(p.pixel_size)
    lines = aligned_table([header, *rows]).split("\n")
    if len(report.pairs) > MAX_TABLE_ROWS:
        lines.append(f"... and {len(report.pairs) - MAX_TABLE_ROWS} more pairs")
    lines += [""] + [f.line() for f in report.findings]
    lines.append(f"{counted(len(report.pairs), 'pair')} read; {counted(len(report.errors), 'error')}, {counted(len(report.warnings), 'warning')}")
    return "\n".join(lines)


def _where(page) -> str:  # type: ignore[no-untyped-def]
    """A page's file, with the page number inside a stack."""
    return str(page.path) if page.index is None else f"{page.path}[{page.index}]"


def _without_source(message: str, source: str) -> str:
    prefix = f"{source}: "
    return message[len(prefix):] if message.startswith(prefix) else message
