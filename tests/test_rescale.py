"""predict --match-pixel-size: inputs of another pixel size are predicted at the training images' and their
masks come back on the inputs' own pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import train_tiny_run, write_png
from test_cli import assert_one_line_error, run_cli

from unetkit.data.calibration import calibration_of, parse_length
from unetkit.data.io import read_pages
from unetkit.errors import InputError
from unetkit.predict_files import predict_paths
from unetkit.rescale import MATCH_TOLERANCE, PixelSizes, resample, resample_image, scaled_shape


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run on 48 px blob images whose files declare no pixel size (run.json has none)."""
    return train_tiny_run(tmp_path_factory.mktemp("rescale"), count=3, size=48, epochs=2)


def _write_nm(path: Path, image: np.ndarray, nm: float) -> Path:
    tifffile.imwrite(path, image, imagej=True, resolution=(1 / nm, 1 / nm), metadata={"unit": "nm"})
    return path


def test_lengths_people_type_and_those_refused() -> None:
    assert [parse_length(text, "--pixel-size") for text in ("8nm", "0.65 um", "1e-3mm", "4 \u00b5m")] == \
        pytest.approx([8e-9, 6.5e-7, 1e-6, 4e-6])
    for text in ("3 px", "8", "-2nm", "0nm", "nm"):
        with pytest.raises(InputError, match=r"--pixel-size .*give a pixel size with its unit, e\.g\. --pixel-size 8nm"):
            parse_length(text, "--pixel-size")


def test_which_inputs_are_resampled_and_by_how_much(tmp_path: Path) -> None:
    image = np.zeros((8, 8), np.uint8)
    coarse, near, undeclared = _write_nm(tmp_path / "a.tif", image, 20), _write_nm(tmp_path / "b.tif", image, 10.1), \
        write_png(tmp_path / "c.png", image)
    record = {"width_m": 10e-9, "height_m": 10e-9}
    matched = PixelSizes.for_run(record, True)
    assert matched.scale_of(coarse) == pytest.approx((2.0, 2.0))
    assert matched.scale_of(near) is None and 10.1 / 10 < MATCH_TOLERANCE  # within the tolerance: as it is
    assert matched.scale_of(undeclared) is None and "declares no pixel size" in matched.warning(undeclared)
    assert PixelSizes.for_run(record).scale_of(coarse) is None  # not asked: never resampled
    assert "--match-pixel-size" in PixelSizes.for_run(record).warning(coarse)
    given = PixelSizes.for_run(record, True, "5nm")  # --pixel-size wins over what files declare
    assert given.scale_of(coarse) == pytest.approx((0.5, 0.5)) and given.scale_of(undeclared) == pytest.approx((0.5, 0.5))
    assert PixelSizes.for_run(None, True, training="40nm").scale_of(coarse) == pytest.approx((0.5, 0.5))
    assert PixelSizes.for_run(record, True, training="10.1nm").training_m == pytest.approx((10e-9, 10e-9))
    with pytest.raises(InputError, match="declared no pixel size, so there is none to match; give the size they had, "
                                         "e.g. --training-pixel-size 4nm"):
        PixelSizes.for_run(None, True)
    with pytest.raises(InputError, match=r"--training-pixel-size 20nm: this run's training images declared 10 nm pixels "
                                         r"\(run.json\); leave it out"):
        PixelSizes.for_run(record, True, training="20nm")  # easily taken for the inputs' size: never overrides run.json
    with pytest.raises(InputError, match="match_pixel_size='4nm': give True or False"):
        PixelSizes.for_run(record, "4nm")  # type: ignore[arg-type]


