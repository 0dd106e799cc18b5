"""Label values <-> classes: every encoding users bring must come back exactly, and every bad mask must be named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from unetkit.data.io import read_pages, write_mask
from unetkit.data.labels import MAX_CLASSES, LabelEncoding
from unetkit.errors import InputError

H, W = 5, 7


def _masks(values: list, dtype: object, count: int = 3, seed: int = 0) -> list[np.ndarray]:
    """`count` masks that together hold every value; each a shuffled (H, W) array."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.resize(np.asarray(values, dtype=dtype), H * W)).reshape(H, W) for _ in range(count)]


def _named(masks: list[np.ndarray]) -> list[tuple[str, np.ndarray]]:
    return [(f"mask{i}.png", mask) for i, mask in enumerate(masks)]


GREY_CASES = {
    "0/255 uint8": ([0, 255], np.uint8),
    "0/1 uint8": ([0, 1], np.uint8),
    "bool": ([False, True], bool),
    "0..K (K=4)": ([0, 1, 2, 3, 4], np.uint8),
    "grey levels": ([0, 77, 200], np.uint8),
    "uint16": ([0, 1000, 65535], np.uint16),
    "1..K no 0": ([1, 2, 3], np.uint8),
    "integral float32": ([0.0, 1.0, 2.0], np.float32),
    "integral float64": ([0.0, 255.0], np.float64),
    "signed int16": ([-1, 0, 5], np.int16),
}


@pytest.mark.parametrize("case", list(GREY_CASES))
def test_grey_round_trip(case: str) -> None:
    values, dtype = GREY_CASES[case]
    masks = _masks(values, dtype)
    encoding = LabelEncoding.from_masks(_named(masks))
    assert encoding.values == tuple(int(v) for v in values)  # sorted, as given
    assert encoding.num_classes == len(values) and not encoding.colour
    for i, mask in enumerate(masks):
        classes = encoding.to_classes(mask, f"mask{i}.png")
        assert classes.shape == (H, W) and classes.dtype == np.uint8
        for index, value in enumerate(values):  # class i is the i-th smallest value
            assert np.all((classes == index) == (mask == value))
        back = encoding.to_values(classes)
        assert back.dtype == mask.dtype
        np.testing.assert_array_equal(back, mask)


COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 128, 255], [10, 20, 30]], dtype=np.uint8)


def test_rgb_colour_round_trip() -> None:
    rng = np.random.default_rng(1)
    masks = [COLOURS[rng.permutation(np.resize(np.arange(4), H * W)).reshape(H, W)] for _ in range(2)]
    encoding = LabelEncoding.from_masks(_named(masks))
    assert encoding.colour and encoding.num_classes == 4
    assert encoding.describe_values() == sorted(COLOURS.tolist(), key=lambda c: (c[0] << 16) | (c[1] << 8) | c[2])
    for mask in masks:
        back = encoding.to_values(encoding.to_classes(mask, "colour.png"))
        assert back.shape == (H, W, 3) and back.dtype == np.uint8
        np.testing.assert_array_equal(back, mask)


def test_grey_saved_as_rgb_is_grey() -> None:
    grey = _masks([0, 128, 255], np.uint8)
    masks = [np.repeat(m[..., None], 3, axis=-1) for m in grey]
    encoding = LabelEncoding.from_masks(_named(masks))
    assert not encoding.colour and encoding.values == (0, 128, 255)
    for mask, plain in zip(masks, grey):
        classes = encoding.to_classes(mask, "rgbgrey.png")
        np.testing.assert_array_equal(encoding.to_values(classes), plain)
        np.testing.assert_array_equal(classes, encoding.to_classes(plain, "grey.png"))  # same as the plain grey mask


def test_grey_as_rgb_among_colour_masks_counts_as_colour() -> None:
    colour = COLOURS[np.resize(np.arange(3), (H, W))]
    white = np.full((H, W, 3), 255, dtype=np.uint8)
    white[0, 0] = 0
    encoding = LabelEncoding.from_masks(_named([colour, white]))
    assert encoding.colour and encoding.num_classes == 4  # black, red, blue-ish, white
    np.testing.assert_array_equal(encoding.to_values(encoding.to_classes(white, "white.png")), white)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [np.array([[0.0, 1e20]], np.float32), np.array([[0, 2**63 + 5]], np.uint64)])
