"""Zarr arrays and OME-Zarr images as inputs: read as the same pages as a TIFF stack, predicted a page at a time,
calibrated from OME-Zarr's scale, and refused in one line where they cannot be laid out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from conftest import blob_pair, train_tiny_run

from unetkit.cli import main
from unetkit.data.calibration import calibration_of, page_axes_of
from unetkit.data.io import declared_size, list_image_files, read_pages, read_pages_lazily
from unetkit.data.zarr_pages import ZarrPages, is_zarr
from unetkit.errors import InputError


def ome_image(path: Path, array: np.ndarray, axes: str, scale: list[float], unit: str = "micrometer",
              version: str = "0.4") -> Path:
    """An OME-Zarr image of one level: 0.4 (zarr 2, metadata at the top) or 0.5 (zarr 3, under "ome")."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    multiscales = [{"version": version, "datasets": [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": scale}]}], "axes": [
        {"name": a, "type": kinds[a], **({"unit": unit} if kinds[a] == "space" else {})} for a in axes]}]
    if version == "0.4":
        group.attrs["multiscales"] = multiscales
    else:
        group.attrs["ome"] = {"version": version, "multiscales": multiscales}
    level = group.create_array("0", shape=array.shape, chunks=(1,) * (array.ndim - 2) + array.shape[-2:],
                               dtype=array.dtype)
    level[:] = array
    return path


def plain_array(path: Path, array: np.ndarray, zarr_format: int = 3) -> Path:
    stored = zarr.create_array(str(path), shape=array.shape, chunks=(1,) * (array.ndim - 2) + (16, 16),
                               dtype=array.dtype, zarr_format=zarr_format)
    stored[:] = array
    return path


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_plain_zarr_stack_reads_as_its_planes_one_at_a_time(tmp_path: Path, zarr_format: int) -> None:
    volume = np.random.default_rng(0).integers(0, 65535, (4, 40, 50), dtype=np.uint16)
    path = plain_array(tmp_path / "vol.zarr", volume, zarr_format)
    assert is_zarr(path) and list_image_files(path) == [path]
    lazy = read_pages_lazily(path)
    assert isinstance(lazy, ZarrPages) and lazy.shape == (4, 40, 50) and lazy.dtype == np.uint16
    assert np.array_equal(lazy[2], volume[2]) and np.array_equal(lazy[-1], volume[3])
    assert np.array_equal(read_pages(path)[0], volume)
    assert declared_size(path) == (4, 4 * 40 * 50)
    plane = plain_array(tmp_path / "plane.zarr", volume[0], zarr_format)
    assert np.array_equal(read_pages(plane)[0], volume[:1])


def test_ome_zarr_axes_put_channels_last_and_pages_in_time_then_z_order(tmp_path: Path) -> None:
    image = np.arange(2 * 3 * 2 * 8 * 10, dtype=np.float32).reshape(2, 3, 2, 8, 10)  # t, c, z, y, x
    path = ome_image(tmp_path / "img.zarr", image, "tczyx", [1, 1, 0.5, 0.1, 0.2])
    pages = read_pages(path)[0]
    assert pages.shape == (4, 8, 10, 3)
    assert np.array_equal(pages[3], np.moveaxis(image[1, :, 1], 0, -1))  # t 1, z 1: the fourth page
    assert np.array_equal(pages[1], np.moveaxis(image[0, :, 1], 0, -1))
    calibration = calibration_of(path)
    assert calibration is not None and calibration.unit == "um"
    assert (calibration.pixel_width, calibration.pixel_height, calibration.z_spacing) == (0.2, 0.1, 0.5)
    axes = page_axes_of(path)
    assert axes is not None and (axes.letters, axes.sizes) == ("TZ", (2, 2))
    grey = ome_image(tmp_path / "grey.zarr", image[:, :1], "tczyx", [1, 1, 0.5, 0.1, 0.1], "nanometer", "0.5")
    assert read_pages(grey)[0].shape == (4, 8, 10)  # one channel: grey pages
    assert calibration_of(grey).unit == "nm"  # type: ignore[union-attr]
    assert calibration_of(plain_array(tmp_path / "plain.zarr", image[0, 0])) is None  # nothing declared


