"""`unetkit check`: the table of what pairs hold, and every problem at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import write_blob_pairs, write_png

from unetkit.cli import main
from unetkit.data.labels import LabelEncoding
from unetkit.data.validate import check_dataset, format_report


def pairs(root: Path, count: int = 5) -> tuple[Path, Path]:
    return write_blob_pairs(root, count)


def test_clean_pairs_give_a_table_and_no_findings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images, labels = pairs(tmp_path)
    report = check_dataset(images, labels)
    assert report.findings == []
    assert [p.name for p in report.pairs] == ["0", "1", "2", "3", "4"]
    assert all(p.size == "32 x 32" and p.image_dtype == "uint8" and p.channels == 1 for p in report.pairs)
    assert report.pairs[0].mask_values == "0, 255"
    assert main(["check", "--images", str(images), "--labels", str(labels)]) == 0
    out = capsys.readouterr().out
    assert "5 pairs read; 0 errors, 0 warnings" in out and "mask values" in out


def test_every_problem_is_listed_not_just_the_first(tmp_path: Path) -> None:
    images, labels = pairs(tmp_path, 6)
    write_png(images / "orphan.png", np.zeros((32, 32), np.uint8))
    write_png(labels / "1.png", np.zeros((16, 32), np.uint8))  # size mismatch
    (images / "2.png").write_bytes(b"not a png at all")  # unreadable
    write_png(images / "3.png", np.full((32, 32), 7, np.uint8))  # constant: warning
    write_png(labels / "4.png", np.zeros((32, 32), np.uint8))  # all background: warning
    report = check_dataset(images, labels)
    errors = {Path(f.file).name: f.message for f in report.errors}
    warnings = {Path(f.file).name: f.message for f in report.warnings}
    assert set(errors) == {"orphan.png", "1.png", "2.png"}, report.findings  # the image file, in full
    assert "16" in errors["1.png"] and "label/1.png" in errors["1.png"] and "no mask" in errors["orphan.png"]
    assert set(warnings) == {"3.png", "4.png"}, report.findings
    assert "constant" in warnings["3.png"] and "only the value 0" in warnings["4.png"]
    text = format_report(report)
    assert "3 errors, 2 warnings" in text


def test_nan_pixels_are_an_error_naming_the_count(tmp_path: Path) -> None:
    images, labels = pairs(tmp_path, 3)
    (images / "0.png").unlink()
    array = np.random.default_rng(1).random((32, 32)).astype(np.float32)
    array[[1, 2, 3], [4, 5, 6]] = [np.nan, np.inf, -np.inf]
    tifffile.imwrite(images / "0.tif", array)
    report = check_dataset(images, labels)
    assert {Path(f.file).name for f in report.errors} == {"0.tif"}  # its NaNs, and float32 among uint8 images
    assert any("3 NaN or infinite" in f.message for f in report.errors)
    assert any("float32" in f.message and "bit depth" in f.message for f in report.errors)


def test_stray_values_of_antialiased_masks_are_flagged(tmp_path: Path) -> None:
    images, labels = pairs(tmp_path, 6)
    mask = np.asarray(Image.open(labels / "2.png")).copy()
    mask[0, 0] = 128  # one grey pixel on an edge, in one mask of six
    write_png(labels / "2.png", mask)
    report = check_dataset(images, labels)
    assert [Path(f.file).name for f in report.warnings] == ["2.png"] and not report.errors
    assert "128" in report.warnings[0].message


def test_a_class_in_many_masks_is_not_stray(tmp_path: Path) -> None:
    images, labels = pairs(tmp_path, 4)
    for i in range(4):  # value 128 on a few pixels of every mask: a real (small) class
        path = labels / f"{i}.png"
        mask = np.asarray(Image.open(path)).copy()
        mask[0, 0] = 128
        write_png(path, mask)
    assert check_dataset(images, labels).findings == []


def test_with_a_run_values_outside_its_classes_and_other_channels_are_errors(tmp_path: Path) -> None:
    images, labels = pairs(tmp_path, 3)
    write_png(images / "2.png", np.zeros((32, 32, 3), np.uint8) + np.arange(0, 120, 40, dtype=np.uint8))  # RGB with colour
    mask = np.zeros((32, 32), np.uint8)
    mask[:5] = 255
    mask[5:9] = 100
    write_png(labels / "1.png", mask)
    classes = LabelEncoding((0, 255), "uint8")
    report = check_dataset(images, labels, classes, in_channels=1)
    errors = {Path(f.file).name: f.message for f in report.errors}
    assert set(errors) == {"1.png", "2.png"}, report.findings
    assert "100" in errors["1.png"] and "3 channel" in errors["2.png"]


def test_too_many_values_means_not_class_masks(tmp_path: Path) -> None:
    images, labels = pairs(tmp_path, 2)
    write_png(labels / "0.png", (np.arange(32 * 32) % 200).astype(np.uint8).reshape(32, 32))
    report = check_dataset(images, labels)
    assert len(report.errors) == 1 and "distinct values" in report.errors[0].message
    assert "antialiasing" not in report.errors[0].message  # values spread evenly: an image, not a smoothed mask


def test_smoothed_colour_masks_are_told_to_be_saved_without_antialiasing(tmp_path: Path) -> None:
    """Three colours resized bilinearly (163 values in the audit) were called "an image, an instance map or
    lossy masks?"."""
    from PIL import Image

    images, labels = write_blob_pairs(tmp_path, 2, 137)
    rows, columns = np.mgrid[:100, :100]
    for index in range(2):
        drawn = np.zeros((100, 100, 3), np.uint8)
        drawn[(rows - 30) ** 2 + (columns - 30) ** 2 < 400] = (255, 0, 0)
        drawn[(rows - 70) ** 2 + (columns - 60 - index) ** 2 < 300] = (0, 255, 0)
        Image.fromarray(drawn).resize((137, 137), Image.BILINEAR).save(labels / f"{index}.png")  # 275 values
    report = check_dataset(images, labels)
    assert len(report.errors) == 1 and "antialiasing" in report.errors[0].message, report.errors
    assert "nearest-neighbour" in report.errors[0].message


