"""End to end on the real ISBI 2012 data: the stack trains, the test sections predict to 0/255 masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unetkit.cli import main
from unetkit.data.io import read_pages

pytestmark = [pytest.mark.isbi, pytest.mark.slow]


def test_train_one_epoch_on_the_stack_then_predict_the_test_sections(isbi: Path, tmp_path: Path) -> None:
    run, pred = tmp_path / "run", tmp_path / "pred"
    assert main(["train", "--images", str(isbi / "train-volume.tif"), "--labels", str(isbi / "train-labels.tif"),
                 "--out", str(run), "--epochs", "1", "--quiet"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["classes"]["values"] == [0, 255]
    assert record["data"]["val"] == [f"train-volume[{i}]" for i in range(24, 30)]  # the last block is held out
    for name in ("model.safetensors", "log.csv", "curves.png", "last/state.safetensors"):
        assert (run / name).is_file(), name

    assert main(["predict", str(run), str(isbi / "test" / "image"), "--out", str(pred), "--quiet"]) == 0
    masks = sorted(pred.glob("*.png"))
    assert sorted(p.stem for p in masks) == sorted(str(i) for i in range(30))
    values: set[int] = set()
    for mask in masks:
        array = read_pages(mask, labels=True)[0][0]
        assert array.shape == (512, 512) and array.dtype == np.uint8
        values |= set(np.unique(array).tolist())
    assert values == {0, 255}  # both classes predicted, written in the labels' encoding
    membrane = np.mean([np.mean(read_pages(m, labels=True)[0][0] == 0) for m in masks])
    assert 0.05 < membrane < 0.6  # one epoch already finds membranes (about 22 % of pixels)