def test_sizes_too_far_apart_to_match_are_refused_not_predicted_as_one_pixel(tmp_path: Path) -> None:
    """A typo (8pm for 8nm) sent a 256 px image through the network as one pixel: a constant mask, exit 0."""
    image = np.zeros((256, 256), np.uint8)
    record = {"width_m": 8e-9, "height_m": 8e-9}
    with pytest.raises(InputError, match=r"--pixel-size 8pm: 8e-12 m is no pixel size an instrument makes"):
        PixelSizes.for_run(record, True, "8pm")  # refused as typed, wherever it is typed (train keeps it for good)
    with pytest.raises(InputError, match=r"sec.png: its pixels \(8 um\) are 1e\+03x larger than the training "
                                         r"images' \(8 nm\); --match-pixel-size resamples by at most 10x"):
        PixelSizes.for_run(record, True, "8um").scale_of(write_png(tmp_path / "sec.png", image))
    Image.fromarray(image).save(tmp_path / "dpi.png", dpi=(72, 72))  # Pillow's and cameras' placeholder: 353 um
    with pytest.raises(InputError, match="353 um.*a placeholder such as 72 dpi.*--pixel-size"):
        PixelSizes.for_run(record, True).scale_of(tmp_path / "dpi.png")
    assert PixelSizes.for_run(record, True, "80nm").scale_of(tmp_path / "sec.png") == pytest.approx((10, 10))


def test_pages_whose_resampling_would_not_fit_in_memory_are_refused_first(monkeypatch: pytest.MonkeyPatch) -> None:
    import unetkit.rescale as rescale

    monkeypatch.setattr(rescale, "available_memory_bytes", lambda: 8 * 2**30)
    rescale.check_resampling_fits("a.tif", 2000 * 3000, (2.0, 2.0), 1, 2, 2**28)  # 24 + 6 Mpx x 3 values x 32 B: 2.7 GiB
    with pytest.raises(InputError, match=r"b.tif: resampled to the training pixel size it is 96 million pixels, which "
                                         r"with its class maps needs about 10.7 GiB \(8 GiB are free\)"):
        rescale.check_resampling_fits("b.tif", 4000 * 6000, (2.0, 2.0), 1, 2, 2**28)
    with pytest.raises(InputError, match="c.tif: resampled"):  # over the streamed-page size, whatever the memory
        rescale.check_resampling_fits("c.tif", 2**20, (1.0, 2.0), 1, 2, 2**20)

    assert scaled_shape((7, 9, 3), (0.5, 2.0)) == (4, 18) and scaled_shape((1, 1), (0.1, 0.1)) == (1, 1)


def test_resampled_probabilities_stay_probabilities() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 17, 23)).astype(np.float32)
    maps = np.exp(logits) / np.exp(logits).sum(0)
    for shape in ((34, 46), (9, 12)):
        back = resample(maps, shape, channels_last=False)
        assert back.shape == (3, *shape) and back.dtype == np.float32
        np.testing.assert_allclose(back.sum(0), 1.0, atol=1e-5)
    rgb = resample(rng.integers(0, 255, (10, 12, 3)).astype(np.uint8), (20, 24), channels_last=True)
    assert rgb.shape == (20, 24, 3)


def test_a_coarser_input_is_predicted_at_the_training_scale_and_masked_at_its_own(tiny_run: Path, tmp_path: Path) -> None:
    """A training image halved (20 nm for 10 nm): matched, the network sees it at twice its size, as it saw
    the training objects, and the probabilities come back to the input's 24 x 24 pixels and its calibration."""
    from unetkit.run import load_run

    run = load_run(tiny_run / "run", "cpu")
    seen: list[tuple[int, ...]] = []
    run.model.register_forward_pre_hook(lambda _, inputs: seen.append(tuple(inputs[0].shape[-2:])))
    full = read_pages(tiny_run / "image" / "0.png")[0][0]
    (tmp_path / "in").mkdir()
    _write_nm(tmp_path / "in" / "half.tif", resample_image(full, (24, 24)), 20)
    said: list[str] = []
    predict_paths(run, [tmp_path / "in"], tmp_path / "matched", write_probabilities=True, progress=False,
                  say=said.append, match_pixel_size=True, training_pixel_size="10nm")
    assert seen and all(shape[0] >= 48 and shape[1] >= 48 for shape in seen), seen
    matched = tifffile.imread(tmp_path / "matched" / "half_prob.tif")
    assert matched.shape == (2, 24, 24)
    np.testing.assert_allclose(matched.sum(0), 1.0, atol=1e-3)
    mask = read_pages(tmp_path / "matched" / "half.png")[0][0]
    assert mask.shape == (24, 24) and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 255, matched[1] > matched[0])  # the mask is of the probabilities written
    assert calibration_of(tmp_path / "matched" / "half.png").in_metres() == pytest.approx((20e-9, 20e-9))
    assert any(line.startswith("1 input resampled to the training images' pixel size (10 nm) for the network") for line in said), said
    seen.clear()
    predict_paths(run, [tmp_path / "in"], tmp_path / "plain", progress=False, say=lambda _: None)
    assert seen and all(shape[0] < 48 for shape in seen), seen  # not asked: as it is


