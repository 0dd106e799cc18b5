"""Score predicted masks against true masks, per image and on average.

Every labelling gets pixel error, Dice and IoU per class. A two-class labelling
with a boundary value (ISBI: 0 = membrane) also gets the ISBI 2012 challenge's
scores: regions are the connected non-boundary areas grown over the boundary
("border thinning"), then foreground-restricted adapted Rand error and V_Info
error with their split and merge parts, and the challenge's pixel error
(1 - F-score of the non-boundary pixels).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from unetkit.data.dataset import RawPair, label_stem, read_pairs
from unetkit.data.io import write_atomic
from unetkit.data.labels import (IGNORE_CLASS, LabelEncoding, is_colour, refuse_grey_value_for_colour,
                                 scalar_codes)
from unetkit.data.io import CELLS_SUFFIX, PROB_SUFFIX, list_image_files, natural_key, one_image, read_pages
from unetkit.errors import InputError
from unetkit.run import refuse_inside_inputs
from unetkit.instances import watershed_regions
from unetkit.metrics import (
    area_bias_per_class,
    boundary_scores,
    boundary_scores_at_one_threshold,
    dice_per_class,
    interior_regions,
    iou_per_class,
    object_matches,
    object_scores,
    pixel_error,
    rand_scores,
    vi_scores,
)
from unetkit.text import aligned_table, counted


def score_masks(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Metrics of one image given as class maps."""
    return {
        "pixel_error": pixel_error(pred, truth),
        "dice": dice_per_class(pred, truth, num_classes),
        "iou": iou_per_class(pred, truth, num_classes),
        "area_bias": area_bias_per_class(pred, truth, num_classes),
    }


BACKGROUND_SHARE = 0.5  # a boundary class on more than this share of the true pixels is a background (nuclei on black)
CHALLENGE_KEYS = ("rand_error", "rand_split", "rand_merge", "info_error", "vi_split", "vi_merge", "challenge_pixel_error")


