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


def test_evaluate_takes_a_true_zarr_stack_wherever_it_takes_a_tiff_stack(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    """Review: evaluate asked is_file() whether the true masks were one stack, so a zarr stack was taken for a
    folder: plain scores, --instances and --objects all refused what they score for the same TIFF."""
    import json

    train_tiny_run(tmp_path, 4, 48, 2)
    rng = np.random.default_rng(5)
    pairs = [blob_pair(rng, 48) for _ in range(2)]
    plain_array(tmp_path / "raw.zarr", np.stack([image for image, _ in pairs]))
    truth = np.stack([label * 255 for _, label in pairs]).astype(np.uint8)
    plain_array(tmp_path / "seg.zarr", truth)
    tifffile.imwrite(tmp_path / "seg.tif", truth)
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "raw.zarr"), "--out", str(tmp_path / "pred"),
                 "--prob", "--instances", "--quiet"]) == 0
    scores = {}
    for truths in ("seg.zarr", "seg.tif"):
        for pred, extra in (("pred", []), ("pred/raw.tif", ["--instances", "threshold"]),
                            ("pred/raw.tif", ["--objects"])):
            out = tmp_path / f"{truths}-{len(scores)}.json"
            code = main(["evaluate", "--pred", str(tmp_path / pred), "--labels", str(tmp_path / truths), *extra,
                         "--json", str(out)])
            assert code == 0, capsys.readouterr().err
            scores[(truths, pred, tuple(extra))] = json.loads(out.read_text())["mean"]
    for (truths, pred, extra), mean in scores.items():
        if truths == "seg.zarr":
            assert mean == scores[("seg.tif", pred, extra)]


@pytest.mark.parametrize("edit", ["multiscales_text", "axes_numbers", "datasets_dict", "scale_text", "scale_dict",
                                  "scale_null", "level_group"])
def test_malformed_ome_zarr_metadata_is_one_line_not_a_traceback(tmp_path: Path, edit: str) -> None:
    """Review: hand-edited multiscales (a string, numbers for axes, a dict for a list) raised AttributeError,
    TypeError, KeyError, ValueError out of predict and check."""
    from unetkit.data.zarr_pages import zarr_stamp

    path = ome_image(tmp_path / "img.zarr", np.ones((2, 16, 16), np.uint8), "zyx", [1, 1, 1])
    group = zarr.open_group(str(path), mode="r+")
    multiscale = group.attrs["multiscales"][0]
    transforms = multiscale["datasets"][0]["coordinateTransformations"]
    if edit == "multiscales_text":
        group.attrs["multiscales"] = ["x"]
    elif edit == "level_group":
        zarr.open_group(str(path / "0"), mode="w")
    else:
        changed = {"axes_numbers": ("axes", [1, 2, 3]), "datasets_dict": ("datasets", {"path": "0"})}.get(edit)
        if changed:
            multiscale[changed[0]] = changed[1]
        else:
            transforms[0] = {"scale_text": {"type": "scale", "scale": ["a", "b", "c"]},
                             "scale_null": {"type": "scale", "scale": [None, 1, 1]}}.get(edit, transforms[0])
            if edit == "scale_dict":
                multiscale["datasets"][0]["coordinateTransformations"] = {"type": "scale", "scale": [1, 1, 1]}
        group.attrs["multiscales"] = [multiscale]
    with pytest.raises(InputError, match="img.zarr"):
        read_pages(path)
    assert zarr_stamp(path)["size"] > 0  # --skip-done's stamp of it does not raise either