def test_skip_done_does_not_take_a_matched_prediction_for_a_plain_one(tiny_run: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _write_nm(tmp_path / "in" / "half.tif", read_pages(tiny_run / "image" / "1.png")[0][0][::2, ::2], 20)
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "out", progress=False, say=lambda _: None,
                  match_pixel_size=True, training_pixel_size="10nm")
    said: list[str] = []
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "out", progress=False, say=said.append,
                  skip_done=True)
    assert not any("left as they were" in line for line in said), said
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "out", progress=False, say=said.append,
                  skip_done=True)
    assert any("1 input predicted earlier left as they were" in line for line in said), said


@pytest.mark.parametrize("options, message", [
    (["--match-pixel-size"], "--match-pixel-size: this run's training images declared no pixel size"),
    (["--match-pixel-size", "--training-pixel-size", "4 px"], "--training-pixel-size '4 px': give a pixel size with"),
    (["--pixel-size", "eight"], "--pixel-size 'eight': give a pixel size with its unit"),
])
def test_cli_refuses_sizes_it_cannot_use_in_one_line(tiny_run: Path, tmp_path: Path, options: list[str],
                                                     message: str) -> None:
    result = run_cli("predict", str(tiny_run / "run"), str(tiny_run / "image" / "0.png"), "--out", str(tmp_path / "out"),
                     *options)
    assert_one_line_error(result, message)
    assert not (tmp_path / "out").exists()


def test_an_array_is_matched_when_its_pixel_size_is_given(tiny_run: Path) -> None:
    import unetkit
    from unetkit.run import load_run

    run = load_run(tiny_run / "run", "cpu")
    seen: list[tuple[int, ...]] = []
    run.model.register_forward_pre_hook(lambda _, inputs: seen.append(tuple(inputs[0].shape[-2:])))
    half = resample_image(read_pages(tiny_run / "image" / "2.png")[0][0], (24, 24))
    mask, maps = unetkit.predict_array(run, half, prob=True, pixel_size="20nm", match_pixel_size=True, training_pixel_size="10nm")
    assert mask.shape == (24, 24) and maps.shape == (2, 24, 24) and min(min(shape) for shape in seen) >= 48
    seen.clear()
    assert unetkit.predict_array(run, half, pixel_size="20nm").shape == (24, 24) and max(map(max, seen)) < 48
    with pytest.raises(InputError, match="an array declares no pixel size; give its size too, e.g. pixel_size='8nm'"):
        unetkit.predict_array(run, half, match_pixel_size=True, training_pixel_size="10nm")


def test_train_pixel_size_is_recorded_and_matched_to(tmp_path: Path) -> None:
    """ISBI's PNGs declare no pixel size: train --pixel-size 10nm records it, so predict can match without being
    told the training size."""
    from dataclasses import replace

    from conftest import write_blob_pairs

    from unetkit.config import TrainConfig
    from unetkit.run import load_run
    from unetkit.train.start import train

    images, labels = write_blob_pairs(tmp_path, count=3, size=40)
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=32, epochs=1, budget_s=None, device="cpu",
                     pixel_size="10 nm")
    train(images, labels, tmp_path / "run", config, progress=False, say=lambda _: None)
    record = load_run(tmp_path / "run", "cpu").record["pixel_size"]
    assert record["width_m"] == pytest.approx(1e-8) and record["given"] and record["declared_by"] == 0
    (tmp_path / "in").mkdir()
    _write_nm(tmp_path / "in" / "coarse.tif", read_pages(images / "0.png")[0][0][::2, ::2], 20)
    said: list[str] = []
    predict_paths(tmp_path / "run", [tmp_path / "in"], tmp_path / "out", progress=False, say=said.append,
                  match_pixel_size=True)
    assert any(line.startswith("1 input resampled to the training images' pixel size (10 nm) for the network") for line in said), said
    result = run_cli("train", str(tmp_path), "--out", str(tmp_path / "run2"), "--pixel-size", "3 px", "--epochs", "1")
    assert_one_line_error(result, "--pixel-size '3 px': give a pixel size with its unit")