def evaluate_paths(pred: Path, labels: Path, boundary_value: int | None = 0, boundary_required: bool = False,
                   ignore_value: int | None = None) -> dict[str, Any]:
    """Pair predictions with true masks by stem; classes are the values found in either.

    With two classes one of which is `boundary_value`, the challenge scores are added (`boundary_required`: the
    value was asked for, so masks where it is not one of two classes are an error, not scores left out).
    `ignore_value`: the true masks' value of unlabelled pixels (sparse labels), which are not scored; the
    challenge's region scores need whole masks and are left out then. True masks without a
    prediction (a subset was predicted) are left out and listed as "unscored"; a prediction without a true mask
    is an error.
    """
    # `predict --prob` writes NAME_prob.tif beside the masks, `predict --instances` NAME_cells.tif
    pred = _the_one_mask(Path(pred)) if one_image(Path(labels)) else pred
    unpaired: list[Path] = []
    pairs, palette = read_pairs(pred, labels, skip_suffixes=(PROB_SUFFIX, CELLS_SUFFIX), images_are_masks=True,
                                unpaired_labels=unpaired)
    unscored = [file.name for file in unpaired]
    masks = [(str(p.image.location), p.image.array) for p in pairs] + [(str(p.label.location), p.label.array) for p in pairs]
    # an empty field, rightly left empty, is one class
    encoding = LabelEncoding.from_masks(masks, palette, minimum_classes=1, ignore_value=ignore_value)
    if encoding.colour:
        where = str(pairs[0].label.location)
        if ignore_value is not None:
            refuse_grey_value_for_colour(ignore_value, "--ignore-value", where)
        if boundary_required and boundary_value is not None:
            refuse_grey_value_for_colour(boundary_value, "--boundary-value", where)
    _check_same_encoding(pairs, encoding)
    boundary = None
    if ignore_value is not None and boundary_required:
        raise InputError(f"--boundary-value {boundary_value} with --ignore-value {ignore_value}: the challenge's region "
                         "scores need fully labelled masks; drop one of them")
    if ignore_value is None and boundary_value is not None and encoding.num_classes == 2 and boundary_value in encoding.values:
        boundary = encoding.values.index(boundary_value)
    elif boundary_required:
        raise InputError(f"--boundary-value {boundary_value}: the challenge scores need two classes, one of them this "
                         f"value; the masks hold {encoding.describe_values()}")
    per_image = {}
    unlabelled: list[str] = []
    ignore_held = False  # whether any true mask holds the ignore value (else every pixel was scored: warned)
    boundary_pixels = all_pixels = 0
    for pair in pairs:
        predicted = encoding.to_classes(pair.image.array, pair.image.name)
        truth = encoding.to_classes(pair.label.array, pair.label.name)
        if boundary is not None:
            boundary_pixels, all_pixels = boundary_pixels + int((truth == boundary).sum()), all_pixels + truth.size
        labelled = truth != IGNORE_CLASS
        ignore_held = ignore_held or not labelled.all()
        if not labelled.any():  # a sparse true mask with nothing labelled: nothing to score
            unlabelled.append(Path(pair.label.location).name)
            continue
        scores = score_masks(predicted, truth, encoding.num_classes) if labelled.all() else \
            score_masks(predicted[labelled], truth[labelled], encoding.num_classes)
        if boundary is not None and (truth != boundary).any():
            challenge = boundary_scores(predicted != boundary, truth != boundary)
            challenge["challenge_pixel_error"] = challenge.pop("pixel_error")
            scores.update({k: challenge[k] for k in CHALLENGE_KEYS})
        per_image[pair.name] = scores
    if not per_image:
        raise InputError(f"{labels}: no true mask holds a labelled pixel (all --ignore-value {ignore_value}); nothing to score")
    mean: dict[str, Any] = {
        "pixel_error": float(np.mean([s["pixel_error"] for s in per_image.values()])),
        "dice": np.mean([s["dice"] for s in per_image.values()], axis=0).tolist(),
        "iou": np.mean([s["iou"] for s in per_image.values()], axis=0).tolist(),
        "area_bias": np.mean([s["area_bias"] for s in per_image.values()], axis=0).tolist(),
    }
    for key in CHALLENGE_KEYS:
        values = [s[key] for s in per_image.values() if key in s]
        if values:
            mean[key] = float(np.mean(values))
    return {"classes": encoding.describe_values(), "boundary_value": boundary_value if boundary is not None else None,
            **({"ignore_value": ignore_value, "unlabelled": unlabelled, "ignore_value_found": ignore_held}
               if ignore_value is not None else {}),
            "per_image": per_image, "mean": mean, "unscored": unscored,
            **({"boundary_is_background": True} if boundary_pixels > BACKGROUND_SHARE * all_pixels else {}),
            **({"instance_ids": True} if _instance_ids(pairs, encoding) else {})}


def _instance_ids(pairs: list[RawPair], encoding: LabelEncoding) -> bool:
    """Whether most true masks look like instance label maps (object ids): their scores compare ids as classes."""
    if encoding.num_classes <= 2:
        return False
    from unetkit.data.validate import looks_like_instance_ids, masks_are_instance_maps

    looks = []
    for pair in pairs:
        codes = scalar_codes(pair.label.array, pair.label.name, encoding.colour)
        values, counts = np.unique(codes, return_counts=True)
        if looks_like_instance_ids(codes, values, counts):
            looks.append((pair.label.name, tuple(values.tolist())))
    return masks_are_instance_maps(looks, len(pairs))  # as `check` judges them


BINARY_ENCODINGS = ({0, 1}, {0, 255}, {0, 65535}, {1, 2}, {-1, 1})  # two-class masks as tools write them


