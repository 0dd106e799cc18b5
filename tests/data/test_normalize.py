"""Intensity normalisation: fitted on training images, stored, and applied the same way to new images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unetkit.data.normalize import HIGH_PERCENTILE, LOW_PERCENTILE, Normalization
from unetkit.errors import InputError

RNG = np.random.default_rng(42)


def _images(dtype: type, count: int = 3, shape: tuple[int, ...] = (9, 11)) -> list[np.ndarray]:
    if np.dtype(dtype).kind == "f":
        return [RNG.normal(-3.0, 50.0, shape).astype(dtype) for _ in range(count)]
    return [RNG.integers(np.iinfo(dtype).max // 10, np.iinfo(dtype).max // 2, shape).astype(dtype) for _ in range(count)]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_percentile_fit_maps_percentiles_to_zero_and_one(dtype: type) -> None:
    images = _images(dtype)
    norm = Normalization.fit(images)
    assert norm.method == "percentile" and norm.source_dtype == np.dtype(dtype).name
    out = np.concatenate([norm.apply(image).ravel() for image in images])
    assert np.percentile(out, LOW_PERCENTILE) == pytest.approx(0.0, abs=1e-5)
    assert np.percentile(out, HIGH_PERCENTILE) == pytest.approx(1.0, abs=1e-5)
    assert out.min() < 0.0 and out.max() > 1.0  # values beyond are kept, not clipped


def test_percentile_ignores_a_few_saturated_pixels() -> None:
    image = RNG.integers(100, 200, (40, 50)).astype(np.uint16)
    image[0, :3] = 65535  # hot pixels: 3 of 2000 pixels
    out = Normalization.fit([image]).apply(image)
    assert np.median(out) == pytest.approx(0.5, abs=0.1)


def test_apply_shape_and_dtype() -> None:
    image = _images(np.uint8, count=1, shape=(7, 5))[0]
    out = Normalization.fit([image]).apply(image)
    assert out.shape == (1, 7, 5) and out.dtype == np.float32


def test_scale_divides_by_255() -> None:
    image = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    norm = Normalization.fit([image[:5]], "scale")  # fitted on other pixels: scale does not look at them
    assert norm.low == (0.0,) and norm.high == (255.0,)
    np.testing.assert_allclose(norm.apply(image)[0], image / 255.0, rtol=1e-6)


@pytest.mark.parametrize("method", ["percentile", "scale"])
def test_multi_channel_each_channel_on_its_own(method: str) -> None:
    rng = np.random.default_rng(0)
    red = rng.uniform(0, 20, (12, 10))
    green = rng.uniform(100, 250, (12, 10))
    blue = np.full((12, 10), 7.0)  # constant channel
    image = np.stack([red, green, blue], axis=-1).astype(np.uint8)
    norm = Normalization.fit([image], method)
    assert len(norm.low) == len(norm.high) == 3
    out = norm.apply(image)
    assert out.shape == (3, 12, 10)
    for channel in range(3):
        if method == "scale":
            np.testing.assert_allclose(out[channel], image[..., channel] / 255.0, rtol=1e-6)
        elif channel < 2:
            assert np.percentile(out[channel], LOW_PERCENTILE) == pytest.approx(0.0, abs=1e-5)
            assert np.percentile(out[channel], HIGH_PERCENTILE) == pytest.approx(1.0, abs=1e-5)
        else:
            assert np.all(np.isfinite(out[channel])) and np.all(out[channel] == 0.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_constant_image_does_not_divide_by_zero(dtype: type) -> None:
    image = np.full((6, 6), 7, dtype=dtype)
    norm = Normalization.fit([image])
    assert norm.high[0] > norm.low[0]
    out = norm.apply(image)
    assert np.all(np.isfinite(out)) and np.all(out == 0.0)


def test_sparse_bright_spots_on_black_are_scaled_by_the_brightest_pixel() -> None:
    """99.5 % of the pixels 0: both percentiles were 0, high became 1 and raw values of 65000 reached the network."""
    images = [np.zeros((100, 100), np.uint16) for _ in range(3)]
    images[1][5, 5:25] = 65000  # 20 bright pixels: far under the 0.5 % above the high percentile
    images[2][50, 50] = 3000
    norm = Normalization.fit(images)
    assert (norm.low[0], norm.high[0]) == (0.0, 65000.0)
    assert norm.apply(images[1]).max() == 1.0
    saturated = [np.full((100, 100), 65535, np.uint16)]  # the mirror case: a few dark spots on white
    saturated[0][7, 10:30] = 100
    norm = Normalization.fit(saturated)
    assert (norm.low[0], norm.high[0]) == (100.0, 65535.0)


# --- checks at apply --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trained", "given"),
    [((8, 8), (8, 8, 3)), ((8, 8, 3), (8, 8)), ((8, 8, 3), (8, 8, 4))],
    ids=["grey-model-rgb-image", "rgb-model-grey-image", "rgb-model-4-channels"],
)
def test_wrong_channel_count(trained: tuple[int, ...], given: tuple[int, ...]) -> None:
    norm = Normalization.fit([np.zeros(trained, dtype=np.uint8)])
    with pytest.raises(InputError, match=r"new_image\.png.*channel"):
        norm.apply(np.zeros(given, dtype=np.uint8), "new_image.png")


@pytest.mark.parametrize(
    ("trained", "given", "ok"),
    [
        (np.uint8, np.uint16, False),
        (np.uint16, np.uint8, False),
        (np.uint8, np.float32, False),
        (np.float32, np.uint8, False),
        (np.float32, np.float64, True),  # float is float
        (np.float64, np.float32, True),
        (np.uint16, np.uint16, True),
    ],
)
def test_dtype_checked_against_training(trained: type, given: type, ok: bool) -> None:
    norm = Normalization.fit([np.arange(16, dtype=trained).reshape(4, 4)])
    image = np.arange(16, dtype=given).reshape(4, 4)
    if ok:
        np.testing.assert_allclose(norm.apply(image), norm.apply(image.astype(trained)), rtol=1e-6)
    else:
        with pytest.raises(InputError, match=rf"scan\.tif.*{np.dtype(given).name}"):
            norm.apply(image, "scan.tif")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_refused_at_apply(bad: float) -> None:
    image = RNG.random((5, 5)).astype(np.float32)
    norm = Normalization.fit([image])
    broken = image.copy()
    broken[2, 2] = bad
    with pytest.raises(InputError, match=r"broken\.tif"):
        norm.apply(broken, "broken.tif")


def test_non_finite_training_pixel_blames_its_own_image() -> None:
    """A NaN in one training image must not poison the fit and then be blamed on every other image."""
    clean = RNG.random((6, 6)).astype(np.float32)
    broken = RNG.random((6, 6)).astype(np.float32)
    broken[3, 3] = np.nan
    norm = Normalization.fit([clean, broken])
    assert np.all(np.isfinite(norm.low)) and np.all(np.isfinite(norm.high))
    assert np.all(np.isfinite(norm.apply(clean, "clean.tif")))
    with pytest.raises(InputError, match=r"broken\.tif"):
        norm.apply(broken, "broken.tif")


def test_training_channel_without_finite_values_refused() -> None:
    with pytest.raises(InputError, match="finite"):
        Normalization.fit([np.full((4, 4), np.nan, dtype=np.float32)])


def test_unknown_method_refused() -> None:
    with pytest.raises(InputError, match="zscore"):
        Normalization.fit([np.zeros((4, 4), dtype=np.uint8)], "zscore")


# --- persistence ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["percentile", "scale"])
@pytest.mark.parametrize("shape", [(6, 7), (6, 7, 3)])
def test_json_round_trip(method: str, shape: tuple[int, ...]) -> None:
    images = _images(np.uint16, shape=shape)
    norm = Normalization.fit(images, method)
    restored = Normalization.from_json(json.loads(json.dumps(norm.to_json())))
    assert restored == norm
    np.testing.assert_array_equal(restored.apply(images[0]), norm.apply(images[0]))


def test_an_image_mostly_outside_the_training_range_is_named_by_its_channel() -> None:
    rng = np.random.default_rng(0)
    training = [rng.integers(1000, 1400, (64, 64, 2)).astype(np.uint16) for _ in range(3)]
    norm = Normalization.fit(training)
    assert norm.unlike_training(training[0] + 40, "a.tif") is None  # a modest offset: a tenth of the range
    shifted = training[0].copy()
    shifted[..., 1] += 600
    warning = norm.unlike_training(shifted, "b.tif")
    assert warning is not None and warning.startswith("warning: b.tif: its median intensity (channel 1)")
    darker = (training[0] // 2).astype(np.uint16)
    assert "(channel 0)" in norm.unlike_training(darker, "c.tif")
    scaled = Normalization.fit([t.astype(np.uint8) for t in training], method="scale")
    assert scaled.unlike_training(np.zeros((8, 8, 2), np.uint8)) is None  # a fixed scale has no training range


def test_an_offset_that_lifts_a_dark_background_is_warned_about_within_the_range() -> None:
    """Fluorescence: on a dark background the high percentile is the nuclei's brightness, and a camera offset of
    +1000 left the median (1223) inside the range (51 to 4491): every pixel came out foreground, no warning (audit).
    The training images' own steadiest level, the background's 10th percentile, says how far it lies; a denser
    field of the same acquisition moves the median, not that level, and is not warned about (review)."""
    rng = np.random.default_rng(0)

    def field(nuclei: float) -> np.ndarray:
        image = rng.normal(230, 20, (64, 64))
        image[rng.random((64, 64)) < nuclei] = rng.normal(4000, 400)  # bright nuclei on a share of the pixels
        return np.clip(image, 0, 65535).astype(np.uint16)

    training = [field(share) for share in (0.05, 0.1, 0.2, 0.3)]
    norm = Normalization.fit(training)
    assert norm.low[0] < 1223 < norm.high[0]  # inside the range: the range check passed it
    assert norm.levels is not None and norm.levels[0][0] == 10 and norm.level_images == 4
    warning = norm.unlike_training(training[0] + 1000, "t.tif")
    assert warning is not None and "its 10th percentile intensity" in warning and "lies far from the training" in warning
    assert norm.unlike_training(field(0.55), "dense.tif") is None  # median 3500: more nuclei, same acquisition
    assert norm.unlike_training((training[0] * 1.2).astype(np.uint16), "brighter.tif") is None  # exposure x1.2
    old_run = Normalization.from_json({k: v for k, v in norm.to_json().items() if k not in ("levels", "level_images")})
    assert old_run.levels is None and old_run.unlike_training(training[0] + 1000, "t.tif") is None  # as before
    assert Normalization.from_json(json.loads(json.dumps(norm.to_json()))) == norm
    from unetkit.data.normalize import pixel_samples

    tuned = norm.with_levels_of(pixel_samples([training[0] + 1000]), widen=True)  # fine-tuned on such images
    assert tuned.low == norm.low and tuned.level_images == 5 and tuned.unlike_training(training[1] + 1000, "t.tif") is None


def test_one_training_image_leaves_room_for_ordinary_variation() -> None:
    """Fitted on one ISBI-like section, other sections of the same stack were called unlike it: one image shows no
    variation, so the margin is wider for few images (review)."""
    rng = np.random.default_rng(1)
    sections = [np.clip(rng.normal(mean, 40, (64, 64)), 0, 255).astype(np.uint8) for mean in (140, 101, 152)]
    norm = Normalization.fit(sections[:1])
    assert norm.level_images == 1
    assert norm.unlike_training(sections[1], "8.tif") is None and norm.unlike_training(sections[2], "24.tif") is None
    assert norm.unlike_training(np.clip(sections[0].astype(int) + 90, 0, 255).astype(np.uint8), "offset.tif") is not None
