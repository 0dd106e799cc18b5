"""Every bad input of issue 7 through the command line: exit code 2 and one line on stderr naming the file.

Each case builds a small valid data set, breaks one thing, and runs the command
a user would run (train, fine-tune with --from, predict or check). The command
runs in-process (`unetkit.cli.main`): anything but a clean InputError would
surface here as an exception and fail the test.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import write_blob_pairs, write_png

from unetkit.cli import main

TINY = ["--epochs", "1", "--width", "4", "--depth", "2", "--patch-size", "16", "--batch-size", "2", "--device", "cpu", "--quiet"]


def make_pairs(root: Path, count: int = 4, size: int = 32, colour: bool = False) -> tuple[Path, Path]:
    """`count` learnable pairs in root/image and root/label (0/255 masks, or red/blue RGB masks)."""
    rgb = lambda label: np.array([[0, 0, 255], [255, 0, 0]], dtype=np.uint8)[label]  # noqa: E731
    return write_blob_pairs(root, count, size, mask=rgb if colour else lambda label: label * 255)


@pytest.fixture(scope="module")
def grey_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grey")
    images, labels = make_pairs(root)
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(root / "run"), *TINY]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("colour")
    images, labels = make_pairs(root, colour=True)
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(root / "run"), *TINY]) == 0
    return root / "run"


def bomb_png(path: Path, side: int = 200_000) -> None:
    """A PNG whose header declares side x side pixels (40 gigapixels) over a few bytes of data."""
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def expect_error(argv: list[str], capsys: pytest.CaptureFixture, *needles: str) -> str:
    """Run the CLI; require exit 2 and exactly one stderr line containing every needle."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("unetkit: error:"), err
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    return err[0]


def train_argv(images: Path, labels: Path, out: Path, *extra: str) -> list[str]:
    """The tiny training command; fine-tuning (--from) takes its network from the run, so no --width/--depth then."""
    flags = TINY if "--from" not in extra else [a for i, a in enumerate(TINY) if a not in ("--width", "--depth")
                                                 and TINY[i - 1] not in ("--width", "--depth")]
    return ["train", "--images", images, "--labels", labels, "--out", out, *flags, *extra]


# Each case: (name, how to break a fresh data set -> the argv to run and the needles of the message).
Case = Callable[[Path, Path, Path, Path, Path], tuple[list, tuple[str, ...]]]