def test_a_zarr_volume_is_predicted_as_the_same_tiff_stack_is_and_redone_when_a_chunk_changes(tmp_path: Path) -> None:
    train_tiny_run(tmp_path, 4, 48, 2)
    rng = np.random.default_rng(3)
    volume = np.stack([blob_pair(rng, 64)[0] for _ in range(3)])
    (tmp_path / "tiff").mkdir()
    tifffile.imwrite(tmp_path / "tiff" / "vol.tif", volume, photometric="minisblack")
    plain_array(tmp_path / "zarr" / "vol.zarr", volume)
    ome_image(tmp_path / "ome" / "vol.zarr", volume, "zyx", [0.05, 0.004, 0.004])
    run = tmp_path / "run"
    for source, out in (("tiff/vol.tif", "a"), ("zarr", "b"), ("ome/vol.zarr", "c")):
        assert main(["predict", str(run), str(tmp_path / source), "--out", str(tmp_path / out), "--quiet"]) == 0
    expected = tifffile.imread(tmp_path / "a" / "vol.tif")
    assert expected.shape == volume.shape
    assert np.array_equal(tifffile.imread(tmp_path / "b" / "vol.tif"), expected)
    with tifffile.TiffFile(tmp_path / "c" / "vol.tif") as tif:
        assert np.array_equal(tif.asarray(), expected)
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.05) and tif.imagej_metadata["unit"] == "micron"
        assert tif.pages[0].resolution == pytest.approx((250.0, 250.0))  # 0.004 um pixels
    args = ["predict", str(run), str(tmp_path / "zarr" / "vol.zarr"), "--out", str(tmp_path / "b"), "--skip-done", "--quiet"]
    before = (tmp_path / "b" / "vol.tif").stat().st_mtime_ns
    assert main(args) == 0 and (tmp_path / "b" / "vol.tif").stat().st_mtime_ns == before  # done: left as it was
    stored = zarr.open_array(str(tmp_path / "zarr" / "vol.zarr"), mode="r+")
    stored[1, :16, :16] = 0  # one chunk rewritten in place, two folders down
    assert main(args) == 0 and (tmp_path / "b" / "vol.tif").stat().st_mtime_ns != before


def test_zarr_stacks_train_as_one_pair_whatever_their_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pairs = [blob_pair(rng, 32) for _ in range(4)]
    plain_array(tmp_path / "raw.zarr", np.stack([image for image, _ in pairs]))
    plain_array(tmp_path / "seg.zarr", np.stack([label * 255 for _, label in pairs]).astype(np.uint8))
    assert main(["train", "--images", str(tmp_path / "raw.zarr"), "--labels", str(tmp_path / "seg.zarr"), "--out",
                 str(tmp_path / "run"), "--epochs", "1", "--width", "4", "--depth", "2", "--quiet"]) == 0


def test_a_folder_lists_its_zarr_images_beside_its_files_and_nothing_else(tmp_path: Path) -> None:
    image = np.zeros((16, 16), np.uint8)
    tifffile.imwrite(tmp_path / "b.tif", image)
    plain_array(tmp_path / "a.zarr", image)
    plain_array(tmp_path / "c.zarr", image, zarr_format=2)
    (tmp_path / "empty.zarr").mkdir()  # named so, but no zarr in it
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_image_files(tmp_path)] == ["a.zarr", "b.tif", "c.zarr"]


@pytest.mark.parametrize("case", ["group", "four_axes", "text", "damaged_chunk", "damaged_metadata", "out_zarr",
                                  "out_beside"])
