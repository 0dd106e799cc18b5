"""Sparse labels: pixels painted --ignore-value are unlabelled, trained and scored on nothing, never predicted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_blob_pairs
from PIL import Image

from unetkit.cli import main
from unetkit.data.labels import IGNORE_CLASS, LabelEncoding
from unetkit.errors import InputError
from unetkit.losses import bce_loss, ce_dice_loss, ce_loss, soft_dice_loss

UNLABELLED = 128


def sparse_copy(labels: Path, out: Path, keep: float, seed: int = 0) -> Path:
    """The masks with all but a random share `keep` of their pixels painted UNLABELLED."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    for file in sorted(labels.iterdir()):
        mask = np.asarray(Image.open(file)).copy()
        mask[rng.random(mask.shape) > keep] = UNLABELLED
        Image.fromarray(mask).save(out / file.name)
    return out


@pytest.mark.parametrize("loss", [ce_loss, soft_dice_loss, ce_dice_loss])
def test_unlabelled_pixels_change_no_loss(loss) -> None:  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=generator)
    classes = torch.randint(0, 3, (2, 8, 8), generator=generator)
    unlabelled = classes.clone()
    unlabelled[:, :, 4:] = IGNORE_CLASS
    other_logits = logits.clone()
    other_logits[:, :, :, 4:] = torch.randn(2, 3, 8, 4, generator=generator)  # whatever the network says there
    assert loss(logits, unlabelled) == pytest.approx(float(loss(other_logits, unlabelled)), abs=1e-6)
    assert float(loss(logits, unlabelled)) != pytest.approx(float(loss(logits, classes)), abs=1e-4)
    if loss is ce_loss:  # the mean over the labelled pixels: CE of the left halves alone
        left = torch.nn.functional.cross_entropy(logits[:, :, :, :4], classes[:, :, :4])
        assert float(loss(logits, unlabelled)) == pytest.approx(float(left), rel=1e-5)
    nothing = torch.full_like(classes, IGNORE_CLASS)
    assert torch.isfinite(loss(logits, nothing))  # a patch with no labelled pixel: no NaN, no skipped step


def test_bce_leaves_unlabelled_pixels_out() -> None:
    logits = torch.randn(1, 1, 4, 4)
    classes = torch.tensor([[[0, 1, IGNORE_CLASS, IGNORE_CLASS]] * 4])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[0, 0, :, :2], classes[0, :, :2].float())
    assert float(bce_loss(logits, classes)) == pytest.approx(float(expected), rel=1e-5)


def test_the_ignore_value_is_no_class_and_maps_to_the_ignore_index() -> None:
    mask = np.array([[0, 255, UNLABELLED]], dtype=np.uint8)
    encoding = LabelEncoding.from_masks([("m", mask)], ignore_value=UNLABELLED)
    assert encoding.values == (0, 255)
    assert encoding.to_classes(mask, "m").tolist() == [[0, 1, IGNORE_CLASS]]
    assert LabelEncoding.from_json(encoding.to_json()) == encoding
    assert LabelEncoding.from_masks([("m", mask)]).values == (0, UNLABELLED, 255)  # without it: a third class
    with pytest.raises(InputError, match="only the --ignore-value"):
        LabelEncoding.from_masks([("m", np.full((2, 2), UNLABELLED, np.uint8))], ignore_value=UNLABELLED)