def _check_same_encoding(pairs: list[RawPair], encoding: LabelEncoding) -> None:
    """Predictions and true masks must use the same values: 0/1 predictions against 0/255 masks would be
    scored as three classes, silently. A value on one side only is fine in general (a class absent from the
    truth, or never predicted, a false object on an empty field); two encodings show as object values (all but
    0) on both sides that share none, or as a prediction file in one two-class encoding (0/1, 0/255, 0/65535,
    ilastik's 1/2, -1/1) while the true masks together hold another (0/1 against 1/2, or one file of 0/1 among
    0/255 ones), which no multi-class task does."""
    ignored = {encoding.ignore_value} if encoding.ignore_value is not None else set()  # no class of either side
    # each side of each pair as codes once: (name, codes, its values)
    sides = []
    for pair in pairs:
        for part in (pair.image, pair.label):
            codes = scalar_codes(part.array, str(part.location), encoding.colour)
            sides.append((str(part.location), codes, set(np.unique(codes).tolist()) - ignored))
    predicted: dict[int, str] = {}
    true: dict[int, str] = {}
    for index, (name, _, found) in enumerate(sides):
        for value in sorted(found):
            (true if index % 2 else predicted).setdefault(value, name)
    only_predicted, only_true = sorted(set(predicted) - set(true)), sorted(set(true) - set(predicted))
    objects_predicted, objects_true = set(predicted) - {0}, set(true) - {0}
    if objects_predicted and objects_true and not objects_predicted & objects_true:
        raise InputError(f"{predicted[only_predicted[0]]}: predictions hold values {only_predicted[:3]} and the true "
                         f"masks {only_true[:3]}, each missing from the other: two encodings (e.g. 0/1 against 0/255 "
                         "or 1/2); write the predictions in the true masks' values")
    if encoding.colour:
        return
    shift = min(true) - min(predicted) if predicted and true else 0
    if shift and len(predicted) == len(true) >= 2 and {value + shift for value in predicted} == set(true):
        # 0..K-1 against 1..K, or a class missed and another predicted: the pixels tell (a perfect prediction in
        # the other numbering scored pixel error 1.0, one that missed class 3 and marked some 0 scores as it is)
        mine, theirs = sides[0::2], sides[1::2]
        as_is = sum(int((m[1] == t[1]).sum()) for m, t in zip(mine, theirs))
        moved = sum(int((m[1] + shift == t[1]).sum()) for m, t in zip(mine, theirs))
        if moved > 2 * as_is:
            raise InputError(f"{predicted[min(predicted)]}: predictions hold {'/'.join(map(str, sorted(predicted)))} "
                             f"and the true masks {'/'.join(map(str, sorted(true)))}, which they match "
                             f"{'plus' if shift > 0 else 'minus'} {abs(shift)}: two encodings; write the predictions "
                             "in the true masks' values")
    if set(true) not in BINARY_ENCODINGS:
        return
    for name, _, found in sides[0::2]:
        if found in BINARY_ENCODINGS and found != set(true):
            raise InputError(f"{name}: holds {'/'.join(map(str, sorted(found)))} where the true masks hold "
                             f"{'/'.join(map(str, sorted(true)))}: two encodings; write the predictions in the true "
                             "masks' values")


def _truths_by_stem(labels: Path, stems: set[str]) -> dict[str, Path]:
    """The true mask of each stem: named like the prediction, or like it plus _mask, _label... as evaluate pairs them."""
    truths: dict[str, Path] = {}
    for file in list_image_files(labels):
        stem = label_stem(file.stem, stems)
        if stem in truths:
            raise InputError(f"{file}: a second mask for {stem} (besides {truths[stem].name}); keep one")
        truths[stem] = file
    return truths


def _truths_for(predicted: dict[str, Path], pred: Path, labels: Path, unscored: list[str]) -> dict[str, Path]:
    """The true mask of each prediction (by name): two files pair with each other; a prediction without one is
    an error, and the true masks without a prediction go to `unscored` (listed under the table: a prediction
    lost on the way is seen)."""
    one_each = one_image(labels) and len(predicted) == 1  # a stack's outputs, given as the file or its folder
    truths = {next(iter(predicted)): labels} if one_each else _truths_by_stem(labels, set(predicted))
    for name in sorted(set(predicted) - set(truths)):
        raise InputError(f"{predicted[name]}: no mask named {name}.* in {labels}; add it or move the file out")
    unscored[:] = [truths[name].name for name in sorted(set(truths) - set(predicted), key=natural_key)]
    return truths


def _the_one_mask(pred: Path) -> Path:
    """A predictions folder holding one mask (a stack's, with its NAME_prob.tif and NAME_cells.tif) as that
    mask, to pair with a true stack given as a file, as --objects and --instances pair them; else `pred`."""
    if not pred.is_dir():
        return pred
    masks = _mask_files(pred)
    return masks[0] if len(masks) == 1 else pred


def _mask_files(folder: Path) -> list[Path]:
    """The masks of a predictions folder, without the probabilities and cells predict writes beside them."""
    return [file for file in list_image_files(folder) if not file.stem.endswith((PROB_SUFFIX, CELLS_SUFFIX))]