def test_zarr_problems_are_one_line_naming_the_array(tmp_path: Path, case: str, capsys: pytest.CaptureFixture) -> None:
    train_tiny_run(tmp_path, 4, 48, 1)
    target, out, needles = tmp_path / "in" / "x.zarr", tmp_path / "out", ["x.zarr"]
    if case == "group":
        zarr.open_group(str(target), mode="w").create_array("raw", shape=(8, 8), dtype="u1")
        needles += ["a zarr group, not an image", "x.zarr/raw"]
    elif case == "four_axes":
        plain_array(target, np.zeros((2, 2, 16, 16), np.uint8))
        needles += ["4-D zarr array without OME-Zarr axes"]
    elif case == "text":
        zarr.create_array(str(target), shape=(16, 16), dtype=zarr.dtype.VariableLengthUTF8())
        needles += ["not of numbers"]
    elif case == "damaged_chunk":
        plain_array(target, np.full((3, 16, 16), 100, np.uint8))
        chunk = sorted(p for p in target.rglob("*") if p.is_file() and p.name != "zarr.json")[1]
        chunk.write_bytes(b"not a chunk")
        needles += ["page 2 of 3 cannot be read"]
    elif case == "damaged_metadata":
        target.mkdir(parents=True)
        (target / "zarr.json").write_text("{not json")
        needles += ["cannot be read as zarr"]
    elif case == "out_zarr":
        plain_array(target, np.zeros((16, 16), np.uint8))
        out, needles = tmp_path / "masks.zarr", ["--out", "masks.zarr", "names a zarr image", "--out " + str(tmp_path / "masks")]
    else:
        plain_array(target, np.zeros((16, 16), np.uint8))
        out, needles = target.parent, ["is an input folder"]
    code = main(["predict", str(tmp_path / "run"), str(target), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("unetkit: error:"), err
    assert all(needle in err[0] for needle in needles), (needles, err)
    assert target.exists()  # the input is left as it was


def test_zarr_pages_refuse_more_than_one_index_at_once(tmp_path: Path) -> None:
    pages = ZarrPages.open(plain_array(tmp_path / "v.zarr", np.zeros((2, 16, 16), np.uint8)))
    with pytest.raises(TypeError):
        pages[0:1]  # type: ignore[index]
    with pytest.raises(IndexError):
        pages[2]
    with pytest.raises(InputError, match="no such file"):
        read_pages(tmp_path / "missing.zarr")


def test_a_multiscale_s_own_scale_applies_after_its_level_s(tmp_path: Path) -> None:
    """Review: only the level's scale was read; OME-NGFF applies the multiscale's own transformations after it."""
    path = ome_image(tmp_path / "g.zarr", np.ones((3, 32, 32), np.uint8), "zyx", [1.0, 2.0, 2.0])
    group = zarr.open_group(str(path), mode="r+")
    multiscales = group.attrs["multiscales"]
    multiscales[0]["coordinateTransformations"] = [{"type": "scale", "scale": [2.0, 0.25, 0.25]}]
    group.attrs["multiscales"] = multiscales
    calibration = calibration_of(path)
    assert calibration is not None
    assert (calibration.pixel_width, calibration.pixel_height, calibration.z_spacing) == (0.5, 0.5, 2.0)


def test_a_plain_rgb_array_is_one_colour_image_and_a_level_given_itself_keeps_its_image_s_axes(tmp_path: Path) -> None:
    """Review: numpy's (H, W, 3) saved as zarr was read as 48 grey pages 3 pixels wide, and img.zarr/0 of a c, y, x
    image as 3 grey pages."""
    colour = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    pages = read_pages(plain_array(tmp_path / "rgb.zarr", colour))[0]
    assert pages.shape == (1, 48, 64, 3) and np.array_equal(pages[0], colour)
    thin = read_pages(plain_array(tmp_path / "thin.zarr", np.zeros((5, 40, 3), np.uint8)))[0]
    assert thin.shape == (5, 40, 3)  # five sections 3 pixels wide: a side of 5 is no colour image
    image = ome_image(tmp_path / "img.zarr", np.moveaxis(colour, -1, 0), "cyx", [1.0, 0.1, 0.1])
    assert np.array_equal(read_pages(image / "0")[0], pages)
    assert calibration_of(image / "0") == calibration_of(image)


def test_reading_a_whole_array_gives_its_pages_in_the_order_they_are_indexed(tmp_path: Path) -> None:
    image = np.random.default_rng(1).integers(0, 60000, (2, 3, 2, 8, 10), dtype=np.uint16)  # t, c, z, y, x
    pages = ZarrPages.open(ome_image(tmp_path / "t.zarr", image, "tczyx", [1, 1, 1, 1, 1], version="0.5"))
    whole = np.asarray(pages)
    assert whole.shape == (4, 8, 10, 3) and all(np.array_equal(whole[i], pages[i]) for i in range(4))


def test_skip_done_ignores_labels_saved_inside_the_image_but_not_its_pixels(tmp_path: Path) -> None:
    """Review: napari's labels/ group saved inside an OME-Zarr image made --skip-done predict it again."""
    from unetkit.data.zarr_pages import zarr_stamp

    path = ome_image(tmp_path / "img.zarr", np.ones((2, 16, 16), np.uint8), "zyx", [1, 1, 1])
    before = zarr_stamp(path)
    zarr.open_group(str(path), mode="r+").create_group("labels").create_array("cells", shape=(2, 16, 16), dtype="u2")[:] = 3
    assert zarr_stamp(path) == before
    zarr.open_array(str(path / "0"), mode="r+")[1] = 2
    assert zarr_stamp(path) != before


def test_a_colour_ignore_value_survives_the_config_s_copies() -> None:
    """Review: ColourValue could not be copied or pickled, so train --ignore-value 1,2,3 died in TrainConfig.to_json."""
    import copy
    import json
    import pickle
    from dataclasses import replace

    from unetkit.config import TrainConfig
    from unetkit.data.labels import parse_label_value

    value = parse_label_value("1,2,3")
    for copied in (copy.copy(value), copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert copied == 66051 and str(copied) == "1,2,3"
    assert json.loads(json.dumps(replace(TrainConfig(), ignore_value=value).to_json()))["ignore_value"] == 66051
