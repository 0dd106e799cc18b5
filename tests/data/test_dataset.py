"""Pairing files, checking pairs, holding out validation, and the seeded patch sampler."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import blob_pair, write_png

from unetkit.data.dataset import Batch, PatchSampler, RawPair, TensorPairs, pair_files, read_pairs, split_contiguous
from unetkit.data.io import Page
from unetkit.data.labels import LabelEncoding
from unetkit.data.normalize import Normalization
from unetkit.errors import InputError


def _folders(tmp_path: Path, image_names: list[str], label_names: list[str], size: tuple[int, int] = (6, 9)) -> tuple[Path, Path]:
    """Images whose every pixel holds their number, and 0/255 masks; names as given."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    for name in image_names:
        number = int("".join(c for c in Path(name).stem if c.isdigit()) or 0)
        write_png(images / name, np.full(size, number, dtype=np.uint8))
    mask = np.zeros(size, dtype=np.uint8)
    mask[: size[0] // 2] = 255
    for name in label_names:
        write_png(labels / name, mask)
    return images, labels


# --- pairing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("label_name", ["{}.png", "{}_mask.png", "{}_label.png", "{}_GT.png", "{}_seg.png", "{}-mask.png",
                                        "{}_cp_masks.png"])
def test_pairs_by_stem_not_by_sort_order(tmp_path: Path, label_name: str) -> None:
    """"10_mask" sorts before "1_mask" in plain order while "1" sorts before "10": pairing by position would mix them."""
    images, labels = _folders(tmp_path, [f"{i}.png" for i in range(12)], [label_name.format(i) for i in range(12)])
    pairs = pair_files(images, labels)
    assert [image.name for image, _ in pairs] == [f"{i}.png" for i in range(12)]  # natural order
    assert [label.name for _, label in pairs] == [label_name.format(i) for i in range(12)]


def test_pairs_images_and_masks_of_different_formats(tmp_path: Path) -> None:
    images, labels = _folders(tmp_path, ["a.png", "b.png"], [])
    labels.mkdir()
    for name in ["b_mask.tif", "a.tif"]:
        tifffile.imwrite(labels / name, np.zeros((6, 9), dtype=np.uint8))
    assert [(i.name, m.name) for i, m in pair_files(images, labels)] == [("a.png", "a.tif"), ("b.png", "b_mask.tif")]


def test_orphan_image_named(tmp_path: Path) -> None:
    images, labels = _folders(tmp_path, ["0.png", "1.png", "7.png"], ["0.png", "1.png"])
    with pytest.raises(InputError, match=r"7\.png"):
        pair_files(images, labels)


def test_names_that_do_not_pair_are_told_the_pairing_rule(tmp_path: Path) -> None:
    images, labels = _folders(tmp_path, ["nuc01.png"], ["nuc01 mask.png"])  # a space: not a known suffix
    with pytest.raises(InputError, match=r"nuc01\.png \(a mask pairs with the image of the same name, or of its name "
                                         r"less one of _mask, .*-mask"):
        pair_files(images, labels)


def test_orphan_label_named(tmp_path: Path) -> None:
    images, labels = _folders(tmp_path, ["0.png", "1.png"], ["0_mask.png", "1_mask.png", "7_mask.png"])
    with pytest.raises(InputError, match=r"7_mask\.png"):
        pair_files(images, labels)


@pytest.mark.parametrize(
    ("image_names", "label_names", "named"),
    [
        (["a.png", "a.tif"], ["a.png"], "'a'"),  # two images, one stem
        (["a.png"], ["a.png", "a_mask.png"], "'a'"),  # two masks for one image
    ],
    ids=["images", "labels"],
)
def test_duplicate_stems_refused(tmp_path: Path, image_names: list[str], label_names: list[str], named: str) -> None:
    images, labels = _folders(tmp_path, image_names, label_names)
    with pytest.raises(InputError, match=named):
        pair_files(images, labels)


