"""The synthetic EM generator: exact ISBI-style labels, EM-like statistics, not solvable by thresholding."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu

from unetkit.data.synthetic import make_em_dataset, make_em_image, save_pairs


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    """A few full-size pairs, shared because generating them is the slow part."""
    return make_em_dataset(3, (256, 256), seed=7)


@pytest.mark.parametrize("size", [(16, 16), (37, 50), (50, 37), (64, 64), (1, 1), (3, 90)])
def test_image_shapes_and_dtypes(size: tuple[int, int]) -> None:
    image, label = make_em_image(size, np.random.default_rng(0))
    assert image.shape == size and label.shape == size
    assert image.dtype == np.uint8 and label.dtype == np.uint8


@pytest.mark.parametrize("size", [(16, 16), (37, 50), (128, 96)])
def test_dataset_shapes_and_dtypes(size: tuple[int, int]) -> None:
    images, labels = make_em_dataset(3, size, seed=1)
    assert images.shape == labels.shape == (3, *size)
    assert images.dtype == labels.dtype == np.uint8


def test_empty_dataset() -> None:
    images, labels = make_em_dataset(0, (20, 30))
    assert images.shape == labels.shape == (0, 20, 30)


@pytest.mark.parametrize("size", [(1, 0), (0, 5), (-3, 4)])
def test_rejects_empty_sizes(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        make_em_image(size, np.random.default_rng(0))


def test_labels_are_exactly_0_and_255(batch: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = batch
    assert set(np.unique(labels).tolist()) == {0, 255}
    small = make_em_dataset(5, (37, 50), seed=3)[1]
    assert set(np.unique(small).tolist()) <= {0, 255}


def test_deterministic_for_a_seed() -> None:
    first, second = make_em_dataset(2, (48, 40), seed=5), make_em_dataset(2, (48, 40), seed=5)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_different_seeds_and_images_differ() -> None:
    (images_a, labels_a), (images_b, labels_b) = make_em_dataset(2, (64, 64), seed=1), make_em_dataset(2, (64, 64), seed=2)
    assert not np.array_equal(images_a, images_b)
    assert not np.array_equal(labels_a, labels_b)
    assert not np.array_equal(labels_a[0], labels_a[1])


def test_membrane_fraction_like_isbi(batch: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = batch
    fractions = (labels == 0).mean(axis=(1, 2))
    assert np.all((fractions > 0.12) & (fractions < 0.35)), fractions
    assert 0.17 < fractions.mean() < 0.28


def test_membranes_darker_than_interiors(batch: tuple[np.ndarray, np.ndarray]) -> None:
    for image, label in zip(*batch):
        assert image[label == 0].mean() + 30 < image[label == 255].mean()


def test_otsu_threshold_does_not_reproduce_labels(batch: tuple[np.ndarray, np.ndarray]) -> None:
    """Dark organelles make a plain threshold wrong: segmenting needs shape context."""
    for image, label in zip(*batch):
        agreement = ((image > threshold_otsu(image)) == (label == 255)).mean()
        assert agreement < 0.97


def test_interiors_form_many_cells(batch: tuple[np.ndarray, np.ndarray]) -> None:
    for label in batch[1]:
        _, n_cells = ndimage.label(label == 255)
        assert n_cells >= 10


def test_save_pairs_round_trips(tmp_path: Path) -> None:
    images, labels = make_em_dataset(12, (24, 31), seed=4)
    image_dir, label_dir = save_pairs(tmp_path / "synthetic", images, labels)
    assert (image_dir, label_dir) == (tmp_path / "synthetic" / "image", tmp_path / "synthetic" / "label")
    expected = {f"{i}.png" for i in range(12)}  # no zero padding: 10.png, not 010.png
    assert {p.name for p in image_dir.iterdir()} == expected
    assert {p.name for p in label_dir.iterdir()} == expected
    for i in range(12):
        with Image.open(image_dir / f"{i}.png") as image, Image.open(label_dir / f"{i}.png") as label:
            assert image.mode == label.mode == "L"
            np.testing.assert_array_equal(np.asarray(image), images[i])
            np.testing.assert_array_equal(np.asarray(label), labels[i])


def test_save_pairs_rejects_mismatched_or_non_uint8_stacks(tmp_path: Path) -> None:
    images, labels = make_em_dataset(2, (16, 16))
    with pytest.raises(ValueError):
        save_pairs(tmp_path, images, labels[:1])
    with pytest.raises(ValueError):
        save_pairs(tmp_path, images.astype(np.float32), labels)
