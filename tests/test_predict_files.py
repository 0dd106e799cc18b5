"""Predicting files: probabilities, stacks, and memory-mapped large TIFFs give the same masks."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile

from conftest import blob_pair, train_tiny_run, write_png

from unetkit.data import io
from unetkit.data.io import read_pages
from unetkit.errors import InputError
from unetkit.predict_files import predict_paths
from unetkit.run import load_run
from unetkit.config import TrainConfig
from unetkit.train.start import train

QUIET = dict(progress=False, say=lambda _: None)
RED = np.stack([np.full((40, 40), 200, np.uint8), np.zeros((40, 40), np.uint8), np.zeros((40, 40), np.uint8)], axis=-1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("files"), count=4, size=40, epochs=2)


def test_probabilities_sum_to_one_and_agree_with_the_mask(tiny_run: Path, tmp_path: Path) -> None:
    predict_paths(tiny_run / "run", [tiny_run / "image"], tmp_path, write_probabilities=True, **QUIET)
    for i in range(4):
        probs = tifffile.imread(tmp_path / f"{i}_prob.tif")
        mask = read_pages(tmp_path / f"{i}.png", labels=True)[0][0]
        assert probs.shape == (2, 40, 40) and probs.dtype == np.float32
        assert np.allclose(probs.sum(0), 1, atol=1e-5)
        assert np.array_equal(np.array([0, 255])[probs.argmax(0)], mask)


def test_probability_pages_are_named_after_their_classes(tiny_run: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """NAME_prob.tif said nothing of which page is which class, nor did predict (audit): the pages carry ImageJ
    slice labels (a stack's: section and class), the summary names the classes, and the pages stay pages for
    unetkit's reader and evaluate."""
    from unetkit.evaluate import evaluate_probabilities

    pages = np.stack([read_pages(tiny_run / "image" / f"{i}.png")[0][0] for i in range(3)])
    tifffile.imwrite(tmp_path / "volume.tif", pages, photometric="minisblack")
    predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png", tmp_path / "volume.tif"], tmp_path / "out",
                  write_probabilities=True, progress=True, say=print)
    said = capsys.readouterr()
    assert "with their class probabilities (NAME_prob.tif, a page per class: 0, 255)" in said.out
    assert "volume.tif:   0%" in said.err and "0/3 [" in said.err  # a stack's pages have a bar (it showed 0/1 files)
    with tifffile.TiffFile(tmp_path / "out" / "0_prob.tif") as single:
        assert single.imagej_metadata["Labels"] == ["class_0", "class_255"]
    with tifffile.TiffFile(tmp_path / "out" / "volume_prob.tif") as stack:
        assert stack.imagej_metadata["Labels"][:3] == ["0: class_0", "0: class_255", "1: class_0"]
    assert tifffile.imread(tmp_path / "out" / "volume_prob.tif").shape == (3, 2, 40, 40)  # sections, classes
    assert tifffile.imread(tmp_path / "out" / "0_prob.tif").shape == (2, 40, 40)
    tifffile.imwrite(tmp_path / "truth.tif", np.stack([read_pages(tiny_run / "label" / f"{i}.png", labels=True)[0][0]
                                                       for i in range(3)]), photometric="minisblack")
    scores = evaluate_probabilities(tmp_path / "out" / "volume_prob.tif", tmp_path / "truth.tif", "threshold")
    assert len(scores["per_image"]) == 3


def test_a_stack_gives_one_stack_of_masks(tiny_run: Path, tmp_path: Path) -> None:
    pages = np.stack([read_pages(tiny_run / "image" / f"{i}.png")[0][0] for i in range(3)])
    tifffile.imwrite(tmp_path / "volume.tif", pages, photometric="minisblack")  # 3 pages, not planar RGB
    predict_paths(tiny_run / "run", [tmp_path / "volume.tif"], tmp_path / "out", **QUIET)
    stack = tifffile.imread(tmp_path / "out" / "volume.tif")
    assert stack.shape == (3, 40, 40)
    for i in range(3):
        single = read_pages(tmp_path / "out" / "volume.tif")[0][i]
        assert set(np.unique(single).tolist()) <= {0, 255}


def test_memory_mapped_tiff_predicts_like_a_decoded_one(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    big = (rng.random((300, 270)) * 255).astype(np.uint8)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "big.tif", big)
    volume = np.stack([big, big[::-1], big[:, ::-1]]).reshape(3, 1, 300, 270)  # a time-lapse of one slice
    tifffile.imwrite(tmp_path / "in" / "volume.tif", volume, imagej=True, metadata={"axes": "TZYX"})
    run = load_run(tiny_run / "run")
    predict_paths(run, [tmp_path / "in"], tmp_path / "decoded", tile=64, **QUIET)
    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    for name, pages in (("big.tif", 1), ("volume.tif", 3)):  # mapped, not read: a stack's pages one at a time too
        lazily = io.read_pages_lazily(tmp_path / "in" / name)
        assert isinstance(lazily, np.memmap) and lazily.shape == (pages, 300, 270)
        assert np.array_equal(lazily, read_pages(tmp_path / "in" / name)[0])
    predict_paths(run, [tmp_path / "in"], tmp_path / "mapped", tile=64, **QUIET)
    for name in ("big.png", "volume.tif"):
        decoded = read_pages(tmp_path / "decoded" / name, labels=True)[0]
        mapped = read_pages(tmp_path / "mapped" / name, labels=True)[0]
        assert np.array_equal(decoded, mapped)