def test_axes_a_plain_array_names_lay_it_out(tmp_path: Path) -> None:
    """Review: zarr 3's dimension_names and xarray's _ARRAY_DIMENSIONS were not read: a (y, x, z) array gave 64
    pages of 64 x 5, a (c, y, x) one two grey pages."""
    volume = np.random.default_rng(2).integers(0, 255, (40, 36, 5), dtype=np.uint8)
    yxz = zarr.create_array(str(tmp_path / "yxz.zarr"), shape=volume.shape, dtype="u1", chunks=(16, 16, 1),
                            dimension_names=["y", "x", "z"])
    yxz[:] = volume
    pages = read_pages_lazily(tmp_path / "yxz.zarr")
    assert pages.shape == (5, 40, 36) and np.array_equal(pages[3], volume[..., 3])
    assert np.array_equal(read_pages(tmp_path / "yxz.zarr")[0], np.moveaxis(volume, -1, 0))
    cyx = zarr.create_array(str(tmp_path / "cyx.zarr"), shape=(2, 40, 36), dtype="u1", zarr_format=2,
                            attributes={"_ARRAY_DIMENSIONS": ["c", "y", "x"]})
    cyx[:] = np.moveaxis(volume[..., :2], -1, 0)
    assert np.array_equal(read_pages(tmp_path / "cyx.zarr")[0], volume[None, ..., :2])
    unnamed = zarr.create_array(str(tmp_path / "dims.zarr"), shape=(2, 40, 36), dtype="u1", zarr_format=2,
                                attributes={"_ARRAY_DIMENSIONS": ["dim_0", "dim_1", "dim_2"]})
    unnamed[:] = 1
    assert read_pages(tmp_path / "dims.zarr")[0].shape == (2, 40, 36)  # xarray's default names: the plain rule
    zarr.create_array(str(tmp_path / "odd.zarr"), shape=(2, 40, 36), dtype="u1", dimension_names=["y", "row", "col"])
    with pytest.raises(InputError, match=r"odd.zarr: names its axes \['y', 'row', 'col'\]"):
        read_pages(tmp_path / "odd.zarr")