@pytest.mark.parametrize("file_side", ["images", "labels"])
def test_folder_against_single_file_refused(tmp_path: Path, file_side: str) -> None:
    images, labels = _folders(tmp_path, ["0.png", "1.png"], ["0.png", "1.png"])
    if file_side == "images":
        images = images / "0.png"
    else:
        labels = labels / "0.png"
    with pytest.raises(InputError, match="both as folders"):
        pair_files(images, labels)


def test_two_single_files_pair_whatever_their_names(tmp_path: Path) -> None:
    images, labels = _folders(tmp_path, ["volume.png"], ["truth.png"])
    assert pair_files(images / "volume.png", labels / "truth.png") == [(images / "volume.png", labels / "truth.png")]


# --- reading pairs ----------------------------------------------------------------------------


def test_read_pairs_keeps_files_together(tmp_path: Path) -> None:
    images, labels = _folders(tmp_path, [f"{i}.png" for i in range(12)], [f"{i}_mask.png" for i in range(12)])
    pairs, palette = read_pairs(images, labels)
    assert palette is None
    assert [p.name for p in pairs] == [str(i) for i in range(12)]
    assert [int(p.image.array[0, 0]) for p in pairs] == list(range(12))
    assert all(p.label.path.name == f"{p.name}_mask.png" for p in pairs)


def test_size_mismatch_names_both(tmp_path: Path) -> None:
    images, labels = _folders(tmp_path, ["cell.png"], [])
    write_png(labels / "cell_mask.png", np.zeros((6, 8), dtype=np.uint8))
    with pytest.raises(InputError, match=r"cell.*9 x 6.*cell_mask\.png.*8 x 6"):
        read_pairs(images, labels)


def test_stacks_pair_page_by_page(tmp_path: Path) -> None:
    stack = np.stack([np.full((6, 9), page, dtype=np.uint8) for page in range(4)])
    masks = np.stack([np.eye(6, 9, k=page, dtype=np.uint8) for page in range(4)])
    tifffile.imwrite(tmp_path / "volume.tif", stack, photometric="minisblack")
    tifffile.imwrite(tmp_path / "labels.tif", masks, photometric="minisblack")
    pairs, _ = read_pairs(tmp_path / "volume.tif", tmp_path / "labels.tif")
    assert [p.name for p in pairs] == [f"volume[{i}]" for i in range(4)]
    for page, pair in enumerate(pairs):
        np.testing.assert_array_equal(pair.image.array, stack[page])
        np.testing.assert_array_equal(pair.label.array, masks[page])


