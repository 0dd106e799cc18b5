"""Masks saved in ways that used to give wrong classes or scores without a word: palettes, 1-bit masks, shared
folders, mixed bit depths (each case found in review and checked against the code before the fix)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetkit.data.dataset import match_files, read_pairs
from unetkit.data.io import write_mask
from unetkit.data.labels import LabelEncoding
from unetkit.data.normalize import Normalization
from unetkit.errors import InputError
from unetkit.evaluate import evaluate_paths, evaluate_probabilities

BLACK_WHITE = [0, 0, 0, 255, 255, 255]


def blobs(seed: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(3):
        y, x = rng.integers(4, size - 4, 2)
        mask[y - 3 : y + 3, x - 3 : x + 3] = 1
    return mask


def test_evaluate_scores_palette_masks_as_the_classes_they_are(tmp_path: Path) -> None:
    """`unetkit predict` writes palette PNGs for runs trained on them; evaluate must read them as indices."""
    for folder in ("pred", "truth"):
        (tmp_path / folder).mkdir()
        for i in range(2):
            write_mask(tmp_path / folder / f"{i}.png", blobs(i), BLACK_WHITE)
    scores = evaluate_paths(tmp_path / "pred", tmp_path / "truth")
    assert scores["mean"]["pixel_error"] == 0.0
    assert scores["mean"]["dice"] == [1.0, 1.0]
    write_mask(tmp_path / "pred" / "1.png", blobs(1), [0, 0, 0, 255, 0, 0])  # another palette: indices mean other colours
    with pytest.raises(InputError, match="palette"):
        evaluate_paths(tmp_path / "pred", tmp_path / "truth")


def test_training_masks_with_different_palettes_are_refused(tmp_path: Path) -> None:
    for folder in ("image", "label"):
        (tmp_path / folder).mkdir()
    for i, palette in enumerate([[0, 0, 0, 255, 0, 0], [0, 0, 0, 0, 255, 0, 255, 0, 0]]):
        Image.fromarray(blobs(i) * 200).save(tmp_path / "image" / f"{i}.png")
        write_mask(tmp_path / "label" / f"{i}.png", blobs(i), palette)
    with pytest.raises(InputError, match=r"1.png: its palette shows index 1 as RGB \[0, 255, 0\] but 0.png.s as \[255, 0, 0\]"):
        read_pairs(tmp_path / "image", tmp_path / "label")


def test_one_bit_masks_among_0_255_masks_are_refused_not_made_a_third_class() -> None:
    mask = blobs(0)
    with pytest.raises(InputError, match="1-bit"):
        LabelEncoding.from_masks([("a", mask.astype(bool)), ("b", mask * 255)])
    assert LabelEncoding.from_masks([("a", mask.astype(bool)), ("b", mask)]).values == (0, 1)  # True is 1 in both


def test_the_same_folder_for_images_and_masks_is_refused(tmp_path: Path) -> None:
    Image.fromarray(blobs(0) * 200).save(tmp_path / "a.png")
    write_mask(tmp_path / "a_mask.png", blobs(0) * 255)
    matching = match_files(tmp_path, tmp_path)
    assert not matching.pairs and "folder of their own" in matching.conflicts[0]


def test_images_of_different_bit_depths_are_refused_naming_both(tmp_path: Path) -> None:
    for folder in ("image", "label"):
        (tmp_path / folder).mkdir()
    Image.fromarray(blobs(0) * 200).save(tmp_path / "image" / "a.png")
    Image.fromarray(blobs(1).astype(np.uint16) * 40000).save(tmp_path / "image" / "b.png")
    for name, seed in (("a", 0), ("b", 1)):
        write_mask(tmp_path / "label" / f"{name}.png", blobs(seed) * 255)
    with pytest.raises(InputError, match=r"uint16 \(b.png\), uint8 \(a.png\)"):
        read_pairs(tmp_path / "image", tmp_path / "label")


def test_scale_normalisation_divides_by_the_types_range() -> None:
    sixteen = np.array([[0, 40000, 65535]], np.uint16)
    assert Normalization.fit([sixteen], "scale").apply(sixteen).max() == pytest.approx(1.0)
    eight = np.array([[0, 128, 255]], np.uint8)
    assert Normalization.fit([eight], "scale").apply(eight).max() == pytest.approx(1.0)  # the tutorial's x / 255
    with pytest.raises(InputError, match="percentile"):
        Normalization.fit([sixteen.astype(np.float32)], "scale")


def test_instances_pair_probabilities_with_masks_named_like_evaluate_pairs_them(tmp_path: Path) -> None:
    import tifffile

    for folder in ("pred", "truth"):
        (tmp_path / folder).mkdir()
    membranes = np.ones((32, 32), np.uint8) * 255
    membranes[::8] = 0
    membranes[:, ::8] = 0
    probabilities = np.stack([(membranes == 0), (membranes == 255)]).astype(np.float32)
    tifffile.imwrite(tmp_path / "pred" / "a_prob.tif", probabilities)
    write_mask(tmp_path / "truth" / "a_mask.png", membranes)
    scores = evaluate_probabilities(tmp_path / "pred", tmp_path / "truth", "threshold")
    assert scores["mean"]["rand_error"] == pytest.approx(0.0, abs=1e-9)
    write_mask(tmp_path / "truth" / "a.png", membranes)
    with pytest.raises(InputError, match="a second mask"):
        evaluate_probabilities(tmp_path / "pred", tmp_path / "truth", "threshold")


def test_16_bit_colour_pngs_keep_their_16_bits(tmp_path: Path) -> None:
    import imagecodecs

    from unetkit.data.io import read_pages

    rgb = (np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 1000).astype(np.uint16)
    (tmp_path / "rgb16.png").write_bytes(imagecodecs.png_encode(rgb))
    pages, _ = read_pages(tmp_path / "rgb16.png")
    assert pages.dtype == np.uint16 and np.array_equal(pages[0], rgb)


def test_check_lists_palette_and_bit_depth_mismatches_that_train_refuses(tmp_path: Path) -> None:
    from unetkit.data.validate import check_dataset

    for folder in ("image", "label"):
        (tmp_path / folder).mkdir()
    for i, palette in enumerate([[0, 0, 0, 255, 0, 0], [0, 0, 0, 255, 0, 0], [0, 0, 0, 0, 255, 0]]):
        Image.fromarray(blobs(i) * 200).save(tmp_path / "image" / f"{i}.png")
        write_mask(tmp_path / "label" / f"{i}.png", blobs(i), palette)
    Image.fromarray(blobs(1).astype(np.uint16) * 40000).save(tmp_path / "image" / "1.png")
    errors = [f.line() for f in check_dataset(tmp_path / "image", tmp_path / "label").errors]
    assert any("2.png" in line and "palette" in line for line in errors), errors
    assert any("1.png" in line and "uint16" in line for line in errors), errors


def test_check_against_a_palette_run_sees_masks_that_show_its_indices_in_other_colours(tmp_path: Path) -> None:
    """Review: `check --run` said "0 errors" for masks whose palette swaps the run's colours, which `train --from`
    then refused, pointing to that very check."""
    import unetkit

    for name, palette in (("data", [0, 0, 0, 255, 0, 0]), ("swapped", [0, 0, 0, 0, 255, 0])):
        for i in range(4):
            Image.fromarray((blobs(i) * 200).astype(np.uint8)).save(_folder(tmp_path / name / "image") / f"{i}.png")
            write_mask(_folder(tmp_path / name / "label") / f"{i}.png", blobs(i), palette)
    unetkit.train(tmp_path / "data" / "image", tmp_path / "data" / "label", tmp_path / "run", epochs=1, base_width=4,
                  depth=2, patch_size=16, device="cpu", progress=False)
    same = unetkit.check(tmp_path / "data" / "image", tmp_path / "data" / "label", run=tmp_path / "run")
    assert not same.errors, [f.line() for f in same.errors]
    swapped = unetkit.check(tmp_path / "swapped" / "image", tmp_path / "swapped" / "label", run=tmp_path / "run")
    assert any("index 1 as RGB [0, 255, 0]" in f.line() for f in swapped.errors), [f.line() for f in swapped.errors]


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