def refuse_options_beside_objects(given: dict[str, Any]) -> None:
    """--objects (objects=True) compares objects with objects: the options of the other scores, named as the
    caller spells them (`given`: name -> value, None when not given), are refused, not ignored."""
    named = [name for name, value in given.items() if value is not None]
    if named:
        raise InputError(f"{'--objects' if named[0].startswith('--') else 'objects=True'} compares objects with "
                         f"objects; drop {' and '.join(named)}")


def _probability_pairs(pred: Path, labels: Path, unscored: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, K x H x W probabilities, H x W truth) pairs: NAME_prob.tif matched with NAME.* by stem.

    Two files (a stack and its masks, as `evaluate` takes them) pair with each other; a mask file given as
    --pred stands for the NAME_prob.tif beside it. `unscored` receives the true masks without a prediction."""
    pred, labels = Path(pred), Path(labels)
    if pred.is_file() and not pred.stem.endswith(PROB_SUFFIX):
        pred = pred.with_name(f"{pred.stem}{PROB_SUFFIX}.tif")
        if not pred.is_file():
            raise InputError(f"{pred}: no such file beside the masks; write it with unetkit predict --prob")
    probs = {f.stem.removesuffix(PROB_SUFFIX): f for f in list_image_files(pred) if f.stem.endswith(PROB_SUFFIX)}
    if not probs:
        raise InputError(f"{pred}: holds no NAME{PROB_SUFFIX}.tif files; write them with unetkit predict --prob")
    truths = _truths_for(probs, pred, labels, unscored)
    pairs = []
    for name in sorted(probs):
        prob_pages, truth_pages = read_pages(probs[name])[0], read_pages(truths[name], labels=True)[0]
        if prob_pages.ndim == 4:  # an ImageJ hyperstack of classes as channels (predict --prob): pages x H x W x K
            prob_pages = np.moveaxis(prob_pages, -1, 1).reshape(-1, *prob_pages.shape[1:3])
        if prob_pages.ndim != 3 or len(prob_pages) % len(truth_pages):
            raise InputError(f"{probs[name]}: not K x H x W probabilities for the {counted(len(truth_pages), 'page')} of {truths[name].name}")
        prob_pages = prob_pages.reshape(len(truth_pages), -1, *prob_pages.shape[1:])  # P x K x H x W
        for index, (prob, truth) in enumerate(zip(prob_pages, truth_pages)):
            if prob.shape[-2:] != truth.shape[:2]:
                raise InputError(f"{probs[name]}: probabilities are {prob.shape[-1]} x {prob.shape[-2]} but {truths[name].name} is "
                                 f"{truth.shape[1]} x {truth.shape[0]}; give the probabilities of these images")
            pairs.append((name if len(truth_pages) == 1 else f"{name}[{index}]", prob, truth))
    return pairs


def evaluate_probabilities(pred: Path, labels: Path, instances: str = "watershed", boundary_value: int = 0,
                           ignore_value: int | None = None) -> dict[str, Any]:
    """Challenge scores from `unetkit predict --prob` outputs (NAME_prob.tif) of a two-class boundary labelling.

    `instances`: "threshold" sweeps the thresholds 0.1 ... 0.9 and scores every
    image at the one that is best for the whole set (the challenge's protocol for a
    submitted stack of probability maps); "watershed" floods the boundary
    probability from its basins (unetkit.instances).
    """
    if instances not in ("threshold", "watershed"):
        raise InputError(f"--instances {instances}: unknown; use threshold or watershed")
    if ignore_value is not None:  # refused, not dropped: sparse true masks have no regions to compare
        raise InputError(f"--ignore-value {ignore_value}: the challenge's region scores (--instances) need fully "
                         "labelled masks; drop --instances to score the labelled pixels")
    unscored: list[str] = []
    pairs = _probability_pairs(pred, labels, unscored)
    encoding = LabelEncoding.from_masks([(name, truth) for name, _, truth in pairs], minimum_classes=1)
    if encoding.num_classes > 2 or boundary_value not in encoding.values:  # all boundary: no region, said below
        raise InputError(f"{labels}: challenge scores need two classes, one of them the boundary value {boundary_value}; "
                         f"the masks hold {encoding.describe_values()}")
    boundary = encoding.values.index(boundary_value)
    per_image: dict[str, dict[str, float]] = {}
    skipped: list[str] = []
    swept: list[tuple[str, np.ndarray, np.ndarray]] = []  # (name, interior probability, true interior): one threshold for all
    for name, prob, truth in pairs:
        if prob.ndim != 3 or prob.shape[0] != 2:
            raise InputError(f"{name}: expected 2 x H x W class probabilities (unetkit predict --prob), got {prob.shape}")
        true_interior = encoding.to_classes(truth, name) != boundary
        boundary_prob = prob[boundary].astype(np.float64)
        if not np.all(np.isfinite(boundary_prob)):
            raise InputError(f"{name}: the probabilities hold NaN or infinite values; predict this image again")
        if not true_interior.any():  # all boundary: no region to compare (evaluate's masks skip it the same way)
            skipped.append(name)
            continue
        if instances == "threshold":
            swept.append((name, np.clip(1.0 - boundary_prob, 0.0, 1.0), true_interior))
            continue
        regions, true_regions = watershed_regions(boundary_prob), interior_regions(true_interior)
        scores = {**rand_scores(regions, true_regions), **vi_scores(regions, true_regions)}
        per_image[name] = {k: v for k, v in scores.items() if k in CHALLENGE_KEYS}
    if swept:
        names, interiors, truths = zip(*swept)
        for name, scores in zip(names, boundary_scores_at_one_threshold(list(interiors), list(truths))):
            scores["challenge_pixel_error"] = scores.pop("pixel_error")
            per_image[name] = {k: v for k, v in scores.items() if k in CHALLENGE_KEYS or k.endswith("threshold")}
    if not per_image:
        raise InputError(f"{labels}: no true mask holds anything but the boundary value {boundary_value}; "
                         "challenge scores need regions")
    keys = sorted({k for s in per_image.values() for k in s})
    mean = {k: float(np.mean([s[k] for s in per_image.values()])) for k in keys}
    return {"instances": instances, "boundary_value": boundary_value, "per_image": per_image, "mean": mean,
            "skipped": skipped, "unscored": unscored}


OBJECT_KEYS = ("true_objects", "predicted_objects", "matched", "precision", "recall", "f1", "matched_iou", "ap_50_95")


def _object_pairs(pred: Path, labels: Path, unscored: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, predicted ids, true ids) pages: NAME_cells.tif (predict --instances) where PRED holds them, else
    every instance mask in PRED, matched with the true masks by stem (two-valued masks of either: objects_of).
    `unscored` receives the true masks without a prediction."""
    pred, labels = Path(pred), Path(labels)
    beside = pred.with_name(f"{pred.stem}{CELLS_SUFFIX}.tif")
    if one_image(pred) and not pred.stem.endswith(CELLS_SUFFIX) and beside.is_file():
        pred = beside  # a stack's mask given: its objects are the cells file beside it, as in a folder (audit)
    files = list_image_files(pred)
    cells = {f.stem.removesuffix(CELLS_SUFFIX): f for f in files if f.stem.endswith(CELLS_SUFFIX)}
    predicted = cells or {f.stem: f for f in files if not f.stem.endswith(PROB_SUFFIX)}
    if not predicted:
        raise InputError(f"{pred}: holds no object masks; write NAME{CELLS_SUFFIX}.tif files with unetkit predict --instances")
    truths = _truths_for(predicted, pred, labels, unscored)
    masks = {f.stem: f for f in _mask_files(pred.parent if one_image(pred) else pred)} if cells else {}
    pairs = []
    for name in sorted(predicted):
        pred_pages, true_pages = read_pages(predicted[name], labels=True)[0], read_pages(truths[name], labels=True)[0]
        if len(pred_pages) != len(true_pages):
            raise InputError(f"{predicted[name]}: has {counted(len(pred_pages), 'page')} but {truths[name]} has "
                             f"{len(true_pages)}; give the objects of these images")
        mask_pages = read_pages(masks[name], labels=True)[0] if name in masks else None
        for index, (objects, truth) in enumerate(zip(pred_pages, true_pages)):
            page = name if len(true_pages) == 1 else f"{name}[{index}]"
            ids = [scalar_codes(mask, str(path), is_colour(mask)) for mask, path in
                   ((objects, predicted[name]), (truth, truths[name]))]
            if ids[0].shape != ids[1].shape:
                raise InputError(f"{predicted[name]}: is {ids[0].shape[1]} x {ids[0].shape[0]} but {truths[name].name} is "
                                 f"{ids[1].shape[1]} x {ids[1].shape[0]}; give the objects of these images")
            objects = ids[0] if cells else objects_of(ids[0])  # cells files tile the page: every id is a cell
            if mask_pages is not None and len(mask_pages) == len(true_pages):
                objects = _cells_off_their_boundary(objects, mask_pages[index], ids[1], masks[name])
            pairs.append((page, objects, objects_of(ids[1])))
    return pairs