def test_a_large_tiff_of_images_of_other_sizes_is_refused_not_mapped_as_its_first(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory-mapping took the first series of a file whose series differ in size, and predicted it without a word,
    where read_pages refuses the file (review)."""
    with tifffile.TiffWriter(tmp_path / "two.tif") as tif:
        tif.write(np.zeros((4, 40, 48), np.uint8), photometric="minisblack")
        tif.write(np.zeros((3, 30, 60), np.uint8), photometric="minisblack")  # wider: not an overview
    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    for read in (io.read_pages_lazily, lambda path: read_pages(path)[0]):
        with pytest.raises(InputError, match=r"two\.tif: holds 2 images that differ in size or type"):
            read(tmp_path / "two.tif")


def test_a_huge_image_streams_its_mask_into_a_tiff(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from unetkit import predict_files

    image = read_pages(tiny_run / "image" / "0.png")[0][0]
    (tmp_path / "in").mkdir()
    write_png(tmp_path / "in" / "big.png", image)
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "normal", tile=16, **QUIET)
    monkeypatch.setattr(predict_files, "STREAM_PIXELS", 100)
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "streamed", tile=16, **QUIET)
    normal = read_pages(tmp_path / "normal" / "big.png", labels=True)[0][0]
    streamed = tifffile.imread(tmp_path / "streamed" / "big.tif")
    assert streamed.dtype == normal.dtype and np.array_equal(streamed, normal)


def test_inputs_whose_names_differ_only_in_case_or_suffix_are_refused(tiny_run: Path, tmp_path: Path) -> None:
    """Their masks would be one file (on macOS and Windows also for A.png and a.tif): refuse before writing any."""
    image = read_pages(tiny_run / "image" / "0.png")[0][0]
    for names in (["x.png", "x.tif"], ["A.png", "a.tif"]):
        folder = tmp_path / "_".join(names).replace(".", "")
        folder.mkdir()
        for name in names:
            (write_png(folder / name, image) if name.endswith(".png")
             else tifffile.imwrite(folder / name, image, photometric="minisblack"))
        with pytest.raises(InputError, match="share the name"):
            predict_paths(tiny_run / "run", [folder], tmp_path / f"out_{folder.name}", **QUIET)
        assert not list((tmp_path / f"out_{folder.name}").glob("*.png"))


def test_cell_labels_give_each_region_between_boundaries_its_own_label() -> None:
    """A 2 x 2 grid of cells whose membranes have a weak spot: four cells, not the three a threshold would merge into."""
    from unetkit.predict_files import cell_labels

    boundary = np.full((40, 40), 0.05, dtype=np.float32)
    boundary[19:21, :] = boundary[:, 19:21] = 0.95
    boundary[19:21, 8] = 0.4  # a gap a 0.5 threshold would leak through
    cells = cell_labels(boundary)
    assert cells.dtype == np.uint16 and cells.shape == (40, 40)
    assert len(np.unique(cells[[5, 5, 35, 35], [5, 35, 5, 35]])) == 4 and cells.min() >= 1
    stack = cell_labels(np.stack([boundary, boundary.T]))
    assert stack.shape == (2, 40, 40) and stack[0].max() == 4
    assert sorted(np.unique(stack[1]).tolist()) == [5, 6, 7, 8]  # ids go on through a stack (napari's 3-D labels)
    objects = boundary.copy()
    objects[:5] = 0.95  # a background band
    on_background = cell_labels(np.stack([objects, objects]), objects=True)
    assert 0 in on_background[1] and on_background[1][on_background[1] > 0].min() > on_background[0].max()


def test_predict_instances_writes_cells_beside_the_masks_and_evaluate_skips_them(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from unetkit.cli import main

    from unetkit.predict_files import cell_labels

    out, alone = tmp_path / "out", tmp_path / "alone"
    assert main(["predict", str(tiny_run / "run"), str(tiny_run / "image"), "--out", str(out), "--instances", "--prob",
                 "--quiet"]) == 0
    assert main(["predict", str(tiny_run / "run"), str(tiny_run / "image"), "--out", str(alone), "--instances"]) == 0
    assert "with their objects on background 0 (NAME_cells.tif)" in capsys.readouterr().out
    for i in range(4):
        cells = tifffile.imread(out / f"{i}_cells.tif")
        mask = read_pages(out / f"{i}.png", labels=True)[0][0]
        assert cells.shape == mask.shape and cells.dtype == np.uint16
        boundary = tifffile.imread(out / f"{i}_prob.tif")[0]  # class 0 holds the value 0, the "boundary"
        # bright blobs on black: the class of 0 is a background, so the blobs are objects on 0 (one label took the
        # whole background and a blob when they were flooded as cells that tile the image)
        assert np.array_equal(cells, cell_labels(boundary, objects=True))
        assert np.array_equal(cells > 0, mask == 255) and cells.max() >= 1
        assert np.array_equal(tifffile.imread(alone / f"{i}_cells.tif"), cells)  # the same without --prob on disk
    cells_kind = tmp_path / "cells"  # asked for: the membrane reading, the blobs' background flooded into cells
    assert main(["predict", str(tiny_run / "run"), str(tiny_run / "image"), "--out", str(cells_kind), "--prob",
                 "--instances", "cells", "--quiet"]) == 0
    boundary = tifffile.imread(cells_kind / "0_prob.tif")[0]
    assert np.array_equal(tifffile.imread(cells_kind / "0_cells.tif"), cell_labels(boundary, objects=False))
    assert main(["evaluate", "--pred", str(out), "--labels", str(tiny_run / "label")]) == 0  # NAME_cells.tif is not a mask
    capsys.readouterr()
    assert main(["predict", str(tiny_run / "run"), str(tiny_run / "image"), "--out", str(tmp_path / "o2"), "--instances",
                 "--boundary-value", "7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--instances" in err and "[0, 255]" in err and "\n" not in err


def test_instances_refuse_an_image_too_large_to_hold_before_writing(tiny_run: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from unetkit import predict_files

    monkeypatch.setattr(predict_files, "STREAM_PIXELS", 40 * 40 - 1)  # the 40 x 40 test images count as huge
    with pytest.raises(InputError, match="too large for --instances"):
        predict_paths(tiny_run / "run", [tiny_run / "image"], tmp_path / "out", instances=0, **QUIET)
    assert not list((tmp_path / "out").glob("*.png"))


def test_instances_of_a_stack_larger_than_a_page_limit_are_made_page_by_page(tiny_run: Path, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A stack was refused once all its pages together passed STREAM_PIXELS (its whole probabilities were held for
    the watershed); cells come page by page now, the same as from the probabilities of the whole stack."""
    from unetkit import predict_files
    from unetkit.predict_files import cell_labels

    pages = np.stack([read_pages(tiny_run / "image" / f"{i}.png")[0][0] for i in range(4)])
    tifffile.imwrite(tmp_path / "volume.tif", pages, photometric="minisblack")
    monkeypatch.setattr(predict_files, "STREAM_PIXELS", 40 * 40 * 2)  # two pages' worth: the stack is over it
    predict_paths(tiny_run / "run", [tmp_path / "volume.tif"], tmp_path / "out", instances=0, write_probabilities=True,
                  **QUIET)
    boundary = tifffile.imread(tmp_path / "out" / "volume_prob.tif")[:, 0]
    cells = tifffile.imread(tmp_path / "out" / "volume_cells.tif")
    assert cells.shape == (4, 40, 40) and np.array_equal(cells, cell_labels(boundary, objects=True))
    predict_paths(tiny_run / "run", [tmp_path / "volume.tif"], tmp_path / "alone", instances=0, **QUIET)
    assert np.array_equal(tifffile.imread(tmp_path / "alone" / "volume_cells.tif"), cells)  # one page held, same cells


def test_cell_ids_of_a_stack_move_to_32_bits_when_they_pass_65535() -> None:
    from unetkit.predict_files import CellPages

    grid = np.zeros((600, 600), np.float32)
    grid[::3, :] = grid[:, ::3] = 1.0  # background lines every 3 px: 200 x 200 = 40,000 objects a page
    cells = CellPages((2, 600, 600), objects=True)
    cells.add(0, grid)
    assert cells.ids.dtype == np.uint16 and int(cells.ids.max()) == cells.offset
    cells.add(1, grid)
    assert cells.ids.dtype == np.uint32 and int(cells.ids[1].max()) == cells.offset > 65535
    assert np.array_equal(cells.ids[1][cells.ids[1] > 0] - cells.ids[0].max(), cells.ids[0][cells.ids[0] > 0])


def test_masks_with_negative_values_come_back_unchanged_as_tiff(tmp_path: Path) -> None:
    """A PNG cannot hold -1: the masks of such a run are written as TIFF in the labels' own dtype, never wrapped."""
    rng = np.random.default_rng(0)
    for i in range(3):
        image, label = blob_pair(rng, 32)
        write_png(tmp_path / "image" / f"{i}.png", image)
        (tmp_path / "label").mkdir(exist_ok=True)
        tifffile.imwrite(tmp_path / "label" / f"{i}.tif", np.where(label == 1, 1, -1).astype(np.int16))
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=32, epochs=1, budget_s=None, device="cpu")
    train(tmp_path / "image", tmp_path / "label", tmp_path / "run", config, **QUIET)
    written = predict_paths(tmp_path / "run", [tmp_path / "image"], tmp_path / "pred", **QUIET)
    assert [p.name for p in written] == ["0.tif", "1.tif", "2.tif"]
    mask = tifffile.imread(written[0])
    assert mask.dtype == np.int16 and set(np.unique(mask)) <= {-1, 1}