def test_a_run_trained_on_sparse_labels_learns_the_classes_and_never_predicts_the_unlabelled_value(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images, labels = write_blob_pairs(tmp_path / "data", count=6, size=32)
    sparse = sparse_copy(labels, tmp_path / "sparse", keep=0.2)
    common = ["--images", str(images), "--labels", str(sparse), "--epochs", "80", "--width", "8", "--depth", "2",
              "--device", "cpu", "--quiet"]
    assert main(["check", "--images", str(images), "--labels", str(sparse), "--ignore-value", str(UNLABELLED)]) == 0
    assert main(["train", *common, "--out", str(tmp_path / "run"), "--ignore-value", str(UNLABELLED)]) == 0
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["classes"]["values"] == [0, 255] and record["classes"]["ignore_value"] == UNLABELLED
    assert main(["predict", str(tmp_path / "run"), str(images), "--out", str(tmp_path / "pred"), "--quiet"]) == 0
    errors = []
    for file in sorted(labels.iterdir()):
        predicted = np.asarray(Image.open(tmp_path / "pred" / file.name))
        assert set(np.unique(predicted).tolist()) <= {0, 255}
        errors.append(np.mean(predicted != np.asarray(Image.open(file))))
    assert np.mean(errors) < 0.05, errors  # on the full masks (all background: 0.14); learned from a fifth of the pixels
    capsys.readouterr()
    assert main(["train", *common, "--out", str(tmp_path / "w"), "--ignore-value", "128", "--loss", "weighted-ce"]) == 2
    assert "--ignore-value 128: the paper's border weights" in capsys.readouterr().err


def test_validation_and_check_say_what_cannot_be_scored(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images, labels = write_blob_pairs(tmp_path / "data", count=5, size=32)
    for name in ("3.png", "4.png"):  # the held-out block: nothing labelled
        Image.fromarray(np.full((32, 32), UNLABELLED, np.uint8)).save(labels / name)
    assert main(["check", "--images", str(images), "--labels", str(labels), "--ignore-value", "128"]) == 2  # as train
    out = capsys.readouterr().out
    assert "holds only the --ignore-value 128: no labelled pixel" in out and "holds no labelled pixel" in out
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--val-fraction", "0.4", "--ignore-value", "128", "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds no labelled pixel, only the --ignore-value" in err and err.count("\n") == 1
    val = tmp_path / "val"  # a separate validation set with nothing labelled: refused before training too
    (val / "image").mkdir(parents=True)
    (val / "label").mkdir()
    for name in ("3.png", "4.png"):
        (val / "image" / name).write_bytes((images / name).read_bytes())
        (val / "label" / name).write_bytes((labels / name).read_bytes())
        (images / name).unlink()
        (labels / name).unlink()
    assert main(["train", "--images", str(images), "--labels", str(labels), "--val-images", str(val / "image"),
                 "--val-labels", str(val / "label"), "--out", str(tmp_path / "run2"), "--epochs", "1",
                 "--ignore-value", "128", "--device", "cpu", "--quiet"]) == 2
    assert "val/label: every mask holds only the --ignore-value 128" in capsys.readouterr().err


def test_evaluate_scores_only_the_labelled_pixels_of_sparse_true_masks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    truth = np.zeros((16, 16), np.uint8)
    truth[:, 8:] = 255
    pred = truth.copy()
    pred[:, :4] = 255  # wrong on the left quarter
    sparse = truth.copy()
    sparse[:, :4] = UNLABELLED  # ... which is unlabelled
    for folder, mask in (("pred", pred), ("truth", sparse)):
        (tmp_path / folder).mkdir()
        Image.fromarray(mask).save(tmp_path / folder / "a.png")
    Image.fromarray(np.full((16, 16), UNLABELLED, np.uint8)).save(tmp_path / "truth" / "b.png")
    Image.fromarray(pred).save(tmp_path / "pred" / "b.png")
    out = tmp_path / "s.json"
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth")]
    assert main([*args, "--ignore-value", str(UNLABELLED), "--json", str(out)]) == 0
    assert "not scored: 1 true mask with no labelled pixel (b.png)" in capsys.readouterr().out
    scores = json.loads(out.read_text())
    assert scores["mean"]["pixel_error"] == 0.0 and scores["classes"] == [0, 255] and scores["unlabelled"] == ["b.png"]
    assert main([*args, "--ignore-value", str(UNLABELLED), "--instances", "threshold"]) == 2
    assert "need fully labelled masks" in capsys.readouterr().err
    assert "warning" not in capsys.readouterr().out
    (tmp_path / "truth" / "b.png").unlink()
    (tmp_path / "pred" / "b.png").unlink()
    assert main([*args, "--ignore-value", "7"]) == 0  # a value no true mask holds: every pixel scored, as check warns
    assert "warning: no true mask holds --ignore-value 7" in capsys.readouterr().out


def test_check_refuses_what_train_refuses_and_warns_about_an_ignore_value_no_mask_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images, labels = write_blob_pairs(tmp_path / "data", count=5, size=32)
    check = ["check", "--images", str(images), "--labels", str(labels), "--ignore-value"]
    assert main([*check, "7"]) == 0  # 0/255 masks: 7 is nowhere
    assert "--ignore-value 7 appears in no mask" in capsys.readouterr().out
    for name in ("3.png", "4.png"):  # the held-out block: nothing labelled
        Image.fromarray(np.full((32, 32), UNLABELLED, np.uint8)).save(labels / name)
    assert main([*check, str(UNLABELLED)]) == 2
    assert "the held-out block (the last 1 of 5 images) holds no labelled pixel" in capsys.readouterr().out
    for name in ("0.png", "1.png", "2.png"):
        Image.fromarray(np.full((32, 32), UNLABELLED, np.uint8)).save(labels / name)
    assert main([*check, str(UNLABELLED)]) == 2
    assert "every mask holds only the --ignore-value 128" in capsys.readouterr().out


def test_fine_tuning_keeps_the_runs_unlabelled_value_and_classes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from unetkit.data.labels import LabelEncoding
    from unetkit.train.setup import prepare_training_data

    images, labels = write_blob_pairs(tmp_path / "data", count=4, size=32)
    run = LabelEncoding((0, 255), "uint8")
    with pytest.raises(InputError, match=r"--ignore-value 255: is one of base's classes \[0, 255\]"):
        prepare_training_data(images, labels, None, None, 0.25, "percentile", run, say=lambda _: None,
                              base_run=Path("base"), ignore_value=255)
    sparse_run = LabelEncoding((0, 255), "uint8", ignore_value=UNLABELLED)
    with pytest.raises(InputError, match=r"--ignore-value 7: base marks unlabelled pixels with 128"):
        prepare_training_data(images, labels, None, None, 0.25, "percentile", sparse_run, say=lambda _: None,
                              base_run=Path("base"), ignore_value=7)


@pytest.mark.parametrize("value,expected", [((128, 128, 128), 0x808080), ("128,128,128", 0x808080), ("128", 128),
                                            (128, 128)])
def test_the_api_reads_the_ignore_value_as_the_cli_does(value: object, expected: int) -> None:
    from unetkit.api import label_value

    assert label_value(value) == expected


def test_the_api_refuses_an_ignore_value_it_cannot_read(tmp_path: Path) -> None:
    import unetkit

    with pytest.raises(InputError, match="--ignore-value \\[1, 2\\]: give a mask value as a number"):
        unetkit.train(tmp_path, tmp_path, tmp_path / "run", epochs=1, ignore_value=[1, 2])
