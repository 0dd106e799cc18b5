"""The GPU paths (`--device cuda`, AMP) end to end: they run where a CUDA device is and are skipped elsewhere.

CI and the development machines have no GPU; a session lent one runs `pytest -m gpu`. To check these
tests themselves without a GPU, `UNETKIT_TEST_DEVICE=cpu pytest -m gpu tests/test_gpu.py` runs the same
steps on the CPU (the fp16 test needs CUDA and is skipped there).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_blob_pairs
from PIL import Image

from unetkit.cli import main
from unetkit.train.checkpoint import RESUME_FILE, load_tensors

DEVICE = os.environ.get("UNETKIT_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"),
]
TINY = ["--width", "8", "--depth", "2", "--patch-size", "32", "--batch-size", "4", "--lr", "0.01", "--quiet"]


def data(root: Path) -> Path:
    write_blob_pairs(root, 6, size=48)
    return root


def losses(run: Path) -> list[float]:
    with open(run / "log.csv") as handle:
        return [float(row["train_loss"]) for row in csv.DictReader(handle)]


def masks(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(f)) for f in sorted(folder.glob("*.png"))])


def test_a_run_trained_on_the_device_with_amp_predicts_there_and_on_the_cpu_alike(tmp_path: Path) -> None:
    pairs = data(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", str(pairs), "--out", str(run), "--epochs", "8", "--device", DEVICE, "--precision", "auto", *TINY]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and record["config"]["device"] == DEVICE
    trained = losses(run)
    assert all(math.isfinite(x) for x in trained) and trained[-1] < trained[0]
    for device in (DEVICE, "cpu"):
        assert main(["predict", str(run), str(pairs / "image"), "--out", str(tmp_path / device), "--device", device]) == 0
    # autocast (bf16 or fp16 on a GPU) against the CPU's own precision: the masks may differ only where the
    # probability sits at the threshold
    assert np.mean(masks(tmp_path / DEVICE) != masks(tmp_path / "cpu")) < 0.01


@pytest.mark.skipif(DEVICE != "cuda", reason="fp16 autocast is for GPUs")
def test_fp16_training_scales_its_loss_and_keeps_the_scale_for_resume(tmp_path: Path) -> None:
    pairs = data(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", str(pairs), "--out", str(run), "--epochs", "4", "--device", "cuda", "--precision", "fp16", *TINY]) == 0
    assert all(math.isfinite(x) for x in losses(run))
    _, metadata = load_tensors(run / "last" / RESUME_FILE)
    assert metadata["grad_scaler"] and metadata["grad_scaler"]["scale"] > 0  # the GradScaler ran and was saved


def test_a_run_started_on_the_device_resumes_on_the_cpu(tmp_path: Path) -> None:
    pairs = data(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["train", str(pairs), "--out", str(run), "--epochs", "2", "--device", DEVICE, *TINY]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "4", "--device", "cpu", "--quiet"]) == 0
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "finished" and record["progress"]["epoch"] == 4
    assert len(losses(run)) == 4


def test_diffusion_trains_and_samples_on_the_device(tmp_path: Path) -> None:
    pairs = data(tmp_path / "data")
    run = tmp_path / "diffusion"
    assert main(["diffusion", "train", "--images", str(pairs / "image"), "--labels", str(pairs / "label"), "--out", str(run),
                 "--steps", "20", "--size", "16", "--width", "8", "--batch-size", "4", "--device", DEVICE, "--quiet"]) == 0
    assert main(["diffusion", "sample", str(run), "--labels", str(pairs / "label"), "--steps", "5", "--out",
                 str(tmp_path / "samples"), "--device", DEVICE]) == 0
    samples = [np.asarray(Image.open(tmp_path / "samples" / f"{i}.png")) for i in range(6)]
    assert all(s.shape == (48, 48) for s in samples) and len({s.tobytes() for s in samples}) == 6