def test_mask_values_an_int64_cannot_hold_are_refused_not_wrapped(mask: np.ndarray) -> None:
    """Review: float masks of 0 and 1e20 trained as class -9223372036854775808 and predictions were written so."""
    from unetkit.data.labels import objects_and_borders, scalar_codes

    with pytest.raises(InputError, match="big.tif: mask holds values beyond"):
        scalar_codes(mask, "big.tif", colour=False)
    with pytest.raises(InputError, match="big.tif: mask holds values beyond"):  # instance ids too (review)
        objects_and_borders(mask, source="big.tif")
    huge_id = np.array([[0, 2**63 - 1]], np.int64)  # int64 itself: beyond what scipy's filters compare exactly
    with pytest.raises(InputError, match="big.tif: object ids beyond"):
        objects_and_borders(huge_id, source="big.tif")


def test_unknown_value_names_file_and_value() -> None:
    encoding = LabelEncoding.from_masks(_named(_masks([0, 255], np.uint8)))
    bad = _masks([0, 128, 255], np.uint8)[0]
    with pytest.raises(InputError, match=r"strange_mask\.png.*128"):
        encoding.to_classes(bad, "strange_mask.png")


def test_unknown_colour_names_file() -> None:
    encoding = LabelEncoding.from_masks(_named([COLOURS[np.resize(np.arange(2), (H, W))]]))
    bad = COLOURS[np.resize(np.arange(3), (H, W))]
    with pytest.raises(InputError, match=r"odd_colour\.png"):
        encoding.to_classes(bad, "odd_colour.png")


def test_colour_mask_against_grey_encoding_is_refused() -> None:
    """A red pixel (255, 0, 0) must not pass as grey 255 because its first channel is 255."""
    encoding = LabelEncoding.from_masks(_named(_masks([0, 255], np.uint8)))
    red_on_black = np.zeros((H, W, 3), dtype=np.uint8)
    red_on_black[1:3, 2:5, 0] = 255
    with pytest.raises(InputError, match=r"red\.png"):
        encoding.to_classes(red_on_black, "red.png")


def test_grey_mask_against_colour_encoding_is_refused() -> None:
    encoding = LabelEncoding.from_masks(_named([COLOURS[np.resize(np.arange(2), (H, W))]]))
    with pytest.raises(InputError, match=r"grey\.png"):
        encoding.to_classes(_masks([0, 255], np.uint8)[0], "grey.png")
    with pytest.raises(InputError, match=r"grey\.png"):  # also while collecting the classes
        LabelEncoding.from_masks([("colour.png", COLOURS[np.resize(np.arange(2), (H, W))]), ("grey.png", _masks([0, 1], np.uint8)[0])])


@pytest.mark.parametrize("value", [0, 255, True])
def test_single_valued_masks_are_refused(value: int) -> None:
    dtype = bool if value is True else np.uint8
    masks = [np.full((H, W), value, dtype=dtype) for _ in range(3)]
    with pytest.raises(InputError, match="two classes"):
        LabelEncoding.from_masks(_named(masks))


def test_values_spread_over_masks_make_the_classes() -> None:
    """Each mask alone holds one value; together they hold two: that is fine."""
    encoding = LabelEncoding.from_masks(_named([np.zeros((H, W), np.uint8), np.full((H, W), 255, np.uint8)]))
    assert encoding.values == (0, 255)


def test_no_masks_refused() -> None:
    with pytest.raises(InputError):
        LabelEncoding.from_masks([])