def test_stack_page_count_mismatch(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "volume.tif", np.zeros((4, 6, 9), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "labels.tif", np.zeros((3, 6, 9), np.uint8), photometric="minisblack")
    with pytest.raises(InputError, match=r"volume\.tif: has 4 pages.*labels\.tif has 3"):
        read_pairs(tmp_path / "volume.tif", tmp_path / "labels.tif")


def test_mixed_channel_counts_refused(tmp_path: Path) -> None:
    images, labels = _folders(tmp_path, ["0.png", "2.png"], ["0.png", "1.png", "2.png"])
    colour = np.zeros((6, 9, 3), dtype=np.uint8)
    colour[..., 0] = 200  # red: real colour, not a grey image stored as RGB
    write_png(images / "1.png", colour)
    with pytest.raises(InputError, match=r"1\.png: has 3 channels.*\(2 with 1, 1 with 3\)"):
        read_pairs(images, labels)  # the file is named, as `check` names it


def test_grey_images_saved_as_gif_or_webp_are_grey_among_grey_ones(tmp_path: Path) -> None:
    """Pillow reads a grey GIF (palette) and a grey WebP (stored as RGB) as 3 equal channels; among grey PNGs
    they were refused as colour images, by `check` and `train` (audit). A set that is all grey RGB is grey too."""
    from PIL import Image

    from unetkit.data.validate import check_dataset

    images, labels = _folders(tmp_path, ["0.png", "3.png"], ["0.png", "1.png", "2.png", "3.png"], size=(16, 16))
    ramp = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    Image.fromarray(ramp).save(images / "1.gif")
    Image.fromarray(ramp).save(images / "2.webp", lossless=True)
    pairs, _ = read_pairs(images, labels)
    assert [p.image.channels for p in pairs] == [1, 1, 1, 1]
    np.testing.assert_array_equal(pairs[2].image.array, ramp)  # lossless WebP: the grey values themselves
    assert not check_dataset(images, labels).errors
    with pytest.raises(InputError, match="different channel counts"):  # as a colour run's: they stay colour
        read_pairs(images, labels, channels=3)
    for name in ("0.png", "3.png"):
        Image.fromarray(np.asarray(Image.open(images / name).convert("RGB"))).save(images / name)
    pairs, _ = read_pairs(images, labels)  # only grey RGB: grey, so that grey PNGs predict with its run
    assert [p.image.channels for p in pairs] == [1, 1, 1, 1]
    colour = np.stack([ramp, ramp, 255 - ramp], axis=-1)
    Image.fromarray(colour).save(images / "0.png")
    pairs, _ = read_pairs(images, labels, channels=None)  # one image with real colour: the set is a colour set
    assert [p.image.channels for p in pairs] == [3, 3, 3, 3]


def test_a_grey_image_saved_as_lossy_webp_is_grey(tmp_path: Path) -> None:
    """Pillow's default WebP is lossy: a grey image comes back with its colour channels 1 level apart, was taken
    for colour (a 3-channel network), and one among grey PNGs was refused for its channel count (audit)."""
    from PIL import Image

    from unetkit.data.io import grey_of

    images, labels = _folders(tmp_path, ["0.png", "2.png"], ["0.png", "1.png", "2.png"], size=(32, 32))
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(grey).convert("RGB").save(images / "1.webp")  # lossy
    read_back = np.asarray(Image.open(images / "1.webp"))
    assert not np.array_equal(read_back[..., 0], read_back[..., 1]) or not np.array_equal(read_back[..., 0], read_back[..., 2])
    pairs, _ = read_pairs(images, labels)
    assert [p.image.channels for p in pairs] == [1, 1, 1]
    np.testing.assert_array_equal(pairs[1].image.array, np.rint(read_back.mean(axis=-1)).astype(np.uint8))
    faint = np.stack([grey, grey, np.clip(grey.astype(int) + 3, 0, 255).astype(np.uint8)], axis=-1)
    assert grey_of(faint) is None  # 3 levels apart: a tint, colour
    np.testing.assert_array_equal(grey_of(np.stack([grey] * 3, axis=-1)), grey)
    wide = np.stack([grey, grey, grey + 1], axis=-1).astype(np.uint16)
    assert grey_of(wide) is None  # 16-bit data is never lossy-coded: equal channels only


def test_palette_of_masks_is_returned(tmp_path: Path) -> None:
    from PIL import Image

    images, labels = _folders(tmp_path, ["0.png"], [])
    labels.mkdir()
    mask = Image.frombytes("P", (9, 6), np.resize(np.array([0, 1], np.uint8), 54).tobytes())
    mask.putpalette([0, 0, 0, 0, 255, 0])
    mask.save(labels / "0.png")
    pairs, palette = read_pairs(images, labels)
    assert palette is not None and palette[:6] == [0, 0, 0, 0, 255, 0]
    assert set(np.unique(pairs[0].label.array).tolist()) == {0, 1}  # indices, not colours


def _palette_mask(path: Path, indices: np.ndarray, palette: list[int]) -> None:
    from PIL import Image

    mask = Image.frombytes("P", indices.shape[::-1], indices.astype(np.uint8).tobytes())
    mask.putpalette(palette)
    mask.save(path)


def test_palettes_that_differ_only_in_unused_entries_are_one_palette(tmp_path: Path) -> None:
    """Tools save the same three colours with 3-entry and 256-entry palettes: the unused entries do not matter."""
    images, labels = _folders(tmp_path, ["0.png", "1.png"], [])
    labels.mkdir()
    used = [0, 0, 0, 255, 0, 0, 0, 255, 0]
    indices = np.resize(np.arange(3, dtype=np.uint8), (6, 9))
    _palette_mask(labels / "0.png", indices, used)
    _palette_mask(labels / "1.png", indices, used + [7, 7, 7] * 253)  # unused entries, not black
    pairs, palette = read_pairs(images, labels)
    assert palette is not None and palette[:9] == used


def test_palettes_that_colour_a_used_index_differently_are_refused(tmp_path: Path) -> None:
    images, labels = _folders(tmp_path, ["0.png", "1.png"], [])
    labels.mkdir()
    indices = np.resize(np.arange(2, dtype=np.uint8), (6, 9))
    _palette_mask(labels / "0.png", indices, [0, 0, 0, 255, 0, 0])
    _palette_mask(labels / "1.png", indices, [0, 0, 0, 0, 0, 255])
    with pytest.raises(InputError, match=r"1\.png: .*index 1 as RGB \[0, 0, 255\] but 0\.png's as \[255, 0, 0\]"):
        read_pairs(images, labels)


def test_palettes_that_give_one_colour_two_indices_are_refused(tmp_path: Path) -> None:
    """A mask whose palette put the set's green at index 5 instead of 1 trained index 5 as a class of its own,
    the same green as class 1 in the run's palette (audit)."""
    images, labels = _folders(tmp_path, ["0.png", "1.png", "2.png"], [])
    labels.mkdir()
    indices = np.resize(np.arange(2, dtype=np.uint8), (6, 9))
    _palette_mask(labels / "0.png", indices, [0, 0, 0, 0, 200, 0])
    _palette_mask(labels / "1.png", indices * 5, [0, 0, 0] + [9, 9, 9] * 4 + [0, 200, 0])
    _palette_mask(labels / "2.png", indices, [0, 0, 0, 0, 200, 0])
    with pytest.raises(InputError, match=r"1\.png: .*index 5 as RGB \[0, 200, 0\], the colour of index 1 in 0\.png"):
        read_pairs(images, labels)


def test_validation_masks_that_colour_an_index_otherwise_than_the_training_masks_are_refused(tmp_path: Path) -> None:
    """The validation masks' palette was thrown away: index 1 was scored as the training masks' class 1 whatever
    colour it showed."""
    from unetkit.train.setup import prepare_training_data

    indices = np.resize(np.arange(2, dtype=np.uint8), (16, 16))
    folders = {}
    for part, palette in (("train", [0, 0, 0, 255, 0, 0]), ("val", [0, 0, 0, 0, 0, 255])):
        images, labels = _folders(tmp_path / part, ["0.png", "1.png"], [], size=(16, 16))
        labels.mkdir()
        for name in ("0.png", "1.png"):
            _palette_mask(labels / name, indices, palette)
        folders[part] = (images, labels)
    with pytest.raises(InputError, match=r"val/labels/0\.png: .*index 1 as RGB \[0, 0, 255\] but 0\.png's as \[255, 0, 0\]"):
        prepare_training_data(*folders["train"], *folders["val"], 0.2, "percentile", say=lambda _: None)


def test_masks_that_colour_an_index_otherwise_than_the_run_fine_tuned_from_are_refused(tmp_path: Path) -> None:
    from unetkit.data.labels import LabelEncoding
    from unetkit.train.setup import prepare_training_data

    images, labels = _folders(tmp_path, ["0.png", "1.png"], [], size=(16, 16))
    labels.mkdir()
    for name in ("0.png", "1.png"):
        _palette_mask(labels / name, np.resize(np.arange(2, dtype=np.uint8), (16, 16)), [0, 0, 0, 0, 0, 255])
    run = LabelEncoding((0, 1), "uint8", palette=(0, 0, 0, 255, 0, 0))
    with pytest.raises(InputError, match=r"0\.png: .*index 1 as RGB \[0, 0, 255\] but base-run's as \[255, 0, 0\]"):
        prepare_training_data(images, labels, None, None, 0.5, "percentile", run, say=lambda _: None,
                              base_run=tmp_path / "base-run")


def test_an_index_only_a_later_mask_uses_joins_the_palette(tmp_path: Path) -> None:
    """The first mask's palette is short; a later one uses index 2: predictions must be able to draw it."""
    images, labels = _folders(tmp_path, ["0.png", "1.png"], [])
    labels.mkdir()
    _palette_mask(labels / "0.png", np.resize(np.arange(2, dtype=np.uint8), (6, 9)), [0, 0, 0, 255, 0, 0])
    _palette_mask(labels / "1.png", np.resize(np.arange(3, dtype=np.uint8), (6, 9)), [0, 0, 0, 255, 0, 0, 0, 255, 0])
    _, palette = read_pairs(images, labels)
    assert palette is not None and palette[:9] == [0, 0, 0, 255, 0, 0, 0, 255, 0]


# --- validation split -------------------------------------------------------------------------


def test_split_holds_out_the_last_files_in_natural_order(tmp_path: Path) -> None:
    images, labels = _folders(tmp_path, [f"{i}.png" for i in range(12)], [f"{i}.png" for i in range(12)])
    train, val = split_contiguous(read_pairs(images, labels)[0], 0.25)
    assert [p.name for p in train] == [str(i) for i in range(9)]
    assert [p.name for p in val] == ["9", "10", "11"]


def _raw_pairs(count: int) -> list[RawPair]:
    array = np.zeros((4, 4), dtype=np.uint8)
    return [RawPair(Page(Path(f"{i}.png"), None, array), Page(Path(f"{i}.png"), None, array)) for i in range(count)]


@pytest.mark.parametrize(
    ("count", "fraction", "held_out"),
    [(12, 0.2, 2), (12, 0.25, 3), (10, 0.5, 5), (2, 0.5, 1), (3, 0.01, 1), (3, 0.99, 2), (30, 0.1, 3)],
)
def test_split_sizes(count: int, fraction: float, held_out: int) -> None:
    pairs = _raw_pairs(count)
    train, val = split_contiguous(pairs, fraction)
    assert train + val == pairs  # nothing lost, nothing reordered
    assert len(val) == held_out


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_split_rejects_bad_fractions(fraction: float) -> None:
    with pytest.raises(InputError, match="val-fraction"):
        split_contiguous(_raw_pairs(5), fraction)


def test_split_needs_two_pairs() -> None:
    with pytest.raises(InputError):
        split_contiguous(_raw_pairs(1), 0.5)


# --- tensors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "channels"), [((6, 9), 1), ((7, 5), 3), ((1, 1), 1)])
def test_tensor_pairs_build(tmp_path: Path, size: tuple[int, int], channels: int) -> None:
    rng = np.random.default_rng(0)
    shape = size if channels == 1 else (*size, channels)
    pairs = []
    for i in range(3):
        image = rng.integers(0, 255, shape, dtype=np.uint8)
        label = (rng.integers(0, 3, size) * 100).astype(np.uint8)
        label.flat[0] = 100 * i  # every class somewhere, even in 1 x 1 masks
        pairs.append(RawPair(Page(Path(f"{i}.png"), None, image), Page(Path(f"{i}_mask.png"), None, label)))
    encoding = LabelEncoding.from_masks([(p.label.name, p.label.array) for p in pairs])
    norm = Normalization.fit([p.image.array for p in pairs], "scale")
    data = TensorPairs.build(pairs, encoding, norm)
    assert data.names == ["0", "1", "2"] and len(data) == 3
    assert data.pixel_count == 3 * size[0] * size[1]
    for pair, image, label in zip(pairs, data.images, data.labels):
        assert image.shape == (channels, *size) and image.dtype == torch.float32
        assert label.shape == size and label.dtype == torch.uint8
        np.testing.assert_array_equal(label.numpy(), pair.label.array // 100)
        expected = pair.image.array[None] if channels == 1 else np.moveaxis(pair.image.array, -1, 0)
        np.testing.assert_allclose(image.numpy(), expected / 255.0, rtol=1e-6)


# --- sampler ----------------------------------------------------------------------------------


def _threshold_data(sizes: list[tuple[int, int]], seed: int = 0, channels: int = 1) -> TensorPairs:
    """Images of distinct random values, with label == (first channel > 0.5): alignment is checkable."""
    rng = np.random.default_rng(seed)
    images = [torch.from_numpy(rng.random((channels, *size)).astype(np.float32)) for size in sizes]
    labels = [(image[0] > 0.5).to(torch.uint8) for image in images]
    return TensorPairs([f"img{i}" for i in range(len(sizes))], images, labels)


def _sampler(data: TensorPairs, patch: int | None, batch: int, seed: int) -> PatchSampler:
    return PatchSampler(data, patch, batch, torch.Generator().manual_seed(seed))


def _batches(seed: int, steps: int = 4) -> list[Batch]:
    sampler = _sampler(_threshold_data([(20, 24), (17, 30), (16, 16)]), 8, 3, seed)
    sampler.start_epoch()
    return [sampler.batch(step) for step in range(steps)]


def test_sampler_same_seed_same_batches() -> None:
    for (images_a, labels_a, _, names_a), (images_b, labels_b, _, names_b) in zip(_batches(3), _batches(3)):
        assert names_a == names_b
        assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)


def test_sampler_different_seed_different_batches() -> None:
    first, second = _batches(3), _batches(4)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, second))


