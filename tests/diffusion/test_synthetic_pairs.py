"""`unetkit train --synthetic RUN`: generated pairs join the training patches in the asked share."""

import json

import pytest
import torch

from unetkit.cli import main
from unetkit.data.dataset import PatchSampler, TensorPairs
from unetkit.diffusion.training import DiffusionConfig, train_diffusion
from unetkit.errors import InputError
from unetkit.train.synthetic_pairs import deformed_label_patches


def _pairs(prefix: str, count: int, size: int, value: int) -> TensorPairs:
    return TensorPairs([f"{prefix}-{i}" for i in range(count)], [torch.zeros(1, size, size)] * count,
                       [torch.full((size, size), value, dtype=torch.uint8)] * count)


@pytest.mark.parametrize("share", [0.0, 0.25, 0.6])
def test_sampler_draws_the_asked_share_of_synthetic_patches(share):
    sampler = PatchSampler(_pairs("real", 4, 32, 0), 16, 50, torch.Generator().manual_seed(0),
                           synthetic=_pairs("synthetic", 8, 16, 1), synthetic_share=share)
    steps_real_only = PatchSampler(_pairs("real", 4, 32, 0), 16, 50, torch.Generator().manual_seed(0)).steps_per_epoch()
    assert sampler.steps_per_epoch() == steps_real_only  # an epoch still means the real pixels
    sampler.start_epoch()
    batches = [sampler.batch(0) for _ in range(40)]
    names = [name for batch in batches for name in batch.names]
    synthetic = sum(name.startswith("synthetic") for name in names) / len(names)
    assert synthetic == pytest.approx(share, abs=0.03)
    for batch in batches:  # each patch keeps its own label
        is_synthetic = torch.tensor([name.startswith("synthetic") for name in batch.names])
        assert torch.equal(batch.labels.flatten(1).amax(1).bool(), is_synthetic)


def test_deformed_label_patches_keep_the_label_values_and_vary():
    label = torch.zeros(64, 64, dtype=torch.uint8)
    label[::8] = 1
    patches = deformed_label_patches([label], 6, 32, torch.Generator().manual_seed(0))
    assert patches.shape == (6, 32, 32)
    assert set(patches.unique().tolist()) <= {0, 1}
    assert not torch.equal(patches[0], patches[1])
    assert patches.float().mean() == pytest.approx(1 / 8, abs=0.06)  # deformation moves lines, does not erase them


def test_train_with_synthetic_pairs_records_them_and_an_unconditional_run_is_refused(toy_data, tmp_path, capsys):
    images, labels = toy_data
    config = DiffusionConfig(size=16, base_width=8, batch_size=4, steps=2, budget_s=None, timesteps=20)
    train_diffusion(images, labels, tmp_path / "cond", config, progress=False, say=lambda _: None)
    argv = ["train", "--images", str(images), "--labels", str(labels), "--epochs", "1", "--width", "8", "--depth", "2",
            "--patch-size", "16", "--batch-size", "4", "--quiet", "--synthetic-count", "4", "--synthetic-fraction", "0.5"]
    assert main([*argv, "--out", str(tmp_path / "seg"), "--synthetic", str(tmp_path / "cond")]) == 0
    record = json.loads((tmp_path / "seg" / "run.json").read_text())
    assert record["config"]["synthetic"] == str(tmp_path / "cond") and record["config"]["synthetic_fraction"] == 0.5
    assert "synthetic pairs: 4 of 16 x 16" in capsys.readouterr().out

    train_diffusion(images, None, tmp_path / "uncond", config, progress=False, say=lambda _: None)
    assert main([*argv, "--out", str(tmp_path / "seg2"), "--synthetic", str(tmp_path / "uncond")]) == 2
    assert "trained without labels" in capsys.readouterr().err
    with pytest.raises(InputError):
        PatchSampler(_pairs("real", 2, 32, 0), None, 2, torch.Generator(), synthetic=_pairs("s", 2, 32, 1), synthetic_share=0.5)