def test_a_given_pixel_size_is_what_the_outputs_declare(tiny_run: Path, tmp_path: Path) -> None:
    """--pixel-size corrects a file's declaration: its outputs declared the 72 dpi placeholder (353 um) or nothing,
    and Fiji measured them in those units."""
    page = read_pages(tiny_run / "image" / "0.png")[0][0]
    (tmp_path / "in").mkdir()
    Image.fromarray(page).save(tmp_path / "in" / "dpi.png", dpi=(72, 72))
    write_png(tmp_path / "in" / "bare.png", page)
    tifffile.imwrite(tmp_path / "in" / "stack.tif", np.stack([page, page]), imagej=True, resolution=(1, 1),
                     metadata={"unit": "micron", "spacing": 0.05, "axes": "ZYX"})
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "out", progress=False, say=lambda _: None,
                  pixel_size="20nm")
    for name in ("dpi.png", "bare.png", "stack.tif"):
        assert calibration_of(tmp_path / "out" / name).in_metres() == pytest.approx((20e-9, 20e-9)), name
    stack = calibration_of(tmp_path / "out" / "stack.tif")
    assert stack.unit == "nm" and stack.z_spacing == pytest.approx(50)  # the file's spacing, in the new unit


def test_train_says_when_its_pixel_size_differs_from_the_files_or_the_base_run(tmp_path: Path) -> None:
    """A size given against what the files declare is noted; a fine-tuned run keeps its base run's size where
    its images declare none (it was lost, and --match-pixel-size then needed it typed again)."""
    from dataclasses import replace

    from conftest import write_blob_pairs

    from unetkit.config import TrainConfig
    from unetkit.run import load_run
    from unetkit.train.start import train

    images, labels = write_blob_pairs(tmp_path / "png", count=3, size=40)
    (tmp_path / "tif").mkdir()
    for file in sorted(images.iterdir()):
        _write_nm(tmp_path / "tif" / f"{file.stem}.tif", read_pages(file)[0][0], 4)
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=32, epochs=1, budget_s=None, device="cpu")
    said: list[str] = []
    train(tmp_path / "tif", labels, tmp_path / "given", replace(config, pixel_size="4um"), progress=False, say=said.append)
    assert "note: --pixel-size 4 um: the images declare 4 nm (3 of 3 files); run.json keeps 4 um, as given" in said
    said.clear()
    train(images, labels, tmp_path / "tuned", config, progress=False, say=said.append, start_from=tmp_path / "given")
    record = load_run(tmp_path / "tuned", "cpu").record["pixel_size"]
    assert record["width_m"] == pytest.approx(4e-6) and record["inherited"] and record["given"]
    assert not [line for line in said if "pixels" in line and "learnt at" in line], said
    train(tmp_path / "tif", labels, tmp_path / "tuned2", config, progress=False, say=said.append,
          start_from=tmp_path / "given")
    assert any(line.startswith("note: the run learnt at 4 um pixels, these images are 4 nm: fine-tuning teaches it their "
                               "scale; run.json keeps theirs") for line in said), said
    import unetkit  # check --run says it before the fine-tuning
    warned = [f.message for f in unetkit.check(tmp_path / "tif", labels, run=tmp_path / "given").warnings]
    assert "the run learnt at 4 um pixels, these images are 4 nm: fine-tuning teaches it their scale" in warned
    assert not [m for m in (f.message for f in unetkit.check(images, labels, run=tmp_path / "given").warnings)
                if "learnt at" in m]  # PNGs that declare nothing: nothing to compare
    assert load_run(tmp_path / "tuned2", "cpu").record["pixel_size"]["width_m"] == pytest.approx(4e-9)
    # a size typed at train can be corrected at predict; one the images declared cannot be contradicted
    assert PixelSizes.for_run(load_run(tmp_path / "given", "cpu").record["pixel_size"], True,
                              training="4nm").training_m == pytest.approx((4e-9, 4e-9))