@pytest.mark.parametrize(("count", "ok"), [(MAX_CLASSES, True), (MAX_CLASSES + 1, False)])
def test_too_many_values(count: int, ok: bool) -> None:
    first = np.arange(count // 2, dtype=np.uint16).reshape(1, -1)
    second = np.arange(count // 2, count, dtype=np.uint16).reshape(1, -1)  # the limit counts over all masks
    masks = [("first.png", first), ("image_not_mask.png", second)]
    if ok:
        assert LabelEncoding.from_masks(masks).num_classes == count
    else:
        with pytest.raises(InputError, match=r"image_not_mask\.png"):
            LabelEncoding.from_masks(masks)


@pytest.mark.parametrize(
    "bad", [0.5, np.nan, np.inf, -np.inf], ids=["fraction", "nan", "inf", "-inf"]
)
@pytest.mark.parametrize("where", ["from_masks", "to_classes"])
def test_non_integral_floats_refused(bad: float, where: str) -> None:
    mask = np.resize(np.array([0.0, 1.0], dtype=np.float32), (H, W))
    broken = mask.copy()
    broken[2, 3] = bad
    with pytest.raises(InputError, match=r"float_mask\.tif"):
        if where == "from_masks":
            LabelEncoding.from_masks([("ok.tif", mask), ("float_mask.tif", broken)])
        else:
            LabelEncoding.from_masks([("ok.tif", mask)]).to_classes(broken, "float_mask.tif")


def test_four_channel_mask_refused() -> None:
    with pytest.raises(InputError, match=r"rgba\.png"):
        LabelEncoding.from_masks([("rgba.png", np.zeros((H, W, 4), dtype=np.uint8))])


# --- persistence ------------------------------------------------------------------------------


JSON_CASES = {
    "uint8": (_masks([0, 255], np.uint8), None),
    "bool": (_masks([False, True], bool), None),
    "float": (_masks([0.0, 3.0], np.float32), None),
    "colour": ([COLOURS[np.resize(np.arange(3), (H, W))]], None),
    "palette": (_masks([0, 1, 2], np.uint8), [0, 0, 0, 255, 0, 0, 0, 255, 0]),
}


@pytest.mark.parametrize("case", list(JSON_CASES))
def test_json_round_trip(case: str) -> None:
    masks, palette = JSON_CASES[case]
    encoding = LabelEncoding.from_masks(_named(masks), palette)
    restored = LabelEncoding.from_json(json.loads(json.dumps(encoding.to_json())))
    assert restored == encoding
    classes = encoding.to_classes(masks[0], "m.png")
    back = restored.to_values(classes)
    assert back.dtype == masks[0].dtype
    np.testing.assert_array_equal(back, masks[0])


def test_palette_masks_come_back_with_their_palette(tmp_path: Path) -> None:
    """Read palette PNGs as indices, learn the classes, write predictions with the same palette."""
    palette = [0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (768 - 9)
    indices = _masks([0, 2], np.uint8, count=1)[0]  # index 1 unused: classes are the indices found
    write_mask(tmp_path / "in.png", indices, palette)
    pages, read_palette = read_pages(tmp_path / "in.png", labels=True)
    encoding = LabelEncoding.from_masks([("in.png", pages[0])], read_palette)
    assert encoding.values == (0, 2) and encoding.palette == tuple(palette)
    predicted = encoding.to_values(encoding.to_classes(pages[0], "in.png"))
    write_mask(tmp_path / "out.png", predicted, list(encoding.palette))
    out, out_palette = read_pages(tmp_path / "out.png", labels=True)
    np.testing.assert_array_equal(out[0], indices)
    assert out_palette == palette


# --- property ---------------------------------------------------------------------------------


DTYPES = {np.uint8: (0, 255), np.uint16: (0, 65535), np.int32: (-(2**31), 2**31 - 1), np.float32: (-(2**24), 2**24)}


@st.composite
def mask_sets(draw: st.DrawFn) -> tuple[list[np.ndarray], np.dtype]:
    dtype = draw(st.sampled_from(list(DTYPES)))
    low, high = DTYPES[dtype]
    values = draw(st.lists(st.integers(low, high), min_size=2, max_size=6, unique=True))
    shapes = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6)
    masks = draw(st.lists(hnp.arrays(dtype, shapes, elements=st.sampled_from(values)), min_size=1, max_size=3))
    return masks, np.dtype(dtype)


@settings(max_examples=150, deadline=None)
@given(mask_sets())
def test_to_values_inverts_to_classes(case: tuple[list[np.ndarray], np.dtype]) -> None:
    masks, dtype = case
    found = set().union(*(np.unique(m).tolist() for m in masks))
    if len(found) < 2:
        with pytest.raises(InputError):
            LabelEncoding.from_masks(_named(masks))
        return
    encoding = LabelEncoding.from_masks(_named(masks))
    assert encoding.values == tuple(sorted(int(v) for v in found))
    for mask in masks:
        classes = encoding.to_classes(mask, "m.png")
        assert classes.max() < encoding.num_classes
        back = encoding.to_values(classes)
        assert back.dtype == dtype
        np.testing.assert_array_equal(back, mask)


def test_masks_a_png_cannot_hold_as_they_are_go_to_tiff_and_values_never_wrap(tmp_path: Path) -> None:
    negative = LabelEncoding.from_masks([("neg.tif", np.array([[0, -1], [-1, 5]], dtype=np.int16))])
    wide = LabelEncoding.from_masks([("big.tif", np.array([[0, 70000]], dtype=np.int32))])
    sixteen = LabelEncoding.from_masks([("ok.tif", np.array([[0, 65535]], dtype=np.uint16))])
    floats = LabelEncoding.from_masks([("f.tif", np.array([[0.0, 1.0]], dtype=np.float32))])
    assert sixteen.fits_png and not negative.fits_png and not wide.fits_png
    assert not floats.fits_png  # a PNG would turn float32 masks into integers: they go to TIFF as float32
    with pytest.raises(InputError, match="cannot be written"):
        write_mask(tmp_path / "m.png", np.array([[0, 70000]], dtype=np.int32))
    with pytest.raises(InputError, match="cannot be written"):
        write_mask(tmp_path / "m.png", np.array([[0, -1]], dtype=np.int16))
    assert not (tmp_path / "m.png").exists()


def test_sixteen_bit_colour_masks_are_refused_rather_than_merged() -> None:
    mask = np.zeros((2, 3, 3), dtype=np.uint16)
    mask[0, 0] = (1, 0, 0)
    mask[0, 1] = (0, 256, 0)  # packs to the same code as (1, 0, 0) with 8 bits a channel
    with pytest.raises(InputError, match="16-bit RGB"):
        LabelEncoding.from_masks([("rgb16.tif", mask)])


def test_colour_masks_most_of_which_are_empty_black_stay_a_colour_set() -> None:
    """Black RGB masks fit either kind: they must not outvote the one mask with red objects (sparse data)."""
    black = np.zeros((H, W, 3), np.uint8)
    red = black.copy()
    red[:2] = (255, 0, 0)
    encoding = LabelEncoding.from_masks([("a.png", black), ("b.png", black), ("c.png", red)])
    assert encoding.colour and encoding.describe_values() == [[0, 0, 0], [255, 0, 0]]


def test_instance_maps_become_objects_with_borders_where_they_touch() -> None:
    """Nuclei numbered 1..N: two that touch are split by background on both sides of their contact (the paper's
    separating borders), a lone one stays whole, and the background is 0 (or the most common colour)."""
    from unetkit.data.labels import OBJECT_VALUE, objects_and_borders

    ids = np.zeros((10, 14), np.uint16)
    ids[1:7, 1:5], ids[1:7, 5:9] = 3, 700  # touching along a column
    ids[7:9, 11:13] = 9  # alone, touching only diagonally nothing
    objects = objects_and_borders(ids)
    assert objects.dtype == np.uint8 and set(np.unique(objects).tolist()) == {0, OBJECT_VALUE}
    assert (objects[1:7, 4] == 0).all() and (objects[1:7, 5] == 0).all()  # the contact: one pixel each side
    assert (objects[1:7, 1:4] == OBJECT_VALUE).all() and (objects[1:7, 6:9] == OBJECT_VALUE).all()
    assert (objects[7:9, 11:13] == OBJECT_VALUE).all()  # its edge against the background is kept
    assert (objects[ids == 0] == 0).all()
    colour = np.zeros((10, 14, 3), np.uint8)
    colour[ids == 3], colour[ids == 700], colour[ids == 9] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    np.testing.assert_array_equal(objects_and_borders(colour), objects)
    white = np.where(ids == 0, 50, ids).astype(np.uint16)  # no 0: the most common value is the background
    np.testing.assert_array_equal(objects_and_borders(white), objects)
    dense = np.where(ids == 0, 700, ids)  # a crop full of cells, no 0 in it, but 0 is the set's background
    assert objects_and_borders(dense, background=0)[9, 0] == OBJECT_VALUE  # the big cell stays an object