def test_patches_are_aligned_crops_of_the_stored_pairs() -> None:
    data = _threshold_data([(20, 24), (13, 31), (16, 16)], channels=2)
    stored = {name: (image.clone(), label.clone()) for name, image, label in zip(data.names, data.images, data.labels)}
    sampler = _sampler(data, 8, 4, seed=0)
    sampler.start_epoch()
    for step in range(5):
        images, labels, _, names = sampler.batch(step)
        assert images.shape == (4, 2, 8, 8) and images.dtype == torch.float32
        assert labels.shape == (4, 8, 8) and labels.dtype == torch.int64
        assert torch.equal(labels, (images[:, 0] > 0.5).long())
        for image, label, name in zip(images, labels, names):
            source, source_label = stored[name]
            windows = source.unfold(1, 8, 1).unfold(2, 8, 1)  # C x top x left x 8 x 8
            matches = (windows == image[:, None, None]).flatten(3).all(-1).all(0).nonzero()
            assert len(matches) == 1, f"patch of {name} is not a crop of it"
            top, left = matches[0].tolist()
            assert torch.equal(label, source_label[top : top + 8, left : left + 8].long())


def test_the_sampler_pads_its_own_copies_not_the_callers_data() -> None:
    """It replaced the given pairs' lists with padded ones: a second sampler padded them again."""
    small = torch.rand(1, 5, 5, generator=torch.Generator().manual_seed(1))
    data = TensorPairs(["small"], [small], [(small[0] > 0.5).to(torch.uint8)])
    PatchSampler(data, 12, 2, torch.Generator().manual_seed(0), margin=2)  # pads to the output, then by the margin
    assert data.images[0] is small and tuple(data.labels[0].shape) == (5, 5) and data.names == ["small"]


