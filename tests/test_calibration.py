"""The input's pixel size reaches every file predicted from it: masks, stacks, probabilities and cells."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import blob_pair, train_tiny_run, write_png

from unetkit.config import TrainConfig
from unetkit.data.calibration import Calibration, calibration_of
from unetkit.data.io import read_pages, write_mask, write_tiff
from unetkit.predict_files import predict_paths
from unetkit.train.start import train

QUIET = dict(progress=False, say=lambda _: None)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("calibrated"), count=3, size=40, epochs=1)


def _grey(tiny_run: Path, count: int) -> np.ndarray:
    return np.stack([read_pages(tiny_run / "image" / f"{i}.png")[0][0] for i in range(count)])


def _imagej_calibration(path: Path) -> tuple[float, float, str, float | None]:
    with tifffile.TiffFile(path) as tif:
        page, items = tif.pages.first, tif.imagej_metadata or {}
        x, y = page.resolution
        return 1 / x, 1 / y, items.get("unit"), items.get("spacing")


def test_a_calibrated_imagej_stack_gives_calibrated_mask_probability_and_cell_stacks(tiny_run: Path, tmp_path: Path) -> None:
    """A Fiji stack at 0.05 um per pixel and 0.2 um between sections: its mask, probabilities and cells said
    nothing of it, and measured in pixels."""
    tifffile.imwrite(tmp_path / "volume.tif", _grey(tiny_run, 3), imagej=True, resolution=(20.0, 25.0),
                     metadata={"axes": "ZYX", "unit": "micron", "spacing": 0.2})
    predict_paths(tiny_run / "run", [tmp_path / "volume.tif"], tmp_path / "out", write_probabilities=True,
                  instances=255, **QUIET)
    for name in ("volume.tif", "volume_prob.tif"):
        width, height, unit, spacing = _imagej_calibration(tmp_path / "out" / name)
        assert (width, height, unit, spacing) == pytest.approx((0.05, 0.04, "micron", 0.2)), name
    assert tifffile.imread(tmp_path / "out" / "volume.tif").shape == (3, 40, 40)
    assert tifffile.imread(tmp_path / "out" / "volume_prob.tif").shape == (3, 2, 40, 40)
    cells = calibration_of(tmp_path / "out" / "volume_cells.tif")
    assert cells is not None and cells.pixel_width == pytest.approx(0.05) and cells.pixel_height == pytest.approx(0.04)


def test_a_calibrated_single_tiff_gives_a_png_mask_with_its_pixel_size(tiny_run: Path, tmp_path: Path) -> None:
    """The mask of one TIFF page is a PNG (the output contract): its pHYs density says 0.5 um per pixel."""
    tifffile.imwrite(tmp_path / "cell.tif", _grey(tiny_run, 1)[0], imagej=True, resolution=(2.0, 2.0),
                     metadata={"unit": "micron"})
    predict_paths(tiny_run / "run", [tmp_path / "cell.tif"], tmp_path / "out", **QUIET)
    found = calibration_of(tmp_path / "out" / "cell.png")
    assert found is not None
    assert found.pixel_width * 25400 == pytest.approx(0.5, rel=1e-3)  # inch -> um
    with Image.open(tmp_path / "out" / "cell.png") as png:
        assert png.info["dpi"][0] == pytest.approx(25400 / 0.5, rel=1e-3)


def test_a_png_input_keeps_its_density_and_an_uncalibrated_input_gains_none(tiny_run: Path, tmp_path: Path) -> None:
    image = Image.open(tiny_run / "image" / "0.png")
    (tmp_path / "in").mkdir()
    image.save(tmp_path / "in" / "scan.png", dpi=(600, 600))
    tifffile.imwrite(tmp_path / "in" / "plain.tif", np.asarray(image))  # tifffile's placeholder: 1 pixel per unit
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "out", **QUIET)
    with Image.open(tmp_path / "out" / "scan.png") as png:
        assert png.info["dpi"][0] == pytest.approx(600, rel=1e-3)
    with Image.open(tmp_path / "out" / "plain.png") as png:
        assert "dpi" not in png.info


def test_ome_physical_size_is_read_in_its_own_unit() -> None:
    from unetkit.data.calibration import _ome_calibration

    xml = ('<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image><Pixels PhysicalSizeX="4" '
           'PhysicalSizeY="4" PhysicalSizeXUnit="nm" PhysicalSizeYUnit="nm" PhysicalSizeZ="40" PhysicalSizeZUnit="nm"/>'
           '</Image></OME>')
    assert _ome_calibration(xml) == Calibration(4.0, 4.0, "nm", 40.0)
    default_unit = '<OME><Image><Pixels PhysicalSizeX="0.1" PhysicalSizeY="0.2" PhysicalSizeZ="1"/></Image></OME>'
    assert _ome_calibration(default_unit) == Calibration(0.1, 0.2, "\u00b5m", 1.0)
    other_z_unit = '<OME><Pixels PhysicalSizeX="0.1" PhysicalSizeZ="1" PhysicalSizeZUnit="mm"/></OME>'
    assert _ome_calibration(other_z_unit) == Calibration(0.1, 0.1, "\u00b5m", pytest.approx(1000.0))
    # each axis has its own unit, default um (as Bio-Formats, and so Fiji, reads them): Y and Z were taken in
    # X's nm (a height of 0.05 nm)
    own_defaults = '<OME><Pixels PhysicalSizeX="50" PhysicalSizeXUnit="nm" PhysicalSizeY="0.05" PhysicalSizeZ="0.2"/></OME>'
    found = _ome_calibration(own_defaults)
    assert found is not None and (found.pixel_height, found.z_spacing) == pytest.approx((50.0, 200.0))
    unknown_z = '<OME><Pixels PhysicalSizeX="0.1" PhysicalSizeZ="1" PhysicalSizeZUnit="parsec-ish"/></OME>'
    assert _ome_calibration(unknown_z) == Calibration(0.1, 0.1, "\u00b5m", None)


def test_an_ome_tiff_stack_gives_an_imagej_stack_in_microns(tmp_path: Path) -> None:
    """OME's um (a non-ASCII name) is ImageJ's micron; Angstrom becomes nm, scaled."""
    tifffile.imwrite(tmp_path / "in.ome.tif", np.zeros((2, 8, 8), np.uint8), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1, "PhysicalSizeZ": 0.5})
    found = calibration_of(tmp_path / "in.ome.tif")
    write_tiff(tmp_path / "out.tif", np.zeros((2, 8, 8), np.uint8), found)
    assert _imagej_calibration(tmp_path / "out.tif") == pytest.approx((0.1, 0.1, "micron", 0.5))
    write_tiff(tmp_path / "angstrom.tif", np.zeros((2, 8, 8), np.uint16), Calibration(20.0, 20.0, "\u00c5", 300.0))
    assert _imagej_calibration(tmp_path / "angstrom.tif") == pytest.approx((2.0, 2.0, "nm", 30.0))


def test_types_imagej_lacks_get_resolution_tags_in_centimetres(tmp_path: Path) -> None:
    """bool and int32 masks cannot be ImageJ TIFFs: their pixel size goes to the standard tags, per centimetre."""
    write_tiff(tmp_path / "ids.tif", np.zeros((2, 8, 8), np.int32), Calibration(0.5, 0.25, "micron", 1.0))
    with tifffile.TiffFile(tmp_path / "ids.tif") as tif:
        assert tif.pages.first.resolutionunit == tifffile.RESUNIT.CENTIMETER
        assert tif.pages.first.resolution == pytest.approx((20000.0, 40000.0))
    back = calibration_of(tmp_path / "ids.tif")
    assert back is not None and (back.pixel_width * 1e4, back.pixel_height * 1e4) == pytest.approx((0.5, 0.25))


def test_placeholders_and_damage_are_no_calibration(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "pillow.tif")  # 1 pixel per inch
    tifffile.imwrite(tmp_path / "pixels.tif", np.zeros((8, 8), np.uint8), imagej=True, metadata={"unit": "pixel"})
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    for name in ("pillow.tif", "pixels.tif", "broken.tif"):
        assert calibration_of(tmp_path / name) is None, name
    # ImageJ's own unit makes 1 pixel per unit a real calibration (1 um pixels), not a placeholder
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((8, 8), np.uint8), imagej=True, resolution=(1.0, 1.0),
                     metadata={"unit": "micron"})
    assert calibration_of(tmp_path / "one.tif") == Calibration(1.0, 1.0, "micron", None)


def test_a_unit_that_is_no_length_keeps_its_name_in_tiffs_and_stays_out_of_pngs(tmp_path: Path) -> None:
    odd = Calibration(2.0, 2.0, "furlong-ish", None)
    write_mask(tmp_path / "m.png", np.zeros((8, 8), np.uint8), calibration=odd)
    with Image.open(tmp_path / "m.png") as png:
        assert "dpi" not in png.info
    write_tiff(tmp_path / "m.tif", np.zeros((8, 8), np.uint8), odd)
    assert _imagej_calibration(tmp_path / "m.tif")[:3] == pytest.approx((2.0, 2.0, "furlong-ish"))


def _axes(path: Path) -> tuple[str, tuple[int, ...]]:
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].axes, tif.series[0].shape


def test_a_time_lapse_of_z_stacks_keeps_its_frames_and_slices(tiny_run: Path, tmp_path: Path) -> None:
    """A TZYX hyperstack (2 time points of 3 slices) came back as one run of 6 pages, which Fiji showed as 6
    slices: the mask, probabilities and cells keep T and Z, and unetkit reads them back as the 6 pages."""
    from unetkit.evaluate import evaluate_probabilities

    grey = _grey(tiny_run, 3)
    volume = np.stack([grey, grey[::-1]])  # T x Z x H x W
    tifffile.imwrite(tmp_path / "movie.tif", volume, imagej=True, metadata={"axes": "TZYX", "finterval": 5.0})
    predict_paths(tiny_run / "run", [tmp_path / "movie.tif"], tmp_path / "out", write_probabilities=True,
                  instances=255, **QUIET)
    assert _axes(tmp_path / "out" / "movie.tif") == ("TZYX", (2, 3, 40, 40))
    assert _axes(tmp_path / "out" / "movie_prob.tif") == ("TZCYX", (2, 3, 2, 40, 40))
    assert _axes(tmp_path / "out" / "movie_cells.tif") == ("TZYX", (2, 3, 40, 40))
    pages = read_pages(tmp_path / "out" / "movie.tif", labels=True)[0]
    assert pages.shape == (6, 40, 40)
    probabilities = tifffile.imread(tmp_path / "out" / "movie_prob.tif").reshape(6, 2, 40, 40)
    assert np.array_equal(np.array([0, 255])[probabilities.argmax(1)], pages)  # the pages in the input's order
    assert np.array_equal(pages[3:], pages[2::-1])  # frame 2 is frame 1 backwards, and so are its masks
    (tmp_path / "truth").mkdir()  # evaluate reads the T x Z x classes probabilities as 6 pages of classes
    truth = np.stack([read_pages(tiny_run / "label" / f"{i}.png", labels=True)[0][0] for i in (0, 1, 2, 2, 1, 0)])
    tifffile.imwrite(tmp_path / "truth" / "movie.tif", truth, photometric="minisblack")
    scores = evaluate_probabilities(tmp_path / "out", tmp_path / "truth", instances="threshold")
    assert len(scores["per_image"]) + len(scores["skipped"]) == 6


def test_frames_without_a_calibration_stay_frames_and_plain_stacks_stay_plain(tiny_run: Path, tmp_path: Path) -> None:
    grey = _grey(tiny_run, 3)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "frames.tif", grey, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(tmp_path / "in" / "plain.tif", grey, photometric="minisblack")
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "out", **QUIET)
    assert _axes(tmp_path / "out" / "frames.tif") == ("TYX", (3, 40, 40))
    with tifffile.TiffFile(tmp_path / "out" / "plain.tif") as tif:
        assert not tif.is_imagej and len(tif.pages) == 3


def test_fiji_escaped_micro_sign_is_a_micron(tmp_path: Path) -> None:
    """Fiji writes um as the six characters \\u00B5m: the PNG masks of its files had no density at all."""
    description = "ImageJ=1.54f\nunit=\\u00B5m\n"
    tifffile.imwrite(tmp_path / "fiji.tif", np.zeros((8, 8), np.uint8), description=description, resolution=(10, 10))
    found = calibration_of(tmp_path / "fiji.tif")
    assert found is not None and found.unit == "\u00b5m" and found.pixel_width == pytest.approx(0.1)
    assert found.png_dpi() == pytest.approx((254000.0, 254000.0))


def test_pixel_sizes_beyond_what_a_file_holds_are_left_out_not_an_error(tmp_path: Path) -> None:
    """A 0.2 nm pixel is 5 x 10^9 pixels per metre, over PNG's 32-bit pHYs: predict stopped with OverflowError."""
    tiny = Calibration(0.2, 0.2, "nm", None)
    assert tiny.png_dpi() is None
    write_mask(tmp_path / "tiny.png", np.zeros((8, 8), np.uint8), calibration=tiny)
    with Image.open(tmp_path / "tiny.png") as png:
        assert "dpi" not in png.info
    write_tiff(tmp_path / "tiny.tif", np.zeros((2, 8, 8), np.uint8), tiny)  # ImageJ: 5 per nm, fine
    assert _imagej_calibration(tmp_path / "tiny.tif") == pytest.approx((0.2, 0.2, "nm", None))
    impossible = Calibration(1e-12, 1e-12, "micron", None)
    for array in (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.int32)):
        write_tiff(tmp_path / "impossible.tif", array, impossible)
        assert calibration_of(tmp_path / "impossible.tif") is None
    assert Calibration(2e4, 2e4, "m", None).png_dpi() is None  # 20 km pixels: a density under 1 per metre
    denormal = '<OME><Pixels PhysicalSizeX="1e-320"/></OME>'
    from unetkit.data.calibration import _ome_calibration
    found = _ome_calibration(denormal)
    assert found is None or found.png_dpi() is None