def _cells_off_their_boundary(cells: np.ndarray, mask: np.ndarray, truth: np.ndarray, mask_file: Path) -> np.ndarray:
    """Cells that tile the page (predict --instances on membranes) without the pixels their mask calls boundary:
    the true cells of a two-valued mask are its parts between the membranes, and cells grown over the membranes
    were each a quarter larger than them, so an exact segmentation scored F1 0.70."""
    values = np.unique(truth)
    codes = scalar_codes(mask, str(mask_file), is_colour(mask))
    if len(values) > 2 or (cells == 0).any() or codes.shape != cells.shape:
        return cells  # objects on a background, or true instance ids: compared as they are
    return np.where(codes == (0 if 0 in values else values[0]), 0, cells)


def objects_of(ids: np.ndarray) -> np.ndarray:
    """An instance map as it is; a two-valued mask (0/255 objects on background, ISBI's cells on membranes) as
    its 4-connected parts, numbered: the mask of objects, not of their ids. The background is 0 where the mask
    holds it, else its lower value. A 0/255 true mask counted as one object, F1 0 (audit)."""
    values = np.unique(ids)
    if len(values) > 2:
        return ids
    return ndimage.label(ids != (0 if 0 in values else values[0]))[0]


def evaluate_objects(pred: Path, labels: Path) -> dict[str, Any]:
    """Object scores of instance masks (objects 1..N on background 0, as `predict --instances` writes them in
    NAME_cells.tif) against true instance masks: each true object matched at IoU above 0.5, precision, recall
    and F1 of those matches, and the Data Science Bowl 2018's score averaged over IoU 0.5 ... 0.95 (metrics.
    object_scores). Pixel scores of ids compared as classes meant nothing, and region scores took two nuclei
    fused into one for a perfect result."""
    unscored: list[str] = []
    counts = {name: object_matches(objects, truth) for name, objects, truth in _object_pairs(pred, labels, unscored)}
    per_image = {name: object_scores([count]) for name, count in counts.items()}
    return {"objects": True, "per_image": per_image, "mean": object_scores(list(counts.values())), "unscored": unscored}