def missing_path(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return train_argv(tmp / "no-such-images", labels, tmp / "run"), ("no-such-images",)


def empty_folder(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    (tmp / "empty").mkdir()
    return train_argv(tmp / "empty", labels, tmp / "run"), ("empty",)


def orphan_image(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    write_png(images / "extra.png", np.zeros((32, 32), dtype=np.uint8))
    return train_argv(images, labels, tmp / "run"), ("extra.png", "no mask")


def orphan_label(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    write_png(labels / "lonely.png", np.zeros((32, 32), dtype=np.uint8))
    return train_argv(images, labels, tmp / "run"), ("lonely.png", "no image")


def size_mismatch(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    write_png(labels / "2.png", np.zeros((24, 32), dtype=np.uint8))
    return train_argv(images, labels, tmp / "run"), ("2", "24")


def truncated_png(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    path = images / "1.png"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return train_argv(images, labels, tmp / "run"), ("1.png",)


def truncated_tiff(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    array = np.asarray(Image.open(images / "1.png"))
    (images / "1.png").unlink()
    tifffile.imwrite(images / "1.tif", np.stack([array] * 3), compression="zlib", photometric="minisblack")
    whole = (images / "1.tif").read_bytes()
    (images / "1.tif").write_bytes(whole[: len(whole) * 2 // 3])
    return train_argv(images, labels, tmp / "run"), ("1.tif",)


def random_bytes_png(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    (images / "2.png").write_bytes(np.random.default_rng(0).bytes(2000))
    return train_argv(images, labels, tmp / "run"), ("2.png",)


def jpeg_mask(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    mask = np.asarray(Image.open(labels / "3.png"))
    (labels / "3.png").unlink()
    Image.fromarray(mask).save(labels / "3.jpg", quality=95)
    return train_argv(images, labels, tmp / "run"), ("3.jpg", "JPEG")


def rgb_mask_with_unknown_colour(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    colour_images, colour_labels = make_pairs(tmp / "colour-data", colour=True)
    mask = np.asarray(Image.open(colour_labels / "1.png")).copy()
    mask[:4, :4] = (0, 255, 0)  # green: not one of the run's red/blue classes
    write_png(colour_labels / "1.png", mask)
    return train_argv(colour_images, colour_labels, tmp / "run", "--from", colour), ("1.png", "not among")


def nan_in_float_tiff(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    for path in sorted(images.glob("*.png")):
        array = np.asarray(Image.open(path)).astype(np.float32)
        if path.stem == "2":
            array[5, 5] = np.nan
        tifffile.imwrite(path.with_suffix(".tif"), array)
        path.unlink()
    return train_argv(images, labels, tmp / "run"), ("2.tif", "NaN")


def unseen_label_value(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    mask = np.asarray(Image.open(labels / "0.png")).copy()
    mask[:3, :3] = 128
    write_png(labels / "0.png", mask)
    return train_argv(images, labels, tmp / "run", "--from", grey), ("0.png", "128")


def two_channel_image_to_one_channel_model(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    (tmp / "two").mkdir()
    tifffile.imwrite(tmp / "two" / "pair.tif", np.zeros((2, 32, 32), dtype=np.uint8), photometric="minisblack",
                     planarconfig="separate", metadata={"axes": "CYX"})
    return ["predict", grey, tmp / "two" / "pair.tif", "--out", tmp / "pred", "--quiet"], ("pair.tif", "channel")


def decompression_bomb(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    bomb_png(images / "0.png")
    return train_argv(images, labels, tmp / "run"), ("0.png", "limit")


def unwritable_output(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    (tmp / "a-file").write_bytes(b"")
    return ["predict", grey, images, "--out", tmp / "a-file" / "pred", "--quiet"], ("a-file",)


def unwritable_run_folder(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    (tmp / "a-file").write_bytes(b"")
    return train_argv(images, labels, tmp / "a-file" / "run"), ("a-file",)


def output_is_input(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return ["predict", grey, images, "--out", images, "--quiet"], (str(images), "input folder")


def negative_tile(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return ["predict", grey, images, "--out", tmp / "pred", "--tile", "-5", "--quiet"], ("--tile -5", "at least")


def zero_tile(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return ["predict", grey, images, "--out", tmp / "pred", "--tile", "0", "--quiet"], ("--tile 0",)


def nan_learning_rate(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return train_argv(images, labels, tmp / "run", "--lr", "nan"), ("--lr nan", "positive number")


def infinite_learning_rate(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return train_argv(images, labels, tmp / "run", "--lr", "inf"), ("--lr inf",)


def absurd_depth(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return train_argv(images, labels, tmp / "run", "--depth", "20"), ("--depth 20", "depth 1 to 8")


def absurd_width(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return train_argv(images, labels, tmp / "run", "--width", "100000"), ("--width 100000",)


def zero_width(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return train_argv(images, labels, tmp / "run", "--width", "0"), ("--width 0",)  # the last --width counts


def odd_width(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return train_argv(images, labels, tmp / "run", "--width", "3"), ("--width 3", "even")


def absurd_batch(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return train_argv(images, labels, tmp / "run", "--batch-size", "100000"), ("--batch-size 100000", "1 to 4096")


def absurd_budget(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return train_argv(images, labels, tmp / "run", "--budget", "1e9h"), ("--budget", "at most 30 days")


def output_is_a_file(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    """Was "not writable (File exists)"."""
    (tmp / "a-file").write_bytes(b"")
    return ["predict", grey, images, "--out", tmp / "a-file", "--quiet"], ("a-file", "is a file")


def negative_budget(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    """argparse took -5s for an option and said only "expected one argument"."""
    return train_argv(images, labels, tmp / "run", "--budget", "-5s"), ("--budget -5s", "must be positive")


def negative_synthetic_count(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return train_argv(images, labels, tmp / "run", "--synthetic-count", "-1"), ("--synthetic-count -1",)


def seed_beyond_32_bits(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    """2**32 trained exactly as seed 0 (and run.json said 4294967296); 2**70 was a traceback."""
    return train_argv(images, labels, tmp / "run", "--seed", "4294967296"), ("--seed", "0 to 4294967295")


def negative_demo_seed(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    """A numpy traceback, and demo.txt left behind."""
    return ["demo", "--out", tmp / "run", "--seed", "-5"], ("--seed", "-5")


def synthetic_fraction_without_synthetic(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    """Trained without synthetic pairs, exit 0 (audit)."""
    return train_argv(images, labels, tmp / "run", "--synthetic-fraction", "0.5"), ("--synthetic-fraction", "--synthetic")


def unknown_model_lists_segmenters_only(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    err = ("--model fcn9s", "fcn8s")
    return train_argv(images, labels, tmp / "run", "--model", "fcn9s"), err


def demo_with_a_wrong_data_folder(images, labels, tmp, grey, colour):  # type: ignore[no-untyped-def]
    return ["demo", "--out", tmp / "run", "--data", tmp / "nonexist"], ("nonexist", "ISBI 2012 folder")


CASES: list[Case] = [
    missing_path, empty_folder, orphan_image, orphan_label, size_mismatch, truncated_png, truncated_tiff,
    random_bytes_png, jpeg_mask, rgb_mask_with_unknown_colour, nan_in_float_tiff, unseen_label_value,
    two_channel_image_to_one_channel_model, decompression_bomb, unwritable_output, unwritable_run_folder, output_is_input,
    negative_tile, zero_tile, nan_learning_rate, infinite_learning_rate, zero_width, absurd_depth, absurd_width,
    odd_width, absurd_batch, absurd_budget, negative_budget, negative_synthetic_count, output_is_a_file,
    seed_beyond_32_bits, negative_demo_seed, synthetic_fraction_without_synthetic, unknown_model_lists_segmenters_only,
    demo_with_a_wrong_data_folder,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_one_line_and_exit_2(
    case: Case, tmp_path: Path, grey_run: Path, colour_run: Path, capsys: pytest.CaptureFixture
) -> None:
    images, labels = make_pairs(tmp_path / "data")
    before = {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()}
    argv, needles = case(images, labels, tmp_path, grey_run, colour_run)
    after_breaking = {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()}
    line = expect_error(argv, capsys, *needles)
    assert "diffusion-unet" not in line or "diffusion train" in line  # train lists only what it trains
    assert not (tmp_path / "run" / "model.safetensors").exists()  # nothing trained
    assert not (tmp_path / "run").exists() or case is not demo_with_a_wrong_data_folder  # refused before any folder
    for path, content in after_breaking.items():  # the inputs are never touched
        assert path.read_bytes() == content, path
    assert before  # the data set was there to break


@pytest.mark.parametrize("case", [orphan_image, size_mismatch, jpeg_mask, nan_in_float_tiff, random_bytes_png],
                         ids=lambda c: c.__name__)
def test_check_reports_the_same_problems_in_its_table(
    case: Case, tmp_path: Path, grey_run: Path, colour_run: Path, capsys: pytest.CaptureFixture
) -> None:
    images, labels = make_pairs(tmp_path / "data")
    _, needles = case(images, labels, tmp_path, grey_run, colour_run)
    assert main(["check", "--images", str(images), "--labels", str(labels)]) == 2
    captured = capsys.readouterr()
    assert "error:" in captured.out and all(n in captured.out for n in needles if n != "no mask"), captured.out
    assert len(captured.err.strip().splitlines()) == 1


def test_train_counts_the_unreadable_pairs_after_the_first(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Three masks of the wrong size and a JPEG mask were found by one train each: a size mismatch or a JPEG mask
    stopped the reading with no count of the others, which the masks' value errors have (audit)."""
    images, labels = make_pairs(tmp_path / "data", count=6)
    for name in ("1.png", "2.png", "4.png"):
        write_png(labels / name, np.zeros((24, 32), dtype=np.uint8))
    jpeg_mask(images, labels, tmp_path, None, None)
    err = expect_error(train_argv(images, labels, tmp_path / "run"), capsys, "1.png", "24",
                       f"(3 more: `unetkit check --images {images} --labels {labels}` lists them)")
    assert not (tmp_path / "run").exists()
    for name in ("1.png", "2.png", "4.png"):  # one bad pair alone: nothing more to count
        write_png(labels / name, np.asarray(Image.open(labels / "0.png")))
    err = expect_error(train_argv(images, labels, tmp_path / "run"), capsys, "3.jpg", "JPEG")
    assert "more" not in err


def test_a_full_disk_while_writing_is_one_line_and_exit_2(
    tmp_path: Path, grey_run: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    def save_to_full_disk(image, target, *args, **kwargs):  # type: ignore[no-untyped-def]
        with open("/dev/full", "wb") as handle:  # the kernel's always-full device: a real ENOSPC
            handle.write(b"x" * 65536)
            handle.flush()

    images, _ = make_pairs(tmp_path / "data")
    monkeypatch.setattr(Image.Image, "save", save_to_full_disk)
    expect_error(["predict", grey_run, images, "--out", tmp_path / "pred", "--quiet"], capsys,
                 str(tmp_path / "pred" / "0.png"), os.strerror(errno.ENOSPC))


def test_validation_masks_with_other_classes_name_the_training_classes_and_the_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Said "fix the mask or train a new run" (while training one) and sent the user to a `unetkit check` of the
    validation folders, which, without the training masks' classes, found nothing."""
    images, labels = make_pairs(tmp_path / "train")
    val_images, val_labels = write_blob_pairs(tmp_path / "val", 3, 32, mask=lambda label: label * 2)  # 0/2 masks
    err = expect_error(train_argv(images, labels, tmp_path / "run", "--val-images", val_images, "--val-labels",
                                  val_labels), capsys, str(val_labels / "0.png"), "the training masks' classes [0, 255]",
                       "leave the pair out of the validation set", "2 more: 1.png, 2.png")
    assert "unetkit check" not in err and "train a new run" not in err
    assert not (tmp_path / "run").exists()


def test_a_full_disk_while_training_saves_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """safetensors reports a full disk as its own SafetensorError, not an OSError: training ended in a traceback."""
    import errno
    import os

    from safetensors import SafetensorError

    import unetkit.train.checkpoint as checkpoint

    def save_to_full_disk(*args, **kwargs):  # type: ignore[no-untyped-def]  # safetensors' own words for ENOSPC
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
                              'left on device" })')

    images, labels = make_pairs(tmp_path / "data")
    monkeypatch.setattr(checkpoint, "save_file", save_to_full_disk)
    expect_error(train_argv(images, labels, tmp_path / "run"), capsys, str(tmp_path / "run"),
                 os.strerror(errno.ENOSPC), "free space")


def test_a_disk_that_fills_during_training_leaves_a_failed_run_that_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk filled after the first round was saved: run.json went on saying "training" and the message did not
    say that the run can continue."""
    import json

    from safetensors import SafetensorError

    import unetkit.train.checkpoint as checkpoint

    saves: list[str] = []
    real_save = checkpoint.save_file

    def full_after_the_first_round(*args, **kwargs):  # type: ignore[no-untyped-def]
        saves.append(str(args[1]))
        if len(saves) > 2:  # the first round wrote the weights and the resume state
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
                                  'space left on device" })')
        return real_save(*args, **kwargs)

    images, labels = make_pairs(tmp_path / "data")
    run = tmp_path / "run"
    monkeypatch.setattr(checkpoint, "save_file", full_after_the_first_round)
    argv = [a if a != "1" else "3" for a in train_argv(images, labels, run)]  # --epochs 3
    err = expect_error(argv, capsys, "No space left", f"continue the run: unetkit train --resume {run}")
    assert "choose a writable folder" not in err  # resuming writes into the same folder: no other one to choose
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and "No space left" in record["error"], record.get("status")
    monkeypatch.setattr(checkpoint, "save_file", real_save)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and "error" not in record and record["progress"]["epoch"] == 3


def test_an_output_disk_too_small_for_the_probabilities_is_refused_before_work(
    tmp_path: Path, grey_run: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import unetkit.predict_files as predict_files

    images, _ = make_pairs(tmp_path / "data")  # 4 images of 32 x 32: 2 classes x 4 bytes x 4096 pixels = 32 KiB of --prob
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(predict_files.shutil, "disk_usage", lambda path: usage._replace(free=20_000))
    calls: list[object] = []
    monkeypatch.setattr(predict_files, "predict_page", lambda *args, **kwargs: calls.append(args))
    expect_error(["predict", grey_run, images, "--out", tmp_path / "pred", "--prob", "--quiet"], capsys, "pred", "19.5 KiB free")
    assert calls == []  # refused before any image was predicted
    monkeypatch.undo()
    assert main(["predict", str(grey_run), str(images), "--out", str(tmp_path / "pred2"), "--prob", "--quiet"]) == 0


@pytest.mark.parametrize("value", ["4e9", "abc", "-5", "0"])
def test_a_bad_pixel_limit_in_the_environment_is_one_line_and_exit_2(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """UNETKIT_MAX_PIXELS=4e9 raised ValueError at import (a traceback, exit 1); -5 was taken as the limit."""
    images, labels = write_blob_pairs(tmp_path / "data", count=3, size=32)
    monkeypatch.setenv("UNETKIT_MAX_PIXELS", value)
    assert main(["check", "--images", str(images), "--labels", str(labels)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"UNETKIT_MAX_PIXELS={value}" in err[0] and "whole number" in err[0]
    monkeypatch.setenv("UNETKIT_MAX_PIXELS", "100")  # a valid limit still refuses larger images
    assert main(["check", "--images", str(images), "--labels", str(labels)]) == 2
    assert "above the limit of 100" in capsys.readouterr().out  # check's table lists each file's problem


def test_runs_exports_and_diffusion_runs_never_go_inside_an_input_folder(
    tmp_path: Path, grey_run: Path, capsys: pytest.CaptureFixture
) -> None:
    """`train --out images/run` and `export --out images/m.zip` wrote among the user's images without a word."""
    images, labels = make_pairs(tmp_path / "data")
    expect_error(train_argv(images, labels, images / "run"), capsys, f"--out {images / 'run'}: is inside the input "
                 f"folder {images}")
    assert not (images / "run").exists()
    trained_on = Path(json.loads((grey_run / "run.json").read_text())["data"]["labels"])
    expect_error(["export", grey_run, "--out", trained_on / "model.zip"], capsys, "is inside the input folder")
    assert not (trained_on / "model.zip").exists()
    expect_error(["diffusion", "train", "--images", images, "--out", images / "d", "--steps", "1"], capsys,
                 "is inside the input folder")


DAMAGED_RECORDS = {
    "a list": lambda record: [],
    "a string format_version": lambda record: {**record, "format_version": "1"},
    "classes a string": lambda record: {**record, "classes": "oops"},
    "alignment a string": lambda record: {**record, "alignment": "left"},
    "a word for a normalisation bound": lambda record: {**record, "normalization": {**record["normalization"], "low": ["a"]}},
    "high equal to low": lambda record: {**record, "normalization": {**record["normalization"],
                                                                     "high": record["normalization"]["low"]}},
    "three classes for two outputs": lambda record: {**record, "classes": {**record["classes"], "values": [0, 128, 255]}},
    "an option the network lacks": lambda record: {**record, "model": {**record["model"], "options": {"width": "x"}}},
    "a word for the width": lambda record: {**record, "config": {**record["config"], "base_width": "16"}},
    # audit 2026-12-03: inverted masks with exit 0, masks in edited values, tracebacks
    "class values swapped": lambda record: {**record, "classes": {**record["classes"],
                                                                 "values": record["classes"]["values"][::-1]}},
    "class values edited": lambda record: {**record, "classes": {**record["classes"], "values": [0, 128]}},
    "an unknown mask dtype": lambda record: {**record, "classes": {**record["classes"], "dtype": "foo"}},
    "a word for the palette": lambda record: {**record, "classes": {**record["classes"], "palette": "xyz"}},
}


@pytest.mark.parametrize("damage", list(DAMAGED_RECORDS), ids=list(DAMAGED_RECORDS))
@pytest.mark.parametrize("command", ["predict", "export", "from", "check"])
def test_a_damaged_run_json_is_one_line_naming_it(
    damage: str, command: str, grey_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Tracebacks (AttributeError, TypeError) or, for three classes on two outputs, masks written with the wrong
    values and exit 0 (audit)."""
    import shutil

    run = Path(shutil.copytree(grey_run, tmp_path / "run"))
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(DAMAGED_RECORDS[damage](record)))
    images, labels = make_pairs(tmp_path / "data")
    argv = {"predict": ["predict", run, images, "--out", tmp_path / "pred", "--quiet"],
            "export": ["export", run, "--out", tmp_path / "model"],
            "from": train_argv(images, labels, tmp_path / "tuned", "--from", run),
            "check": ["check", "--images", images, "--labels", labels, "--run", run]}[command]
    expect_error(argv, capsys, "run.json")
    assert not (tmp_path / "pred").exists() and not (tmp_path / "model").exists() and not (tmp_path / "tuned").exists()


def test_train_does_not_count_the_error_it_stopped_on_among_the_others(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """An image without a mask stopped train with "(1 more: `unetkit check` lists them)" where check found that
    one error only: the message names the folder and the file, and the file was not recognised (audit)."""
    images, labels = make_pairs(tmp_path / "data", count=4)
    (images / "orphan.png").write_bytes((images / "0.png").read_bytes())
    err = expect_error(train_argv(images, labels, tmp_path / "run"), capsys, "orphan.png")
    assert "more" not in err
    write_png(labels / "1.png", np.zeros((24, 32), dtype=np.uint8))  # a second problem, counted
    expect_error(train_argv(images, labels, tmp_path / "run"), capsys, "orphan.png", "(1 more: ")