def test_small_images_are_mirror_padded() -> None:
    tiny = torch.tensor([[[0.0, 0.1, 0.9], [0.8, 0.2, 0.6]]])  # 1 x 2 x 3, smaller than the patch
    large = torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(0))
    data = TensorPairs(["tiny", "large"], [tiny, large], [(x[0] > 0.5).to(torch.uint8) for x in (tiny, large)])
    sampler = _sampler(data, 4, 8, seed=0)
    expected = torch.tensor(  # rows 0 1 | 0 1, columns 0 1 2 | 1: mirrored without repeating the edge, as predict does
        [[0.0, 0.1, 0.9, 0.1], [0.8, 0.2, 0.6, 0.2], [0.0, 0.1, 0.9, 0.1], [0.8, 0.2, 0.6, 0.2]]
    )
    sampler.start_epoch()
    images, labels, _, names = sampler.batch(0)
    assert "tiny" in names
    for patch, patch_label, name in zip(images, labels, names):
        assert patch.shape == (1, 4, 4)
        assert torch.equal(patch_label, (patch[0] > 0.5).long())  # label padded the same way
        if name == "tiny":
            assert torch.equal(patch[0], expected)


def test_patch_larger_than_every_image_shrinks_to_the_largest() -> None:
    data = _threshold_data([(5, 7), (6, 4)])
    sampler = _sampler(data, 16, 2, seed=0)
    sampler.start_epoch()
    images, labels, _, _ = sampler.batch(0)
    assert images.shape == (2, 1, 7, 7) and labels.shape == (2, 7, 7)