def test_types_imagej_lacks_keep_their_pages_in_one_run(tmp_path: Path) -> None:
    """bool masks and uint32 cells of a T x Z stack were written as 4-D plain TIFFs (QQYX) that said nothing of
    T or Z: they stay one run of pages, as before."""
    from unetkit.data.calibration import PageAxes

    for dtype in (bool, np.uint32):
        write_tiff(tmp_path / "pages.tif", np.zeros((6, 8, 8), dtype), None, PageAxes("TZ", (2, 3)))
        assert tifffile.imread(tmp_path / "pages.tif").shape == (6, 8, 8)
    write_tiff(tmp_path / "uint8.tif", np.zeros((6, 8, 8), np.uint8), None, PageAxes("TZ", (2, 3)))
    assert _axes(tmp_path / "uint8.tif") == ("TZYX", (2, 3, 8, 8))
    with tifffile.TiffFile(tmp_path / "uint8.tif") as tif:  # ImageJ reads its hyperstacks uncompressed only
        assert tif.pages.first.compression == tifffile.COMPRESSION.NONE


def test_predict_warns_about_inputs_of_another_pixel_size_than_the_training_images(tmp_path: Path) -> None:
    """A run trained on 10 nm pixels said nothing when given 5 nm pixels, whose objects are twice as many pixels
    across as any it saw: run.json keeps the training images' pixel size, and predict warns."""
    from unetkit.run import load_run

    rng = np.random.default_rng(1)
    for i in range(3):
        image, label = blob_pair(rng, 40)
        (tmp_path / "image").mkdir(exist_ok=True)
        (tmp_path / "label").mkdir(exist_ok=True)
        tifffile.imwrite(tmp_path / "image" / f"{i}.tif", image, imagej=True, resolution=(0.1, 0.1),
                         metadata={"unit": "nm"})  # 10 nm pixels
        write_png(tmp_path / "label" / f"{i}.png", label * 255)
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=32, epochs=1, budget_s=None, device="cpu")
    train(tmp_path / "image", tmp_path / "label", tmp_path / "run", config, **QUIET)
    record = load_run(tmp_path / "run", "cpu").record["pixel_size"]
    assert record["width_m"] == pytest.approx(10e-9) and record["declared_by"] == 3 and record["files"] == 3
    image = tifffile.imread(tmp_path / "image" / "0.tif")
    (tmp_path / "new").mkdir()
    for name, nm in (("same.tif", 11.0), ("finer.tif", 5.0), ("coarser.tif", 40.0)):
        tifffile.imwrite(tmp_path / "new" / name, image, imagej=True, resolution=(1 / nm, 1 / nm),
                         metadata={"unit": "nm"})
    write_png(tmp_path / "new" / "undeclared.png", image)
    said: list[str] = []
    predict_paths(tmp_path / "run", [tmp_path / "new"], tmp_path / "out", progress=False, say=said.append)
    scale = [line for line in said if "pixels are" in line]
    assert len(scale) == 2, said  # 11 nm is within the tolerance, an undeclared size says nothing
    finer = next(line for line in scale if "finer.tif" in line)
    assert "its pixels are 5 nm wide, the training images' 10 nm" in finer and "2x larger" in finer
    assert "predict with --match-pixel-size (resampled to 10 nm pixels and back)" in finer
    assert any("coarser.tif" in line and "4x smaller" in line for line in scale)
    said.clear()  # matched: no warning about sizes it resampled, one about the input it could not
    predict_paths(tmp_path / "run", [tmp_path / "new"], tmp_path / "matched", progress=False, say=said.append,
                  match_pixel_size=True)
    assert not [line for line in said if "pixels are" in line], said
    assert [line for line in said if "declares no pixel size" in line][0].startswith(
        f"warning: {tmp_path / 'new' / 'undeclared.png'}: declares no pixel size, so it was predicted at its own scale")
    assert any(line.startswith("3 inputs resampled to the training images' pixel size (10 nm)") for line in said), said
    for name in ("same", "finer", "coarser", "undeclared"):
        assert read_pages(tmp_path / "matched" / f"{name}.png")[0][0].shape == image.shape


