"""Instance masks (object ids 1..N on 0): refused as classes unless told, trained as objects with borders when told."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_png

from unetkit.cli import main

TINY = ["--epochs", "1", "--width", "4", "--depth", "2", "--patch-size", "16", "--batch-size", "2", "--device", "cpu",
        "--quiet"]


def _nuclei(root: Path, count: int = 4) -> tuple[Path, Path]:
    """Bright squares on dark, pairs of them touching; masks number each square 1..N (3 or 4 of them: the id sets differ)."""
    rng = np.random.default_rng(0)
    for index in range(count):
        image = rng.normal(40, 5, (32, 32))
        ids = np.zeros((32, 32), np.uint16)
        for number, (y, x) in enumerate([(2, 2), (2, 8), (18, 18), (18, 24)][: 3 + index % 2], start=1):
            ids[y : y + 6, x : x + 6] = number
        image[ids > 0] += 150
        write_png(root / "image" / f"{index}.png", np.clip(image, 0, 255).astype(np.uint8))
        write_png(root / "label" / f"{index}.png", ids)
    return root / "image", root / "label"


def test_instance_masks_are_refused_as_classes_unless_told(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A nucleus run of 40 ids trained 41 classes, said "finished", and predicted arbitrary ids (audit)."""
    images, labels = _nuclei(tmp_path / "data")
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "looks like an instance label map" in err[0] and "--mask-kind instances" in err[0], err
    assert not (tmp_path / "run").exists()
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "classes"),
                 "--mask-kind", "classes", *TINY]) == 0  # the user says the values are classes: a warning only
    assert "warning:" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "classes" / "run.json").read_text())["classes"]["values"]) > 2


def test_instance_masks_train_objects_and_borders_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images, labels = _nuclei(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(run),
                 "--mask-kind", "instances", *TINY]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["classes"]["values"] == [0, 255] and record["config"]["mask_kind"] == "instances"
    assert "instance label map" not in capsys.readouterr().out  # converted before the check: nothing to warn about
    assert main(["check", "--images", str(images), "--labels", str(labels), "--run", str(run)]) == 0  # review: its
    # own masks failed as "values 1, 2, 3 ... are not among the run's classes [0, 255]"
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert main(["predict", str(run), str(images), "--out", str(tmp_path / "pred"), "--instances", "--quiet"]) == 0
    assert (tmp_path / "pred" / "0_cells.tif").is_file()
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "sparse"),
                 "--mask-kind", "instances", "--ignore-value", "7", *TINY]) == 2
    assert "instance masks (--mask-kind instances) have no unlabelled value" in capsys.readouterr().err


def test_fine_tuning_an_instance_run_takes_instance_masks_again(tmp_path: Path) -> None:
    """--from an instance run on new instance masks failed with "values 1, 2, 3 ... are not among the run's
    classes [0, 255]" and no word of --mask-kind (review): the base run's mask kind is kept."""
    images, labels = _nuclei(tmp_path / "data")
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "run"),
                 "--mask-kind", "instances", *TINY]) == 0
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "tuned"),
                 "--from", str(tmp_path / "run"), "--epochs", "1", "--device", "cpu", "--quiet"]) == 0
    assert json.loads((tmp_path / "tuned" / "run.json").read_text())["config"]["mask_kind"] == "instances"