def test_predictions_never_go_into_a_folder_of_the_users_files_nor_train_from_one(tiny_run: Path, tmp_path: Path) -> None:
    from unetkit.data.validate import check_dataset

    labels = tiny_run / "label"
    before = {p.name: p.read_bytes() for p in labels.iterdir()}
    with pytest.raises(InputError, match="holds files unetkit did not write"):
        predict_paths(tiny_run / "run", [tiny_run / "image"], labels, **QUIET)
    assert {p.name: p.read_bytes() for p in labels.iterdir()} == before  # the true masks are untouched
    with pytest.raises(InputError, match=r"run: is a training run; choose a new or empty folder"):  # said "(curves.png)"
        predict_paths(tiny_run / "run", [tiny_run / "image"], tiny_run / "run", **QUIET)
    with pytest.raises(InputError, match=r"did not write \(image/\)"):  # a folder is shown as one
        predict_paths(tiny_run / "run", [tiny_run / "image"], tiny_run, **QUIET)
    out = tmp_path / "pred"
    predict_paths(tiny_run / "run", [tiny_run / "image"], out, **QUIET)
    predict_paths(tiny_run / "run", [tiny_run / "image"], out, **QUIET)  # its own folder: written again
    for images, masks, option in ((tiny_run / "image", out, "--labels"), (out, tiny_run / "label", "--images")):
        with pytest.raises(InputError, match=f"{option} .*folder unetkit wrote"):
            check_dataset(images, masks)
        with pytest.raises(InputError, match=f"{option} .*folder unetkit wrote"):
            train(images, masks, tmp_path / "run2", replace(TrainConfig(), epochs=1, budget_s=None), **QUIET)


@pytest.mark.parametrize("classes", [3, 4])
def test_probabilities_of_three_or_four_classes_read_back_as_class_pages(tmp_path: Path, classes: int) -> None:
    from unetkit.predict_files import _probability_store

    store = _probability_store(tmp_path / "a_prob.tif", (classes, 8, 9))
    store[:] = np.arange(classes, dtype=np.float32)[:, None, None]
    store.flush()
    del store
    pages, _ = read_pages(tmp_path / "a_prob.tif")
    assert pages.shape == (classes, 8, 9) and [float(p[0, 0]) for p in pages] == list(range(classes))


@pytest.mark.parametrize("shape", [(2, 30, 1), (3, 2, 30, 1), (2, 1, 30)])
def test_probabilities_of_an_image_one_pixel_wide_read_back_in_their_shape(tmp_path: Path,
                                                                           shape: tuple[int, ...]) -> None:
    """Review: tifffile's ImageJ writer drops a last axis of length 1, so the probabilities of a 300 x 1 image read
    back as one 2 x 300 page ("ImageJ series metadata invalid"): such pages are written as a plain TIFF that
    names its axes (tifffile stores (K, H, 1) as it does (H, W, 1), so the file must say which it is)."""
    import tifffile

    from unetkit.predict_files import _probability_store

    labels = [f"{i}" for i in range(int(np.prod(shape[:-2])))]
    store = _probability_store(tmp_path / "a_prob.tif", shape, labels=labels)
    store[:] = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    store.flush()
    del store
    expected = np.arange(np.prod(shape)).reshape(shape)
    assert np.array_equal(tifffile.imread(tmp_path / "a_prob.tif"), expected)
    pages = read_pages(tmp_path / "a_prob.tif")[0]  # unetkit's reader (evaluate's) too: tifffile stores it as YXQ
    if pages.ndim == 4:  # an ImageJ hyperstack: classes as channels, as evaluate takes them
        pages = np.moveaxis(pages, -1, 1).reshape(-1, *pages.shape[1:3])
    assert np.array_equal(pages, expected.reshape(-1, *shape[-2:]))


def test_a_huge_image_of_a_one_bit_run_streams_as_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from unetkit import predict_files

    rng = np.random.default_rng(0)
    for i in range(3):
        image, label = blob_pair(rng, 32)
        write_png(tmp_path / "image" / f"{i}.png", image)
        write_png(tmp_path / "label" / f"{i}.png", label.astype(bool))  # bilevel PNG masks: a bool encoding
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=32, epochs=1, budget_s=None, device="cpu")
    train(tmp_path / "image", tmp_path / "label", tmp_path / "run", config, **QUIET)
    normal = predict_paths(tmp_path / "run", [tmp_path / "image" / "0.png"], tmp_path / "normal", **QUIET)[0]
    monkeypatch.setattr(predict_files, "STREAM_PIXELS", 100)
    streamed = predict_paths(tmp_path / "run", [tmp_path / "image" / "0.png"], tmp_path / "streamed", **QUIET)[0]
    assert np.array_equal(tifffile.imread(streamed), read_pages(normal, labels=True)[0][0].astype(np.uint8))