@pytest.mark.parametrize(
    ("sizes", "patch", "batch", "steps"),
    [
        ([(8, 8)] * 5, None, 2, 3),
        ([(8, 8)] * 4, None, 4, 1),
        ([(8, 8)] * 4, None, 1, 4),
        ([(16, 16)] * 3, 8, 2, 6),  # 768 pixels / (2 x 64)
        ([(10, 10)] * 3, 8, 4, 2),  # 300 / 256, rounded up
        ([(5, 5), (10, 10)], 8, 1, 2),  # the images' own pixels, not the small one padded: 125 / 64, rounded up
        ([(4, 4)], 4, 8, 1),  # never less than one step
    ],
)
def test_steps_per_epoch(sizes: list[tuple[int, int]], patch: int | None, batch: int, steps: int) -> None:
    assert _sampler(_threshold_data(sizes), patch, batch, seed=0).steps_per_epoch() == steps


@pytest.mark.parametrize(
    ("sizes", "batch"),
    [
        ([(8, 8)] * 5, 2),
        ([(8, 8)] * 6, 3),
        ([(8, 8), (8, 8), (6, 10), (8, 8), (6, 10)], 2),  # sizes differ: they cannot share a batch
        ([(8, 8), (6, 10), (7, 7), (8, 8)], 4),
    ],
)
def test_whole_image_mode_draws_each_image_once_per_epoch(sizes: list[tuple[int, int]], batch: int) -> None:
    data = _threshold_data(sizes)
    stored = dict(zip(data.names, data.images))
    sampler = _sampler(data, None, batch, seed=0)
    orders = []
    for _ in range(4):
        sampler.start_epoch()
        seen = []
        for step in range(sampler.steps_per_epoch()):
            images, labels, _, names = sampler.batch(step)
            assert 1 <= len(names) <= batch
            for image, label, name in zip(images, labels, names):
                assert torch.equal(image, stored[name])  # whole, uncropped
                assert torch.equal(label, (image[0] > 0.5).long())
            seen += names
        assert sorted(seen) == sorted(data.names)
        orders.append(seen)
    assert len({tuple(order) for order in orders}) > 1  # shuffled between epochs