def test_the_record_of_training_pixel_sizes_and_how_they_read(tmp_path: Path) -> None:
    from unetkit.data.calibration import pixel_size_record, readable_length

    for name, um in (("a.tif", 0.1), ("b.tif", 0.2), ("c.tif", 0.1)):
        tifffile.imwrite(tmp_path / name, np.zeros((4, 4), np.uint8), imagej=True, resolution=(1 / um, 1 / um),
                         metadata={"unit": "micron"})
    tifffile.imwrite(tmp_path / "d.tif", np.zeros((4, 4), np.uint8))
    record = pixel_size_record(sorted(tmp_path.iterdir()))
    assert record is not None and record["width_m"] == pytest.approx(1e-7) and record["spread"] == pytest.approx(2)
    assert (record["declared_by"], record["files"]) == (3, 4)
    assert pixel_size_record([tmp_path / "d.tif"]) is None
    assert [readable_length(m) for m in (4e-9, 6.5e-7, 1.2e-3, 2.0)] == ["4 nm", "0.65 um", "1.2 mm", "2 m"]


def test_check_and_train_say_when_training_images_declare_different_pixel_sizes(tmp_path: Path) -> None:
    from unetkit.data.validate import check_dataset

    rng = np.random.default_rng(2)
    for i, nm in enumerate((4.0, 4.0, 10.0)):
        image, label = blob_pair(rng, 40)
        (tmp_path / "image").mkdir(exist_ok=True)
        tifffile.imwrite(tmp_path / "image" / f"{i}.tif", image, imagej=True, resolution=(1 / nm, 1 / nm),
                         metadata={"unit": "nm"})
        write_png(tmp_path / "label" / f"{i}.png", label * 255)
    scale = [f for f in check_dataset(tmp_path / "image", tmp_path / "label").warnings if "pixels from" in f.message]
    assert len(scale) == 1 and "pixels from 4 nm to 10 nm wide (2.5x apart)" in scale[0].message
    said: list[str] = []
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=32, epochs=1, budget_s=None, device="cpu")
    train(tmp_path / "image", tmp_path / "label", tmp_path / "run", config, progress=False, say=said.append)
    assert any(line.startswith("note: the training images declare pixels from 4 nm to 10 nm") for line in said)
    tifffile.imwrite(tmp_path / "image" / "2.tif", tifffile.imread(tmp_path / "image" / "2.tif"), imagej=True,
                     resolution=(1 / 4.5, 1 / 4.5), metadata={"unit": "nm"})  # within 1.25x: one scale
    assert not [f for f in check_dataset(tmp_path / "image", tmp_path / "label").findings if "pixels from" in f.message]


def test_colour_mask_stacks_keep_their_frames_and_slices(tmp_path: Path) -> None:
    """Colour masks of a time-lapse of z-stacks were written as one run of plain RGB pages: Fiji lost T and Z."""
    from unetkit.data.calibration import PageAxes, page_axes_of

    masks = np.random.default_rng(0).integers(0, 2, (6, 12, 10, 3)).astype(np.uint8) * 255
    calibration = Calibration(0.5, 0.5, "um", 2.0)
    write_tiff(tmp_path / "colour.tif", masks, calibration, PageAxes("TZ", (2, 3)))
    assert page_axes_of(tmp_path / "colour.tif") == PageAxes("TZ", (2, 3))
    np.testing.assert_array_equal(read_pages(tmp_path / "colour.tif")[0], masks)
    assert calibration_of(tmp_path / "colour.tif").in_metres() == pytest.approx((5e-7, 5e-7))
    write_tiff(tmp_path / "plain.tif", masks, calibration)  # no layout declared: pages as they were
    assert page_axes_of(tmp_path / "plain.tif") is None
    np.testing.assert_array_equal(read_pages(tmp_path / "plain.tif")[0], masks)