def test_an_interrupted_prediction_leaves_no_half_written_file(tiny_run: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from unetkit import predict_files

    real_predict_page = predict_files.predict_page
    calls: list[int] = []

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_predict_page(*args, **kwargs)

    monkeypatch.setattr(predict_files, "predict_page", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict_paths(tiny_run / "run", [tiny_run / "image"], tmp_path / "pred", write_probabilities=True, **QUIET)
    assert sorted(p.name for p in (tmp_path / "pred").iterdir() if not p.name.startswith(".unetkit")) == ["0.png", "0_prob.tif"]


def test_instances_say_what_to_give_for_multi_class_grey_and_colour_runs() -> None:
    """A 3-class run was told "(give --boundary-value)" although no value can help; colour runs could not name a colour."""
    from types import SimpleNamespace

    from unetkit.cli import boundary_value
    from unetkit.data.labels import LabelEncoding
    from unetkit.predict_files import boundary_class

    def run(*values: int, colour: bool = False) -> SimpleNamespace:
        return SimpleNamespace(encoding=LabelEncoding(values, "uint8", colour))

    with pytest.raises(InputError, match=r"3 classes \[0, 100, 200\].*two-class run") as three:
        boundary_class(run(0, 100, 200), 0)
    assert "--boundary-value" not in str(three.value)
    with pytest.raises(InputError, match=r"boundary value 7 is not one of this run's classes \[0, 255\].*--boundary-value 0"):
        boundary_class(run(0, 255), 7)
    red, white = boundary_value("255,0,0"), boundary_value("255,255,255")
    assert (red, white) == (0xFF0000, 0xFFFFFF)
    assert boundary_class(run(red, white, colour=True), red) == 0  # a colour run's boundary named as R,G,B
    assert boundary_class(run(0, white, colour=True), boundary_value("0")) == 0  # black, the default
    with pytest.raises(InputError, match=r"\[0, 0, 255\] is not one of .*\[\[255, 0, 0\], \[255, 255, 255\]\].*--boundary-value 255,0,0"):
        boundary_class(run(red, white, colour=True), boundary_value("0,0,255"))


@pytest.mark.parametrize("text", ["red", "1,2", "0,0,256", "1.5"])
def test_a_boundary_value_that_is_neither_a_value_nor_a_colour_is_a_usage_error(text: str, tmp_path: Path,
                                                                                  capsys: pytest.CaptureFixture) -> None:
    from unetkit.cli import main

    assert main(["evaluate", "--pred", str(tmp_path), "--labels", str(tmp_path), "--boundary-value", text]) == 2
    assert "R,G,B" in capsys.readouterr().err


def test_bad_inputs_are_found_before_any_is_predicted(tiny_run: Path, tmp_path: Path) -> None:
    """A corrupt second file stopped predict after the first had been predicted (and a rerun predicted it again)."""
    inputs = tmp_path / "inputs"
    rng = np.random.default_rng(3)
    for name in ("0", "2"):
        write_png(inputs / f"{name}.png", blob_pair(rng, 40)[0])
    (inputs / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    write_png(inputs / "3.png", RED)  # the run takes one channel
    with pytest.raises(InputError, match=r"1\.png: cannot be read.* \(1 more input fails too: 3\.png\); nothing was "
                                         r"predicted$"):
        predict_paths(tiny_run / "run", [inputs], tmp_path / "pred", **QUIET)
    assert not (tmp_path / "pred").exists()


def test_a_bad_input_found_late_says_what_was_already_written_and_a_first_refusal_leaves_no_folder(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs too large to read twice are checked when their turn comes: then predict says what it wrote before.
    A refusal at the first file left an empty --out behind."""
    monkeypatch.setattr("unetkit.predict_files.CHECK_AHEAD_PIXELS", -1)  # every input counts as large (even unreadable)
    inputs = tmp_path / "inputs"
    rng = np.random.default_rng(3)
    write_png(inputs / "0.png", blob_pair(rng, 40)[0])
    (inputs / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match=r"1\.png: .*\(1 of 2 inputs were predicted into .*pred before it"):
        predict_paths(tiny_run / "run", [inputs], tmp_path / "pred", **QUIET)
    assert (tmp_path / "pred" / "0.png").is_file()
    wrong = tmp_path / "rgb"
    write_png(wrong / "0.png", RED)  # the run takes one channel
    with pytest.raises(InputError, match="channel") as refused:
        predict_paths(tiny_run / "run", [wrong], tmp_path / "new" / "pred", **QUIET)
    assert "were predicted" not in str(refused.value)
    assert not (tmp_path / "new").exists()


def test_a_refusal_before_the_first_file_leaves_no_folder_and_a_partial_folder_keeps_its_marker(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unetkit import predict_files
    from unetkit.data.io import PREDICTIONS_MARKER, remove_empty_folders

    def no_space(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise InputError("--out: not enough free space")

    monkeypatch.setattr(predict_files, "check_free_space", no_space)
    with pytest.raises(InputError, match="free space"):
        predict_paths(tiny_run / "run", [tiny_run / "image"], tmp_path / "new" / "pred", **QUIET)
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    (tmp_path / PREDICTIONS_MARKER).touch()  # a folder that holds something besides the marker
    (tmp_path / "0.png").write_bytes(b"x")
    remove_empty_folders([tmp_path], leftover=PREDICTIONS_MARKER)
    assert (tmp_path / PREDICTIONS_MARKER).exists() and (tmp_path / "0.png").exists()


def test_a_disk_too_full_for_a_memory_mapped_output_is_an_error_not_a_crash(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory-mapped outputs were sparse files: a disk that filled while their bands were written killed predict
    with SIGBUS (exit 135, no message) and left a hidden, disk-filling .NAME.partial (audit)."""
    import errno
    import os

    from unetkit import predict_files

    reserved: list[int] = []

    def full_disk(descriptor: int, offset: int, length: int) -> None:
        reserved.append(length)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(predict_files.os, "posix_fallocate", full_disk, raising=False)
    out = tmp_path / "pred"
    with pytest.raises(InputError, match=r"0_prob\.tif: could not be written \(No space left on device\); free space"):
        predict_paths(tiny_run / "run", [tiny_run / "image"], out, write_probabilities=True, **QUIET)
    assert reserved and reserved[0] >= 2 * 4 * 40 * 40  # the whole file: two classes of float32 probabilities
    assert not out.exists() or not [p for p in out.iterdir() if p.name.endswith(".partial")]


def test_finding_an_inputs_earlier_outputs_does_not_scan_the_whole_record(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each input's earlier outputs were found by comparing (and resolving) every entry of the folder's record:
    predicting n images into one folder cost n^2 path resolutions, hours for 10,000 images (profiling)."""
    from unetkit import output_owners

    out = tmp_path / "pred"
    out.mkdir()
    others = {f"other{i}.png": {"input": str(tmp_path / "elsewhere" / f"other{i}.png")} for i in range(300)}
    output_owners.write_owners(out, others)  # a folder that already holds the record of 300 other images
    calls: list[Path] = []
    real_owner_of = output_owners.owner_of
    monkeypatch.setattr(output_owners, "owner_of", lambda file: calls.append(file) or real_owner_of(file))
    predict_paths(tiny_run / "run", [tiny_run / "image"], out, **QUIET)
    assert len(calls) <= 10 * 4, len(calls)  # a few per input, not one per input and recorded entry
    assert len(output_owners.read_owners(out)) == 300 + 4


def test_a_large_image_shows_the_progress_of_its_rows(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The bar counted files only: a 16400 x 16400 image sat at "0/1" for 6.5 minutes (audit)."""
    from unetkit import predict_files

    monkeypatch.setattr(predict_files, "ROW_PROGRESS_PIXELS", 40 * 40)  # the 40 x 40 inputs count as large
    predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png"], tmp_path / "pred", progress=True, say=lambda _: None)
    err = capsys.readouterr().err
    assert "  0.png:" in err and "/40 [" in err and "row/s" in err, err  # the page's 40 rows
    monkeypatch.setattr(predict_files, "ROW_PROGRESS_PIXELS", 40 * 40 + 1)
    predict_paths(tiny_run / "run", [tiny_run / "image" / "1.png"], tmp_path / "pred", progress=True, say=lambda _: None)
    assert "1.png" not in capsys.readouterr().err  # smaller images: the files' bar alone


def test_the_space_check_counts_streamed_masks_and_not_a_killed_predicts_leftovers(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mask above STREAM_PIXELS is an uncompressed memory-mapped TIFF, which the check did not count without
    --prob; and the hidden partial file of a killed predict was counted as used space, so the rerun that would
    have removed it was refused for want of the space it held (audit)."""
    import shutil

    from unetkit import predict_files

    monkeypatch.setattr(predict_files, "STREAM_PIXELS", 1000)  # the 40 x 40 inputs' masks are streamed
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(predict_files.shutil, "disk_usage", lambda path: usage._replace(free=6000))
    with pytest.raises(InputError, match=r"needs about 6\.2 KiB for the outputs but the disk has 5\.9 KiB free"):
        predict_paths(tiny_run / "run", [tiny_run / "image"], tmp_path / "pred", **QUIET)  # 4 masks of 1600 bytes
    stack = tmp_path / "stack.tif"  # 3 pages of 40 x 40, each under the limit: its mask is held on disk page by
    tifffile.imwrite(stack, np.stack([read_pages(tiny_run / "image" / f"{i}.png")[0][0] for i in range(3)]),
                     photometric="minisblack")  # page while they are predicted (StackOutputs): 4800 bytes more
    with pytest.raises(InputError, match=r"needs about 10\.9 KiB"):
        predict_paths(tiny_run / "run", [tiny_run / "image", stack], tmp_path / "pred", **QUIET)
    monkeypatch.setattr(predict_files, "STREAM_PIXELS", 1 << 28)
    out = tmp_path / "pred"
    out.mkdir()
    leftover = out / ".0_prob.tif.partial"  # what a predict killed by SIGBUS or kill -9 leaves
    leftover.write_bytes(b"x" * 100)
    seen: list[bool] = []
    monkeypatch.setattr(predict_files, "check_free_space", lambda *args: seen.append(leftover.exists()))
    predict_paths(tiny_run / "run", [tiny_run / "image"], out, write_probabilities=True, **QUIET)
    assert seen == [False]  # gone before the space was counted


def test_predicting_again_into_a_folder_replaces_that_images_outputs_and_keeps_the_others(
    tiny_run: Path, tmp_path: Path
) -> None:
    """A second predict without --prob left the first run's NAME_prob.tif beside the new mask: two runs mixed."""
    out = tmp_path / "pred"
    predict_paths(tiny_run / "run", [tiny_run / "image"], out, write_probabilities=True, **QUIET)
    (out / "0.tif").write_bytes(b"an earlier run's 16-bit mask")  # as a run with other classes would have written
    from unetkit.output_owners import read_owners, record_outputs, write_owners

    owners = read_owners(out)
    record_outputs(owners, tiny_run / "image" / "0.png", {out / "0.tif"})  # and recorded as image 0's
    write_owners(out, owners)
    predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png", tiny_run / "image" / "1.png"], out, **QUIET)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "0.png", "1.png", "2.png", "2_prob.tif", "3.png", "3_prob.tif"]  # 2 and 3 were not predicted again


def test_an_input_named_like_another_inputs_probabilities_keeps_its_mask(tiny_run: Path, tmp_path: Path) -> None:
    """Inputs 0 and 0_prob, the second's mask a TIFF: predicting 0 without --prob removed 0_prob.tif, its mask."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "0.png").write_bytes((tiny_run / "image" / "0.png").read_bytes())
    tifffile.imwrite(images / "0_prob.tif", np.stack([read_pages(tiny_run / "image" / "1.png")[0][0]] * 2))  # a stack
    out = tmp_path / "pred"
    predict_paths(tiny_run / "run", [images], out, **QUIET)
    predict_paths(tiny_run / "run", [images / "0.png"], out, **QUIET)  # 0 again, alone
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["0.png", "0_prob.tif"]
    assert tifffile.imread(out / "0_prob.tif").shape == (2, 40, 40)  # the stack's masks, not removed


def test_the_kind_of_instances_is_decided_once_per_call_for_runs_without_class_fractions() -> None:
    """A run saved before run.json held class fractions was judged file by file, so one call mixed the two kinds."""
    from types import SimpleNamespace

    from unetkit.predict_files import CELLS, OBJECTS, objects_on_background

    old_run = SimpleNamespace(record={"classes": {"values": [0, 255]}})
    mostly_boundary, little_boundary = np.full((4, 4), 0.9), np.full((4, 4), 0.1)
    assert objects_on_background(old_run, 0, mostly_boundary) is True  # the first file decides
    assert objects_on_background(old_run, 0, little_boundary, earlier={OBJECTS}) is True  # and the rest follow
    assert objects_on_background(old_run, 0, mostly_boundary, earlier={CELLS}) is False
    new_run = SimpleNamespace(record={"classes": {"values": [0, 255], "fractions": [0.2, 0.8]}})  # membranes
    assert objects_on_background(new_run, 0, mostly_boundary) is False
    assert objects_on_background(new_run, 0, little_boundary, kind="objects") is True  # asked for


def _copy_as(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return target


def test_an_output_name_two_inputs_would_write_is_refused_before_any_work(tiny_run: Path, tmp_path: Path) -> None:
    """Inputs b and b_cells with --instances: b_cells's mask replaced b's cells (b_cells.tif), with exit 0."""
    images = tmp_path / "images"
    _copy_as(tiny_run / "image" / "0.png", images / "b.png")
    _copy_as(tiny_run / "image" / "1.png", images / "b_cells.png")
    out = tmp_path / "pred"
    with pytest.raises(InputError, match="b_cells.tif") as refusal:
        predict_paths(tiny_run / "run", [images], out, instances=255, **QUIET)
    assert "b.png" in str(refusal.value) and "separate --out" in str(refusal.value)
    assert not out.exists()  # refused before the first file: no folder left
    predict_paths(tiny_run / "run", [images], out, **QUIET)  # without --instances the names are apart
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["b.png", "b_cells.png"]


def test_a_later_predict_never_replaces_or_removes_another_images_outputs(tiny_run: Path, tmp_path: Path) -> None:
    """Predicting a_prob.png after a.png --prob replaced a's probabilities by a_prob's mask, with exit 0."""
    images, out = tmp_path / "images", tmp_path / "pred"
    _copy_as(tiny_run / "image" / "0.png", images / "a.png")
    _copy_as(tiny_run / "image" / "1.png", images / "a_prob.png")
    predict_paths(tiny_run / "run", [images / "a.png"], out, write_probabilities=True, instances=255, **QUIET)
    before = {name: (out / name).read_bytes() for name in ("a.png", "a_prob.tif", "a_cells.tif")}
    with pytest.raises(InputError, match=r"a_prob.tif, which an earlier predict wrote for the image .*a\.png"):
        predict_paths(tiny_run / "run", [images / "a_prob.png"], out, **QUIET)
    assert {name: (out / name).read_bytes() for name in before} == before


def test_an_image_of_the_same_name_from_another_folder_never_replaces_the_first_ones_mask(
    tiny_run: Path, tmp_path: Path
) -> None:
    """day1/0.png then day2/0.png, one call each, into one folder: the second overwrote the first's mask, exit 0."""
    out = tmp_path / "pred"
    _copy_as(tiny_run / "image" / "0.png", tmp_path / "day1" / "0.png")
    _copy_as(tiny_run / "image" / "1.png", tmp_path / "day2" / "0.png")
    predict_paths(tiny_run / "run", [tmp_path / "day1"], out, **QUIET)
    first = (out / "0.png").read_bytes()
    with pytest.raises(InputError, match=r"0.png, which an earlier predict wrote for the image .*day1/0\.png"):
        predict_paths(tiny_run / "run", [tmp_path / "day2"], out, **QUIET)
    assert (out / "0.png").read_bytes() == first
    predict_paths(tiny_run / "run", [tmp_path / "day1" / "0.png"], out, write_probabilities=True, **QUIET)  # itself: fine
    assert (out / "0_prob.tif").is_file()
    marker = out / ".unetkit-predictions"
    marker.write_text('{"owners": {"0.png": "0", "0_prob.tif": "0"}}')  # an older marker recorded stems
    predict_paths(tiny_run / "run", [tmp_path / "day1" / "0.png"], out, **QUIET)  # still the same image, by stem
    assert not (out / "0_prob.tif").exists()


def test_predicting_an_image_again_removes_its_own_earlier_cells(tiny_run: Path, tmp_path: Path) -> None:
    """The cells of an earlier --instances predict stayed beside a new mask: two runs' outputs of one image."""
    out = tmp_path / "pred"
    image = tiny_run / "image" / "0.png"
    predict_paths(tiny_run / "run", [image, tiny_run / "image" / "1.png"], out, instances=255, **QUIET)
    predict_paths(tiny_run / "run", [image], out, **QUIET)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["0.png", "1.png", "1_cells.tif"]


def test_a_grey_image_saved_as_rgb_or_grey_palette_is_predicted_as_grey(tiny_run: Path, tmp_path: Path) -> None:
    """Fiji's RGB export of a grey image (R = G = B) and a grey palette PNG were refused for their 3 channels."""
    from PIL import Image

    grey = read_pages(tiny_run / "image" / "0.png")[0][0]
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(images / "rgb.png")
    palette = Image.fromarray(grey).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    palette.putpalette([v for level in range(256) for v in (level, level, level)])  # index i shows grey i
    palette.putdata(list(grey.reshape(-1)))
    palette.save(images / "palette.png")
    out = predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png"], tmp_path / "grey", **QUIET)[0]
    predicted = predict_paths(tiny_run / "run", [images], tmp_path / "pred", **QUIET)
    assert [read_pages(path)[0][0].tolist() for path in predicted] == [read_pages(out)[0][0].tolist()] * 2
    tinted = np.stack([grey, grey, np.roll(grey, 1)], axis=-1)  # truly colour: still refused
    Image.fromarray(tinted).save(images / "rgb.png")
    with pytest.raises(InputError, match="rgb.png: has 3 channel"):
        predict_paths(tiny_run / "run", [images], tmp_path / "pred2", **QUIET)


def test_a_boundary_value_without_instances_is_refused(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--boundary-value only means something with --instances: alone it was ignored without a word."""
    from unetkit.cli import main

    assert main(["predict", str(tiny_run / "run"), str(tiny_run / "image"), "--out", str(tmp_path / "p"),
                 "--boundary-value", "255", "--quiet"]) == 2
    assert "--boundary-value 255: names the boundary class for --instances" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_a_damaged_marker_is_refused_and_never_acted_on(tiny_run: Path, tmp_path: Path) -> None:
    """A marker entry "../victim/0.png" made predict delete a file outside --out; garbage in a marker turned off
    the guard for a folder of the user's files."""
    victim = tmp_path / "victim" / "0.png"
    _copy_as(tiny_run / "image" / "0.png", victim)
    for text in ('{"owners": {"../victim/0.png": "0"}}', "garbage", '{"owners": ["0.png"]}'):
        out = tmp_path / f"pred{len(text)}"
        out.mkdir()
        (out / ".unetkit-predictions").write_text(text)
        with pytest.raises(InputError, match=r"\.unetkit-predictions: damaged .*predict into a new --out"):
            predict_paths(tiny_run / "run", [tiny_run / "image"], out, **QUIET)
        assert victim.is_file() and not (out / "0.png").exists()


def test_files_the_record_does_not_name_or_that_changed_are_never_overwritten(tiny_run: Path, tmp_path: Path) -> None:
    """`rm pred/*` (the hidden marker stays), then the user's own masks copied in: predict overwrote them. A mask
    corrected by hand in the predictions folder was overwritten by the next predict of its image."""
    out = tmp_path / "pred"
    image = tiny_run / "image" / "0.png"
    predict_paths(tiny_run / "run", [image, tiny_run / "image" / "1.png"], out, **QUIET)
    corrected = b"a mask the user corrected by hand"
    (out / "0.png").write_bytes(corrected)
    with pytest.raises(InputError, match=r"0.png, which was changed after unetkit wrote it \(corrected by hand, or the folder copied"):
        predict_paths(tiny_run / "run", [image], out, **QUIET)
    assert (out / "0.png").read_bytes() == corrected
    predict_paths(tiny_run / "run", [tiny_run / "image" / "1.png"], out, **QUIET)  # other images: as before
    (out / "0.png").rename(tmp_path / "kept.png")  # moved out, as the message says
    (out / "1.png").unlink()
    (out / "2.png").write_bytes(b"the user's own mask")
    with pytest.raises(InputError, match=r"2.png, a file unetkit did not write"):
        predict_paths(tiny_run / "run", [tiny_run / "image"], out, **QUIET)
    assert (out / "2.png").read_bytes() == b"the user's own mask"


def test_predictions_never_go_inside_an_input_folder(tiny_run: Path, tmp_path: Path) -> None:
    """train and export refused an --out inside an input folder; predict wrote there."""
    with pytest.raises(InputError, match="is inside the input folder"):
        predict_paths(tiny_run / "run", [tiny_run / "image"], tiny_run / "image" / "pred", **QUIET)
    assert not (tiny_run / "image" / "pred").exists()


def test_a_predict_stopped_between_writing_and_recording_a_file_can_be_run_again(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C after 0.png was renamed into place but before the marker named it: the same command, run again as
    the interruption message says, was refused ("a file unetkit did not write") (audit). The signal now waits
    until the record is saved."""
    import signal

    import unetkit.predict_files as predict_files

    recorded: list[str] = []

    def record_then_be_interrupted(folder: Path, owners: dict) -> None:
        signal.raise_signal(signal.SIGINT)  # Ctrl-C lands between the file and its record
        write_owners(folder, owners)
        recorded.extend(owners)

    from unetkit.output_owners import write_owners

    out = tmp_path / "out"
    monkeypatch.setattr(predict_files, "write_owners", record_then_be_interrupted)
    # Python's own Ctrl-C handler, as in a terminal: a shell starts background jobs (`make test &`) with SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            predict_paths(tiny_run / "run", [tiny_run / "image"], out, write_probabilities=True, **QUIET)
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.undo()
    assert {"0.png", "0_prob.tif"} <= set(recorded)  # the record was saved before the interrupt took effect
    (out / ".1_prob.tif.partial").write_bytes(b"half")  # what kill -9 leaves of a memory-mapped file
    written = predict_paths(tiny_run / "run", [tiny_run / "image"], out, write_probabilities=True, **QUIET)
    assert len(written) == 4
    assert not (out / ".1_prob.tif.partial").exists()


def test_a_folder_another_process_writes_into_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    """Two predicts into one folder each saved the owners they had read at their start: the last lost the
    other's records, and the first set could not be predicted again (audit)."""
    from unetkit.folder_lock import folder_lock

    out = tmp_path / "out"
    out.mkdir()
    with folder_lock(out, "predict"):  # held as another process would hold it (flock: per open file)
        with pytest.raises(InputError, match="out: another unetkit command is writing into it now; wait until it ends"):
            predict_paths(tiny_run / "run", [tiny_run / "image"], out, **QUIET)
    assert len(predict_paths(tiny_run / "run", [tiny_run / "image"], out, **QUIET)) == 4  # released: it goes on


def test_inputs_unlike_the_training_images_are_predicted_with_a_warning(tiny_run: Path, tmp_path: Path) -> None:
    """An offset of +200 on 16-bit images made every pixel foreground, exit 0, only 'wrote 4 masks' (audit)."""
    rng = np.random.default_rng(1)
    image, _ = blob_pair(rng, 40)
    write_png(tmp_path / "in" / "usual.png", image)
    write_png(tmp_path / "in" / "bright.png", np.clip(image.astype(int) + 190, 0, 255).astype(np.uint8))
    lines: list[str] = []
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "out", progress=False, say=lines.append)
    warned = [line for line in lines if line.startswith("warning:")]
    assert len(warned) == 1 and "bright.png: its median intensity" in warned[0]
    assert "outside the range of the training images" in warned[0]
    assert (tmp_path / "out" / "bright.png").is_file()  # predicted all the same: the user decides


def test_large_inputs_and_many_inputs_unlike_the_training_images_are_warned_about(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files too large to read ahead were never checked; many warnings end in a count (review)."""
    import unetkit.predict_files as predict_files

    image, _ = blob_pair(np.random.default_rng(1), 40)
    for i in range(5):
        write_png(tmp_path / "in" / f"bright{i}.png", np.clip(image.astype(int) + 190, 0, 255).astype(np.uint8))
    monkeypatch.setattr(predict_files, "CHECK_AHEAD_PIXELS", 0)  # every input counts as too large to read ahead
    lines: list[str] = []
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "large", progress=False, say=lines.append)
    assert sum("its median intensity" in line for line in lines) == 5
    monkeypatch.undo()
    lines.clear()
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "many", progress=False, say=lines.append)
    assert sum("its median intensity" in line for line in lines) == 3
    assert "warning: 2 more inputs look unlike the training images too (intensities or pixel size)" in lines


def test_subfolders_with_images_are_named_as_not_predicted(tiny_run: Path, tmp_path: Path) -> None:
    """A folder of images with more in sub-folders (by day, by well) was predicted in part with only "wrote 2
    masks" said (audit); the output folder inside the input folder is not one of them."""
    images = tmp_path / "in"
    shutil.copytree(tiny_run / "image", images)
    (images / "day2").mkdir()
    shutil.copy(next((tiny_run / "image").iterdir()), images / "day2" / "x.png")
    (images / "day3").mkdir()
    shutil.copy(next((tiny_run / "image").iterdir()), images / "day3" / "y.png")
    (images / "notes").mkdir()
    (images / "notes" / "a.txt").write_text("no images here")
    lines: list[str] = []
    predict_paths(tiny_run / "run", [images / "day2"], images / "oldpred", progress=False, say=lines.append)
    assert not any(line.startswith("warning:") for line in lines), lines
    predict_paths(tiny_run / "run", [images], tmp_path / "out", progress=False, say=lines.append)
    assert lines[-1].startswith(f"warning: {images / 'day2'} and 1 more subfolder hold images too, not predicted"), lines
    shutil.rmtree(images / "day3")
    predict_paths(tiny_run / "run", [images], tmp_path / "out", progress=False, say=lines.append)
    assert lines[-1].startswith(f"warning: {images / 'day2'} holds images too"), lines  # oldpred: predictions


def test_an_out_named_like_an_image_file_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    """`predict RUN new/0.png --out out0.png` made a folder named out0.png without a word (audit): the masks
    are named after their inputs inside --out."""
    with pytest.raises(InputError, match=r"--out .*out0\.png: names an image file, .*give a folder, e.g. --out .*out0$"):
        predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png"], tmp_path / "out0.png", **QUIET)
    assert not (tmp_path / "out0.png").exists()
    (tmp_path / "kept.tif").mkdir()  # a folder the user did make so: written into as any folder
    predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png"], tmp_path / "kept.tif", **QUIET)
    assert (tmp_path / "kept.tif" / "0.png").is_file()


def test_an_ome_stack_spread_over_files_is_read_whole_not_as_pages_of_its_first_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Micro-Manager and Bio-Formats split large acquisitions over files that one OME header describes: the
    page-by-page reader took the page numbers of the other files' pages in the first one (review)."""
    import uuid

    first, second = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"

    def header(own: str) -> str:
        return (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
                f'UUID="{own}"><Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="24" '
                'SizeY="20" SizeZ="5" SizeC="1" SizeT="1"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
                f'<TiffData FirstZ="0" IFD="0" PlaneCount="2"><UUID FileName="a.ome.tif">{first}</UUID></TiffData>'
                f'<TiffData FirstZ="2" IFD="0" PlaneCount="3"><UUID FileName="b.ome.tif">{second}</UUID></TiffData>'
                '</Pixels></Image></OME>')

    for name, own, values in (("a.ome.tif", first, (0, 1)), ("b.ome.tif", second, (2, 3, 4))):
        with tifffile.TiffWriter(tmp_path / name) as tif:
            for i, value in enumerate(values):
                tif.write(np.full((20, 24), 100 + value, np.uint16), compression="zlib", metadata=None,
                          description=header(own) if i == 0 else None)
    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    pages = np.asarray(io.read_pages_lazily(tmp_path / "a.ome.tif"))
    assert pages.shape == (5, 20, 24) and [int(page[0, 0]) for page in pages] == [100, 101, 102, 103, 104]


def test_a_stack_rewritten_while_its_pages_are_read_is_an_error_not_a_mix(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    path = tmp_path / "volume.tif"
    tifffile.imwrite(path, np.zeros((5, 20, 24), np.uint8), photometric="minisblack", compression="zlib")
    pages = io.read_pages_lazily(path)
    assert isinstance(pages, io.TiffPages) and pages[0].max() == 0
    tifffile.imwrite(path, np.ones((5, 20, 24), np.uint8), photometric="minisblack", compression="zlib")  # same shape
    os.utime(path, ns=(0, 10**9))  # a clock too coarse to see the rewrite changes nothing: the size or inode may not
    with pytest.raises(InputError, match=r"volume\.tif: page 2 of 5: the file changed while its pages were being read"):
        pages[1]


def test_an_animated_gif_is_a_stack_of_its_frames(tiny_run: Path, tmp_path: Path) -> None:
    """Review: only the first of a 4-frame GIF was read (and predicted, as one image), while its header counted 4."""
    from PIL import Image

    rng = np.random.default_rng(0)
    frames = [blob_pair(rng, 32)[0] for _ in range(4)]
    (tmp_path / "in").mkdir()
    Image.fromarray(frames[0]).save(tmp_path / "in" / "movie.gif", save_all=True,
                                    append_images=[Image.fromarray(frame) for frame in frames[1:]])
    pages = read_pages(tmp_path / "in" / "movie.gif")[0]
    assert pages.shape[0] == 4 and all(np.array_equal(io.grey_of(pages)[i], frames[i]) for i in range(4))
    masks = predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "out", progress=False, say=lambda _: None)
    assert masks == [tmp_path / "out" / "movie.tif"]
    assert tifffile.imread(masks[0]).shape == (4, 32, 32)


def test_a_link_beside_the_file_it_points_to_is_predicted_once_under_the_file_s_own_name(tiny_run: Path,
                                                                                          tmp_path: Path) -> None:
    """Review: the mask took the link's name (the last spelling seen), and the real file got none."""
    (tmp_path / "in").mkdir()
    shutil.copy(tiny_run / "image" / "0.png", tmp_path / "in" / "exp42.png")
    os.symlink("exp42.png", tmp_path / "in" / "a_latest.png")  # sorts before the file
    os.symlink("exp42.png", tmp_path / "in" / "z_latest.png")  # and after it
    masks = predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "out", progress=False, say=lambda _: None)
    assert masks == [tmp_path / "out" / "exp42.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["exp42.png"]


def test_skipped_instance_outputs_are_not_called_cells_when_their_kind_was_not_read(tiny_run: Path,
                                                                                     tmp_path: Path) -> None:
    said: list[str] = []
    args = dict(instances=255, instance_kind="objects", progress=False)
    predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png"], tmp_path / "out", say=said.append, **args)
    assert "with their objects on background 0 (NAME_cells.tif)" in said[-1], said
    said.clear()
    predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png"], tmp_path / "out", say=said.append,
                  skip_done=True, **args)
    assert "their cells or objects (NAME_cells.tif)" in said[-1], said


def _float_run(root: Path) -> np.random.Generator:
    """A tiny run trained on float32 images in root/run; returns the random generator, for the inputs."""
    rng = np.random.default_rng(0)
    (root / "image").mkdir()
    for i in range(4):
        image, label = blob_pair(rng, 32)
        tifffile.imwrite(root / "image" / f"{i}.tif", image.astype(np.float32) / 255)
        write_png(root / "label" / f"{i}.png", label * 255)
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=32, epochs=1, budget_s=None, device="cpu")
    train(root / "image", root / "label", root / "run", config, **QUIET)
    return rng


def test_a_float_input_with_nan_is_one_error_before_anything_is_predicted(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """Review: a warning that its "90th percentile intensity nan" lay far from the training images' came before
    the NaN error, two lines where the contract is one; and the inputs before it were predicted first."""
    from unetkit.cli import main

    rng = _float_run(tmp_path)
    (tmp_path / "in").mkdir()
    field = rng.random((32, 32)).astype(np.float32)
    tifffile.imwrite(tmp_path / "in" / "a.tif", field)
    field[5, 5] = np.nan
    tifffile.imwrite(tmp_path / "in" / "b.tif", field)
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"unetkit: error: {tmp_path / 'in' / 'b.tif'}: holds NaN or infinite values; replace them before training or "
        "prediction; nothing was predicted"], captured
    assert "nan" not in captured.out
    assert not (tmp_path / "out" / "a.tif").exists()


def test_nan_on_a_later_page_of_a_float_stack_is_refused_before_anything_is_predicted(tmp_path: Path) -> None:
    """Review: only a stack's first page was checked ahead, so its NaN page stopped the call after other inputs."""
    rng = _float_run(tmp_path)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "a.tif", rng.random((32, 32)).astype(np.float32))
    stack = rng.random((3, 32, 32)).astype(np.float32)
    stack[2, 4, 4] = np.inf
    tifffile.imwrite(tmp_path / "in" / "b.tif", stack, photometric="minisblack")
    with pytest.raises(InputError, match=r"b.tif\[2\]: holds NaN or infinite values; .*nothing was predicted"):
        predict_paths(tmp_path / "run", [tmp_path / "in"], tmp_path / "out", **QUIET)
    assert not (tmp_path / "out" / "a.tif").exists() and not list((tmp_path / "out").glob(".*pages*"))