def format_object_table(scores: dict[str, Any]) -> str:
    """The per-image object scores, and the pooled ones on the last row (`all`)."""
    rows = [["image", *OBJECT_KEYS]]
    for name, s in list(scores["per_image"].items()) + [("all", scores["mean"])]:
        rows.append([name, *[str(s[k]) if isinstance(s[k], int) else f"{s[k]:.4f}" for k in OBJECT_KEYS]])
    return (aligned_table(rows, right=True) + "\nmatched: true objects covered by a predicted one at IoU above 0.5; "
            "ap_50_95: matched / (matched + missed + extra), averaged over IoU 0.5 ... 0.95"
            + _unscored_line(scores.get("unscored", [])))


def format_challenge_table(scores: dict[str, Any]) -> str:
    keys = [k for k in CHALLENGE_KEYS if k in scores["mean"]]
    rows = [["image", *keys]]
    for name, s in list(scores["per_image"].items()) + [("mean", scores["mean"])]:
        rows.append([name, *[f"{s[k]:.4f}" for k in keys]])
    table = aligned_table(rows, right=True)
    first = next(iter(scores["per_image"].values()), {})
    if "v_rand_threshold" in first:  # one for the set, as the challenge thresholds a stack
        table += (f"\nthresholds for the whole set: Rand {first['v_rand_threshold']:g}, VI {first['v_info_threshold']:g}, "
                  f"pixel error {first['pixel_error_threshold']:g}")
    if scores.get("skipped"):
        table += f"\nnot scored (their true masks hold no region): {', '.join(scores['skipped'])}"
    return table + _unscored_line(scores.get("unscored", []))