def test_sampler_refuses_no_data() -> None:
    with pytest.raises(InputError):
        _sampler(TensorPairs([], [], []), 8, 2, seed=0)


def test_toy_data_end_to_end(toy_data: tuple[Path, Path]) -> None:
    """The conftest pairs (0/255 masks) through every step: classes 0/1 line up with the bright squares."""
    pairs, _ = read_pairs(*toy_data)
    train, val = split_contiguous(pairs, 0.2)
    assert [p.name for p in val] == ["5"]
    encoding = LabelEncoding.from_masks([(p.label.name, p.label.array) for p in train])
    assert encoding.values == (0, 255)
    data = TensorPairs.build(train, encoding, Normalization.fit([p.image.array for p in train]))
    sampler = _sampler(data, 16, 4, seed=0)
    sampler.start_epoch()
    images, labels, _, _ = sampler.batch(0)
    assert images[:, 0][labels == 1].mean() > images[:, 0][labels == 0].mean() + 0.5  # squares are bright
    image, label = blob_pair(np.random.default_rng(0))  # the generator behind toy_data
    np.testing.assert_array_equal(encoding.to_classes(pairs[0].label.array, "0"), label)


def test_a_probability_map_given_as_the_single_file_is_an_error_naming_it(tmp_path: Path) -> None:
    from PIL import Image

    tifffile.imwrite(tmp_path / "x_prob.tif", np.zeros((2, 8, 8), np.float32))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(InputError, match="x_prob.tif: is not a mask but a map predict writes"):
        pair_files(tmp_path / "x_prob.tif", tmp_path / "x.png", skip_suffixes=("_prob",))
    # the mask predict writes for a stack named HeLa_cells.tif: nothing named HeLa beside it, so a mask (review)
    tifffile.imwrite(tmp_path / "HeLa_cells.tif", np.zeros((2, 8, 8), np.uint8), photometric="minisblack")
    tifffile.imwrite(tmp_path / "truth.tif", np.zeros((2, 8, 8), np.uint8), photometric="minisblack")
    assert len(pair_files(tmp_path / "HeLa_cells.tif", tmp_path / "truth.tif", skip_suffixes=("_cells",))) == 1