def test_a_zarr_folder_without_its_metadata_is_an_error_not_skipped(tmp_path: Path) -> None:
    """Review: .zarray / .zgroup are hidden files, which `cp dir/*` leaves behind: the copy was skipped in a folder
    of images without a word, and given itself said the folder holds no images."""
    image = np.zeros((16, 16), np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", image)
    copy = plain_array(tmp_path / "b.zarr", np.zeros((2, 16, 16), np.uint8), zarr_format=2)
    (copy / ".zarray").unlink()
    for given in (tmp_path, copy):
        with pytest.raises(InputError, match="b.zarr: named .zarr but holds no zarr metadata"):
            list_image_files(given)


def test_pages_of_chunks_deeper_than_one_page_are_decoded_once_per_chunk(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Review: a page read decodes every chunk it crosses, so 64-deep chunks were decoded 64 times, once per page."""
    from unetkit.data import zarr_pages

    volume = np.random.default_rng(4).integers(0, 255, (10, 32, 32), dtype=np.uint8)
    stored = zarr.create_array(str(tmp_path / "deep.zarr"), shape=volume.shape, chunks=(4, 16, 16), dtype="u1")
    stored[:] = volume
    pages = ZarrPages.open(tmp_path / "deep.zarr")
    reads = []
    array = pages._array

    class Counted:
        shape, dtype, chunks = array.shape, array.dtype, array.chunks

        def __getitem__(self, selection):  # noqa: ANN001, ANN204
            reads.append(selection)
            return array[selection]

    pages._array = Counted()
    assert all(np.array_equal(pages[i], volume[i]) for i in range(10))
    assert len(reads) == 3  # pages 0-3, 4-7, 8-9
    assert np.array_equal(pages[5], volume[5]) and np.array_equal(pages[-1], volume[9])
    monkeypatch.setattr(zarr_pages, "SLAB_BYTES", 3 * 32 * 32)  # 4 pages no longer fit: one page a read (review: a
    reads.clear()  # 20000^2 plane of 64-deep chunks held 64 planes)
    assert all(np.array_equal(pages[i], volume[i]) for i in range(10)) and len(reads) == 10


def test_axes_named_in_part_as_the_plain_layout_has_them_read_as_before(tmp_path: Path) -> None:
    """Review: dimension_names ["z", None, None] was refused; it says no more than the plain Z, Y, X."""
    volume = np.arange(5 * 32 * 32, dtype=np.uint16).reshape(5, 32, 32)
    stored = zarr.create_array(str(tmp_path / "z.zarr"), shape=volume.shape, dtype="u2", dimension_names=["z", None, None])
    stored[:] = volume
    assert np.array_equal(read_pages(tmp_path / "z.zarr")[0], volume)
    zarr.create_array(str(tmp_path / "x.zarr"), shape=volume.shape, dtype="u2", dimension_names=["x", None, None])
    with pytest.raises(InputError, match="names its axes"):  # contradicts it: refused, not guessed
        read_pages(tmp_path / "x.zarr")


def test_a_zarr_changed_while_its_pages_are_read_is_refused(tmp_path: Path) -> None:
    """Review: TiffPages refused a stack rewritten during prediction; ZarrPages gave a mask of old and new pages."""
    path = plain_array(tmp_path / "v.zarr", np.zeros((3, 32, 32), np.uint8))
    pages = ZarrPages.open(path)
    pages[0]
    zarr.open_array(str(path), mode="r+")[2] = 7
    with pytest.raises(InputError, match="v.zarr: the array changed while its pages were being read"):
        pages[2]


def test_a_zarr_given_as_dot_is_named_by_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review: `predict RUN .` inside raw.zarr wrote OUT/.tif (a hidden file), and `..` from its level OUT/...tif."""
    path = plain_array(tmp_path / "raw.zarr", np.zeros((2, 16, 16), np.uint8))
    monkeypatch.chdir(path)
    assert [file.name for file in list_image_files(Path("."))] == ["raw.zarr"]
    (path / "sub").mkdir()
    assert [file.stem for file in list_image_files(Path("sub/.."))] == ["raw"]


def test_skip_done_sees_the_image_s_metadata_change_when_its_level_is_given(tmp_path: Path) -> None:
    """Review: for img.zarr/0 only the level was stamped, so a new scale in img.zarr/.zattrs kept a stale output."""
    from unetkit.data.zarr_pages import zarr_stamp

    path = ome_image(tmp_path / "img.zarr", np.ones((2, 16, 16), np.uint8), "zyx", [0.2, 0.1, 0.1])
    before = zarr_stamp(path / "0")
    group = zarr.open_group(str(path), mode="r+")
    multiscales = group.attrs["multiscales"]
    multiscales[0]["datasets"][0]["coordinateTransformations"][0]["scale"] = [0.5, 0.1, 0.1]
    group.attrs["multiscales"] = multiscales
    assert zarr_stamp(path / "0") != before


@pytest.mark.parametrize("layout", ["bioformats2raw", "labels", "plate"])
def test_a_group_that_is_not_an_image_names_the_images_inside(tmp_path: Path, layout: str) -> None:
    """Review: bioformats2raw's root (image in 0/), a labels/ group and a plate got "give the zarr array of the
    image", which named none."""
    root = tmp_path / "x.zarr"
    if layout == "plate":
        zarr.open_group(str(root), mode="w").attrs["plate"] = {"wells": [{"path": "A/1"}]}
        expected = "an OME-Zarr plate: give the image of one well's field, e.g. " + str(root / "A" / "1" / "0")
    else:
        zarr.open_group(str(root), mode="w", zarr_format=2)  # bioformats2raw writes zarr 2, as the 0.4 image in it
        inner = "0" if layout == "bioformats2raw" else "cells"
        ome_image(root / inner, np.ones((2, 16, 16), np.uint8), "zyx", [1, 1, 1])
        expected = f"it holds the images {inner}: give one of them, e.g. {root / inner}"
    with pytest.raises(InputError, match="a zarr group, not an image") as raised:
        read_pages(root)
    assert expected in str(raised.value)


def test_zarr_odds_and_ends_from_the_review(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A zarr given as DATA was told to hold image/ inside; a level path of the training zarr passed as held-out
    validation; a plain RGBA array kept its alpha as a 4th channel; a consolidated copy of the metadata left
    stale by a resize was read; OME units written "um" dropped the pixel size."""
    from unetkit.train.setup import _refuse_training_images_as_validation

    raw = ome_image(tmp_path / "raw.zarr", np.ones((2, 16, 16), np.uint8), "zyx", [1, 1, 1])
    assert main(["train", str(raw), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "is a zarr image; give a folder holding image/ and label/" in error and "raw.zarr/image" not in error
    with pytest.raises(InputError, match="0 is also a training image"):
        _refuse_training_images_as_validation(raw, raw / "0")
    rgba = np.random.default_rng(0).integers(0, 255, (20, 24, 4), dtype=np.uint8)
    assert np.array_equal(read_pages(plain_array(tmp_path / "rgba.zarr", rgba))[0], rgba[None, ..., :3])
    assert read_pages_lazily(tmp_path / "rgba.zarr").shape == (1, 20, 24, 3)
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=2)
    group.create_array("a", shape=(6, 16, 16), dtype="u1")
    zarr.consolidate_metadata(str(tmp_path / "g.zarr"))
    zarr.open_array(str(tmp_path / "g.zarr" / "a"), mode="r+").resize((8, 16, 16))
    assert read_pages(tmp_path / "g.zarr" / "a")[0].shape == (8, 16, 16)
    short = ome_image(tmp_path / "um.zarr", np.ones((2, 16, 16), np.uint8), "zyx", [0.5, 0.1, 0.1], unit="um")
    calibration = calibration_of(short)
    assert calibration is not None and calibration.in_metres() == pytest.approx((1e-7, 1e-7))