def test_training_says_the_warnings_and_stops_on_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images, labels = pairs(tmp_path, 5)
    write_png(labels / "4.png", np.zeros((32, 32), np.uint8))  # warning only
    argv = ["train", "--images", str(images), "--labels", str(labels), "--epochs", "1", "--width", "4", "--depth", "2",
            "--patch-size", "16", "--device", "cpu", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    assert "warning:" in capsys.readouterr().out
    for name in ("0.png", "1.png"):  # two pairs too small to train on: two errors
        write_png(images / name, np.zeros((4, 4), np.uint8))
        write_png(labels / name, np.zeros((4, 4), np.uint8))
    assert main([*argv, "--out", str(tmp_path / "run2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0.png" in err[0] and "unetkit check" in err[0], err


def test_a_class_only_the_held_out_masks_hold_is_named_by_check_and_train_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`check` passed data that `train` then refused: both name the held-out mask and the fixes now."""
    images, labels = pairs(tmp_path, 5)
    mask = np.asarray(Image.open(labels / "4.png")).copy()
    mask[:8] = 100  # a class that only the last image (held out by the default 20 %) shows
    write_png(labels / "4.png", mask)
    errors = check_dataset(images, labels, val_fraction=0.2).errors
    assert [Path(f.file).name for f in errors] == ["4.png"] and "held-out block" in errors[0].message, errors
    assert "--val-images" in errors[0].message and "--val-fraction" in errors[0].message
    assert check_dataset(images, labels, val_fraction=None).errors == []  # no split asked for: nothing to say
    assert main(["check", "--images", str(images), "--labels", str(labels)]) == 2
    assert "held-out block" in capsys.readouterr().out
    argv = ["train", "--images", str(images), "--labels", str(labels), "--epochs", "1", "--width", "4", "--depth", "2",
            "--patch-size", "16", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "4.png" in err[0] and "held-out block" in err[0], err
    assert main([*argv[:-2], "--val-fraction", "0.4", "--out", str(tmp_path / "run2")]) == 2  # 3.png and 4.png held out
    mask3 = np.asarray(Image.open(labels / "3.png")).copy()
    mask3[:8] = 100
    write_png(labels / "3.png", mask3)  # now a training mask shows it too
    assert check_dataset(images, labels, val_fraction=0.2).errors == []


def test_a_class_the_held_out_masks_lack_is_warned_about(tmp_path: Path) -> None:
    """Class 100 only in training masks: validation scored it 1.0 (absent from both) and said nothing. The
    warning names a mask that holds it (the one to rename so it comes last), not the first held-out one (audit)."""
    images, labels = pairs(tmp_path, 5)
    mask = np.asarray(Image.open(labels / "0.png")).copy()
    mask[:8] = 100
    write_png(labels / "0.png", mask)
    report = check_dataset(images, labels, val_fraction=0.2)
    assert report.errors == []
    lacking = [f for f in report.warnings if "held-out block" in f.message]
    assert len(lacking) == 1 and "100" in lacking[0].message and Path(lacking[0].file).name == "0.png", report.warnings
    mask4 = np.asarray(Image.open(labels / "4.png")).copy()
    mask4[:8] = 100
    write_png(labels / "4.png", mask4)  # the held-out mask shows it too
    assert not [f for f in check_dataset(images, labels, val_fraction=0.2).warnings if "held-out block" in f.message]


def test_a_mask_in_another_encoding_is_warned_about_not_silently_trained_as_a_third_class(tmp_path: Path) -> None:
    images, labels = pairs(tmp_path, 6)
    write_png(labels / "2.png", (np.asarray(Image.open(labels / "2.png")) > 0).astype(np.uint8))  # 0/1 among 0/255
    warnings = check_dataset(images, labels).warnings
    assert [Path(f.file).name for f in warnings] == ["2.png"], warnings  # one warning, not one per check
    assert "1 mask uses 0/1 (2.png) where 5 use 0/255" in warnings[0].message and "3 classes" in warnings[0].message


def test_half_the_masks_in_0_1_and_half_in_0_255_are_warned_about(tmp_path: Path) -> None:
    """Each foreground value appeared in several masks, so no value was 'alone' and 3 classes were trained unwarned."""
    images, labels = pairs(tmp_path, 6)
    for name in ("3.png", "4.png", "5.png"):
        write_png(labels / name, (np.asarray(Image.open(labels / name)) > 0).astype(np.uint8))
    warnings = check_dataset(images, labels).warnings
    assert len(warnings) == 1 and "3 masks use 0/1 (3.png, 4.png, 5.png) where 3 use 0/255" in warnings[0].message


def test_ilastik_s_1_2_masks_beside_0_1_ones_are_warned_about(tmp_path: Path) -> None:
    """Review: three masks in 0/1 and three in 1/2 (ilastik's export, 1 background) trained classes 0, 1, 2 in which 1
    was the object in half the masks and the background in the others, without a word."""
    images, labels = pairs(tmp_path, 6)
    for index in range(6):
        objects = (np.asarray(Image.open(labels / f"{index}.png")) > 0).astype(np.uint8)
        write_png(labels / f"{index}.png", objects + (1 if index >= 3 else 0))
    warnings = check_dataset(images, labels).warnings
    assert len(warnings) == 1, warnings
    assert "3 masks use 1/2 (3.png, 4.png, 5.png) where 3 use 0/1: together they make 3 classes" in warnings[0].message
    assert "save them all as 0/1, or" in warnings[0].message  # no "mask > 0" recipe: it would not turn 1/2 into 0/1
    everything = (np.arange(32 * 32).reshape(32, 32) % 3).astype(np.uint8)  # a mask of all three classes: then the
    write_png(labels / "0.png", everything)  # others are masks missing one class, not another encoding (review)
    assert not [w for w in check_dataset(images, labels).warnings if "together they make" in w.message]


def test_masks_in_0_1_among_0_255_are_refused_by_train_unless_told_and_nothing_else_is_said(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """With the 0/1 masks first, train made three classes after a warning; with them last, check and train added
    held-out findings about values 1 and 255 that were only the encoding's symptom (audit)."""
    images, labels = pairs(tmp_path, 6)
    for name in ("0.png", "1.png"):
        write_png(labels / name, (np.asarray(Image.open(labels / name)) > 0).astype(np.uint8))
    argv = ["train", "--images", str(images), "--labels", str(labels), "--epochs", "1", "--width", "4", "--depth", "2",
            "--patch-size", "16", "--device", "cpu", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "0.png: 2 masks use 0/1 (0.png, 1.png) where 4 use 0/255" in err and "--mask-kind classes" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert main([*argv, "--out", str(tmp_path / "run3"), "--mask-kind", "classes"]) == 0  # told: three classes
    for name in ("0.png", "1.png"):  # the odd masks last, in the held-out block
        (labels / name).rename(labels / f"9{name}")
        (images / name).rename(images / f"9{name}")
    findings = check_dataset(images, labels, val_fraction=0.3).findings
    assert [f.kind for f in findings] == ["encoding"], findings


def _blobs(labels: Path, ids_per_mask: list[list[int]]) -> None:
    """Masks of 32 x 32 with one 6 x 6 square per id, on 0."""
    corners = [(y, x) for y in (1, 9, 17, 25) for x in (1, 9, 17, 25)]
    for index, ids in enumerate(ids_per_mask):
        mask = np.zeros((32, 32), np.uint8)
        for number, (y, x) in zip(ids, corners):
            mask[y : y + 6, x : x + 6] = number
        write_png(labels / f"{index}.png", mask)


def test_instance_label_maps_are_warned_about(tmp_path: Path) -> None:
    """Nuclei numbered 1..N were trained as N + 1 classes; check said nothing when every mask used the same ids."""
    images, labels = pairs(tmp_path, 4)
    _blobs(labels, [list(range(1, 4 + i)) for i in range(4)])  # 3, 4, 5, 6 nuclei: the ids differ between masks
    warnings = check_dataset(images, labels).warnings
    assert [w for w in warnings if "instance label map (4 of 4 masks" in w.message and "--mask-kind instances" in w.message], warnings
    _blobs(labels, [list(range(1, 8))] * 4)  # 7 nuclei in every mask: the same ids, but many
    assert [w for w in check_dataset(images, labels).warnings if "instance label map" in w.message]


def test_classes_of_one_region_each_are_not_taken_for_instances(tmp_path: Path) -> None:
    """Heart or organ masks: the same few classes in every mask, each one region."""
    images, labels = pairs(tmp_path, 4)
    _blobs(labels, [[1, 2, 3]] * 4)
    assert not [w for w in check_dataset(images, labels).warnings if "instance" in w.message]
    stripes = np.zeros((32, 32), np.uint8)  # classes scattered over several regions
    for row in range(0, 32, 4):
        stripes[row : row + 2] = 1 + (row // 4) % 3
    for index in range(4):
        write_png(labels / f"{index}.png", stripes)
    assert not [w for w in check_dataset(images, labels).warnings if "instance" in w.message]


def test_with_grey_and_colour_masks_the_odd_one_out_is_named(tmp_path: Path) -> None:
    images, labels = pairs(tmp_path, 5)
    grey = np.asarray(Image.open(labels / "1.png"))
    colour = np.zeros((*grey.shape, 3), np.uint8)
    colour[grey > 0] = (255, 0, 0)
    write_png(labels / "1.png", colour)
    errors = check_dataset(images, labels).errors
    assert [Path(f.file).name for f in errors] == ["1.png"] and "most masks hold grey values or palette indices" in errors[0].message, errors


def test_masks_of_another_kind_than_a_runs_are_compared_with_the_run_not_with_most_masks(tmp_path: Path) -> None:
    """Against a colour run, grey masks were called "greyscale" (palette masks too) and compared with "most masks"."""
    images, labels = pairs(tmp_path, 3)  # all grey: "most masks" would be these very masks
    colour_run = LabelEncoding((0x0000FF, 0xFF0000), "uint8", colour=True)
    errors = check_dataset(images, labels, classes=colour_run).errors
    assert len(errors) == 3 and all("the run's training masks are RGB colour masks" in f.message for f in errors), errors
    assert "grey values or palette indices" in errors[0].message and "most masks" not in errors[0].message


def test_check_can_skip_the_held_out_split_for_runs_that_will_get_their_own_validation_set(tmp_path: Path) -> None:
    images, labels = pairs(tmp_path, 5)
    mask = np.asarray(Image.open(labels / "4.png")).copy()
    mask[:8] = 100
    write_png(labels / "4.png", mask)
    assert main(["check", "--images", str(images), "--labels", str(labels), "--val-fraction", "0"]) == 0


def test_0_1_masks_against_a_0_255_run_are_told_the_encoding_fix(tmp_path: Path) -> None:
    images, labels = pairs(tmp_path, 2)
    for name in ("0.png", "1.png"):
        write_png(labels / name, (np.asarray(Image.open(labels / name)) > 0).astype(np.uint8))
    run = LabelEncoding((0, 255), "uint8")
    errors = check_dataset(images, labels, classes=run).errors
    assert len(errors) == 2 and all("the mask is 0/1, the run's masks 0/255: save it as 0/255" in e.message for e in errors)
    three = LabelEncoding((0, 1, 2), "uint8")  # a genuinely unknown value keeps the general advice
    write_png(labels / "0.png", np.full((32, 32), 7, np.uint8))
    assert "fix the mask or train a new run" in check_dataset(images, labels, classes=three).errors[0].message


def test_a_single_pair_is_warned_about_as_train_would_refuse_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`check` passed one pair without a word; `train` then refused it (nothing to hold out)."""
    images, labels = write_blob_pairs(tmp_path, 1)
    assert main(["check", "--images", str(images), "--labels", str(labels)]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "the only pair: `unetkit train` needs a second" in out
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "run")]) == 2
    assert "need at least 2" in capsys.readouterr().err  # what the warning foretold


def test_instance_maps_of_many_ids_are_not_called_smoothed(tmp_path: Path) -> None:
    """Sparse nuclei numbered past 64 beside one large cell: the background and the cell cover most pixels, which
    read as "resized with smoothing" (review); instance maps get the instance map's way out instead."""
    images, labels = write_blob_pairs(tmp_path, 2, 128)
    for index in range(2):
        ids = np.zeros((128, 128), np.uint16)
        ids[:40, :] = 5000 + index  # the large cell
        for number in range(80):
            y, x = 44 + (number // 16) * 16, (number % 16) * 8
            ids[y : y + 4, x : x + 4] = 1 + number + 100 * index
        write_png(labels / f"{index}.png", ids)
    report = check_dataset(images, labels)
    assert any("--mask-kind instances" in f.message for f in report.errors), report.findings
    assert not any("antialiasing" in f.message for f in report.findings), report.findings


def test_grey_masks_drawn_with_smoothing_are_refused_by_train_unless_every_value_is_a_class(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Four grey classes drawn antialiased (48 values, under the 64 that called them smoothed) trained a 45-class
    network after a warning per mask, and `check` blamed the held-out block for the edge values (audit)."""
    images, labels = write_blob_pairs(tmp_path, 6, 96)
    rows, columns = np.mgrid[:384, :384]
    for index in range(6):
        drawn = np.zeros((384, 384), np.uint8)
        drawn[(rows - 120 - 4 * index) ** 2 + (columns - 130) ** 2 < 70 ** 2] = 60
        drawn[(rows - 130) ** 2 + (columns - 140 - 3 * index) ** 2 < 30 ** 2] = 120
        drawn[(rows - 280) ** 2 + (columns - 250) ** 2 < (40 + index) ** 2] = 180
        Image.fromarray(drawn).resize((96, 96), Image.BOX).save(labels / f"{index}.png")  # averaged 4 x 4: edges
    report = check_dataset(images, labels)
    assert not report.errors and len(report.warnings) == 1, report.findings  # one finding, not one per mask
    assert "(0, 60, 120, 180) cover" in report.warnings[0].message and "--mask-kind classes" in report.warnings[0].message
    argv = ["train", "--images", str(images), "--labels", str(labels), "--epochs", "1", "--width", "4", "--depth", "2",
            "--patch-size", "16", "--device", "cpu", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert "antialiasing" in capsys.readouterr().err and not (tmp_path / "run").exists()
    main([*argv, "--out", str(tmp_path / "run"), "--mask-kind", "classes"])  # told: the edge values are classes
    assert "antialiasing" not in capsys.readouterr().err


def test_many_real_classes_with_a_few_rare_ones_are_not_called_smoothed(tmp_path: Path) -> None:
    images, labels = pairs(tmp_path, 4)
    for i in range(4):  # 20 classes: 6 large bands and 14 small blocks, in every mask
        mask = np.zeros((32, 32), np.uint8)
        for band in range(6):
            mask[band * 5:(band + 1) * 5] = band * 10
        for small in range(14):
            mask[30 + small // 7, (small % 7) * 4:(small % 7) * 4 + 2] = 100 + small
        write_png(labels / f"{i}.png", mask)
    assert not any(f.kind == "smoothed" or "antialias" in f.message for f in check_dataset(images, labels).findings)


def test_a_mask_in_another_encoding_is_refused_by_train_unless_its_values_are_classes(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """One mask saved as 0/64/128/192 among masks of 0..3 trained 7 classes after a warning (audit)."""
    images, labels = pairs(tmp_path, 5)
    for i in range(5):
        mask = np.zeros((32, 32), np.uint8)
        for k in range(1, 4):  # each class in two separate blocks: classes, not instance ids
            mask[k * 8:k * 8 + 6, 2:12] = mask[k * 8:k * 8 + 6, 18:28] = k * (64 if i == 2 else 1)
        write_png(labels / f"{i}.png", mask)
    report = check_dataset(images, labels, val_fraction=None)
    assert [(Path(f.file).name, f.kind) for f in report.warnings] == [("2.png", "encoding")] and not report.errors
    assert "shares only the background 0 with the other 4 masks: its values 64, 128, 192" in report.warnings[0].message
    argv = ["train", "--images", str(images), "--labels", str(labels), "--epochs", "1", "--width", "4", "--depth", "2",
            "--patch-size", "16", "--device", "cpu", "--quiet", "--val-fraction", "0.4"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert "2.png: shares only the background" in capsys.readouterr().err
    for i in (0, 1):  # 64, 128 and 192 in three masks: classes, not a lone mask's encoding
        (labels / f"{i}.png").write_bytes((labels / "2.png").read_bytes())
    assert not any(f.kind == "encoding" for f in check_dataset(images, labels).findings)


def test_the_check_table_shows_what_pixel_size_each_image_declares(tmp_path: Path) -> None:
    """A folder mixing 4 nm and 10 nm sections, or a file whose size was lost, shows which is which."""
    images, labels = pairs(tmp_path, 4)
    page = np.asarray(Image.open(images / "0.png"))
    for name, resolution, unit in (("0", (1 / 4, 1 / 4), "nm"), ("1", (1 / 10, 1 / 10), "nm"),
                                   ("2", (2, 1 / 0.6), "micron")):
        (images / f"{name}.png").unlink()
        tifffile.imwrite(images / f"{name}.tif", page, imagej=True, resolution=resolution, metadata={"unit": unit})
    table = format_report(check_dataset(images, labels)).splitlines()
    assert table[0].split()[-2:] == ["pixel", "size"]
    shown = {line.split()[0]: line.split("  ")[-1].strip() for line in table[1:5]}
    assert shown == {"0": "4 nm", "1": "10 nm", "2": "0.5 x 0.6 um", "3": "-"}, table
    write_png(images / "4.png", page)
    write_png(labels / "4.png", np.asarray(Image.open(labels / "3.png")))
    for name in ("0", "1", "2"):
        (images / f"{name}.tif").unlink()
        write_png(images / f"{name}.png", page)
    assert "pixel size" not in format_report(check_dataset(images, labels))  # none declares one: no column


def test_the_pixel_size_column_shows_units_as_declared_and_only_for_shown_rows(tmp_path: Path) -> None:
    from unetkit.data.validate import MAX_TABLE_ROWS, pixel_size_text

    page = np.zeros((16, 16), np.uint8)
    for name, resolution, unit in (("f", (1 / 2, 1 / 3), "furlong"), ("g", (1 / 90, 1 / 110), "nm"),
                                   ("h", (1 / 0.65, 1 / 0.65), "micron")):
        tifffile.imwrite(tmp_path / f"{name}.tif", page, imagej=True, resolution=resolution, metadata={"unit": unit})
    assert [pixel_size_text(tmp_path / f"{n}.tif") for n in "fgh"] == ["2 x 3 furlong", "90 x 110 nm", "0.65 um"]
    images, labels = pairs(tmp_path / "many", MAX_TABLE_ROWS + 2)
    last = sorted(images.iterdir(), key=lambda p: int(p.stem))[-1]
    tifffile.imwrite(last.with_suffix(".tif"), np.asarray(Image.open(last)), imagej=True, resolution=(0.25, 0.25),
                     metadata={"unit": "nm"})
    last.unlink()
    assert "pixel size" not in format_report(check_dataset(images, labels)).splitlines()[0]  # its row is not shown