def test_an_image_smaller_than_the_patch_draws_patches_by_its_own_pixels_not_its_padding() -> None:
    """Padded to the patch, a 40 x 40 image among 176 x 176 ones drew 19 times its share of (mostly mirrored) patches."""
    sampler = _sampler(_threshold_data([(8, 8), (32, 32)]), 32, 64, seed=0)
    sampler.start_epoch()
    names = [name for step in range(20) for name in sampler.batch(step).names]
    share = names.count("img0") / len(names)
    assert 0.02 < share < 0.12  # its own pixels: 64 of 1088 (6 %); padded it had half


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_a_val_fraction_that_holds_out_nothing_or_everything_says_how_to_hold_none_out(fraction: float) -> None:
    """`--val-fraction 0` said only "must be between 0 and 1", though 0 is what check is told with a validation set."""
    from unetkit.data.dataset import split_contiguous

    with pytest.raises(InputError, match=r"over 0 and under 1, e\.g\. 0\.2; to hold none out, give .*--val-images"):
        split_contiguous([1, 2, 3], fraction)


def test_a_two_channel_tiff_saved_as_pages_is_told_how_to_save_it_as_channels(tmp_path: Path) -> None:
    """DAPI + membrane saved with tifffile.imwrite(f, np.stack([a, b])) reads as 2 pages beside a 1-page mask: the
    message said "give stacks of the same length" and nothing about channels (audit)."""
    import tifffile

    from conftest import write_png

    rng = np.random.default_rng(0)
    channels = rng.integers(0, 255, (2, 16, 16)).astype(np.uint8)
    (tmp_path / "image").mkdir()
    tifffile.imwrite(tmp_path / "image" / "f0.tif", channels)
    write_png(tmp_path / "label" / "f0.png", (rng.random((16, 16)) > 0.5).astype(np.uint8) * 255)
    with pytest.raises(InputError, match=r"has 2 pages but its mask .*\(if its 2 pages are the channels of one image.*"
                                         r"imagej=True, metadata=\{'axes': 'CYX'\}"):
        read_pairs(tmp_path / "image", tmp_path / "label")
    tifffile.imwrite(tmp_path / "image" / "f0.tif", channels, imagej=True, metadata={"axes": "CYX"})  # as it says
    pairs, _ = read_pairs(tmp_path / "image", tmp_path / "label")
    assert pairs[0].image.channels == 2