def format_table(scores: dict[str, Any]) -> str:
    classes = scores["classes"]
    extra = [k for k in CHALLENGE_KEYS if k in scores["mean"]]
    header = (["image", "pixel_error"] + [f"dice[{c}]" for c in classes] + [f"iou[{c}]" for c in classes]
              + [f"bias[{c}]" for c in classes] + extra)
    rows = [header]
    for name, s in list(scores["per_image"].items()) + [("mean", scores["mean"])]:
        rows.append([name, f"{s['pixel_error']:.4f}"] + [f"{v:.4f}" for v in s["dice"]] + [f"{v:.4f}" for v in s["iou"]]
                    + [f"{v:+.4f}" for v in s["area_bias"]]
                    + [f"{s[k]:.4f}" if k in s else "-" for k in extra])
    unlabelled = scores.get("unlabelled") or []
    unused = ("\nwarning: no true mask holds --ignore-value "
              f"{scores['ignore_value']}: every pixel was scored (is it the value your masks use for unlabelled?)"
              if scores.get("ignore_value_found") is False else "")  # as `check` warns
    return (aligned_table(rows, right=True) + _objects_note(scores) + _unscored_line(scores.get("unscored", []))
            + (f"\nnot scored: {counted(len(unlabelled), 'true mask')} with no labelled pixel ({', '.join(unlabelled[:5])})"
               if unlabelled else "") + unused)


def _objects_note(scores: dict[str, Any]) -> str:
    """A line under the table where its scores cannot judge objects: true masks of object ids scored as classes,
    or region scores of objects on a background, where two touching objects fused in both count as one region."""
    if scores.get("instance_ids"):
        return ("\nwarning: the true masks look like instance label maps (object ids), and these scores compare the ids "
                "as classes; score objects with --objects (on predict --instances outputs)")
    if scores.get("boundary_is_background"):
        return (f"\nnote: rand_error, vi_* and challenge_pixel_error score the regions between the pixels of value "
                f"{scores['boundary_value']}, which cover most of the true masks (objects on a background): touching "
                "objects fused in both count as one region; score objects with --objects (on predict --instances outputs)")
    return ""


def _unscored_line(unscored: list[str]) -> str:
    """The true masks left out for want of a prediction: said, so that a prediction lost on the way is seen."""
    if not unscored:
        return ""
    names = ", ".join(unscored[:5]) + (", ..." if len(unscored) > 5 else "")
    return f"\nnot scored: {counted(len(unscored), 'true mask')} without a prediction ({names})"


def check_json_target(path: Path, labels: Path | None = None) -> None:
    """--json is checked before scoring: a JSON file (never an image or mask it would overwrite) we can write,
    not among the true masks (`labels`: the user's files; the predictions folder is unetkit's own)."""
    if path.suffix.lower() != ".json":
        raise InputError(f"--json {path}: give a file name ending in .json")
    if path.is_dir():
        raise InputError(f"--json {path}: is a folder; give a file name ending in .json")
    if labels is not None:
        refuse_inside_inputs(path, [labels], flag="--json")
    if path.exists():  # only scores written by evaluate are replaced (never a run.json, an export.json, a note)
        try:
            previous = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            previous = None
        if not (isinstance(previous, dict) and {"per_image", "mean"} <= previous.keys()):
            raise InputError(f"--json {path}: exists and is not a score file of unetkit evaluate; choose a new name")
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        reason = "no such folder" if not folder.exists() else "not a folder" if not folder.is_dir() else "not writable"
        raise InputError(f"--json {path}: cannot be written ({folder}: {reason}); choose a writable path")


def write_json(scores: dict[str, Any], path: Path) -> None:
    text = json.dumps(scores, indent=2)
    write_atomic(Path(path), lambda tmp: Path(tmp).write_text(text + "\n"))


from unetkit.api import make_module_callable  # noqa: E402 (after the module's own names)

make_module_callable(__name__, "evaluate")  # `unetkit.evaluate(...)` is the API function (api.py)