def test_nearest_keeps_mask_values_and_places_them() -> None:
    from unetkit.rescale import nearest

    label = np.zeros((8, 8), np.uint8)
    label[:, 4:] = 255
    halved, grown = nearest(label, (4, 4)), nearest(label, (12, 12))
    assert set(np.unique(halved)) == set(np.unique(grown)) == {0, 255}
    np.testing.assert_array_equal(halved[0], [0, 0, 255, 255])
    np.testing.assert_array_equal(grown[0], [0] * 6 + [255] * 6)
    colour = nearest(np.stack([label, 255 - label, label], axis=-1), (4, 6))
    assert colour.shape == (4, 6, 3) and {tuple(c) for c in colour.reshape(-1, 3)} == {(0, 255, 0), (255, 0, 255)}


def test_train_match_pixel_size_resamples_the_images_of_other_sizes_to_the_median(tmp_path: Path) -> None:
    """A folder of 4 nm sections with one 8 nm section: the network saw its membranes half as wide; matched, the
    8 nm pair is doubled (image linearly, mask by nearest neighbour) and the run records one scale."""
    from dataclasses import replace

    from conftest import blob_pair

    from unetkit.config import TrainConfig
    from unetkit.data.dataset import read_pairs
    from unetkit.rescale import at_pixel_size
    from unetkit.run import load_run
    from unetkit.train.start import train

    rng = np.random.default_rng(3)
    for name, nm, size in (("a", 4, 48), ("b", 4, 48), ("c", 4, 48), ("d", 8, 24), ("e", None, 48)):
        image, label = blob_pair(rng, size)
        (tmp_path / "image").mkdir(exist_ok=True)
        if nm is None:
            write_png(tmp_path / "image" / f"{name}.png", image)
        else:
            _write_nm(tmp_path / "image" / f"{name}.tif", image, nm)
        write_png(tmp_path / "label" / f"{name}.png", label * 255)
    pairs, _ = read_pairs(tmp_path / "image", tmp_path / "label")
    matched, changed = at_pixel_size(pairs, (4e-9, 4e-9))
    assert changed == {tmp_path / "image" / "d.tif"}
    assert [p.image.array.shape for p in matched] == [(48, 48)] * 5 and [p.label.array.shape for p in matched] == [(48, 48)] * 5
    assert set(np.unique(matched[3].label.array)) <= {0, 255} and matched[3].image.array.dtype == np.uint8
    assert matched[4] is pairs[4]  # declares nothing: as it is
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=32, epochs=1, budget_s=None, device="cpu",
                     val_fraction=0.4, match_pixel_size=True)
    said: list[str] = []
    train(tmp_path / "image", tmp_path / "label", tmp_path / "run", config, progress=False, say=said.append)
    assert "1 image file resampled to 4 nm pixels (--match-pixel-size)" in said, said
    assert not [line for line in said if "declare pixels from" in line]  # no mixed-scale note: they are one scale now
    record = load_run(tmp_path / "run", "cpu").record["pixel_size"]
    assert record["width_m"] == pytest.approx(4e-9) and record["matched"] and record["spread"] == 1.0
    with pytest.raises(InputError, match="nothing for --match-pixel-size to match; drop one"):
        replace(config, pixel_size="4nm")
    for file in (tmp_path / "image").glob("*.tif"):
        file.unlink()
        write_png(file.with_suffix(".png"), np.zeros((48, 48), np.uint8) + 100)
    with pytest.raises(InputError, match="none of the training images declares a pixel size"):
        train(tmp_path / "image", tmp_path / "label", tmp_path / "run2", config, progress=False, say=lambda _: None)
