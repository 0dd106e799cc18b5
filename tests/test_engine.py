"""The engine: precision choices, memory layout, and that bf16 trains like fp32."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from unetkit import engine
from unetkit.config import TrainConfig
from unetkit.errors import InputError
from unetkit.models.unet import UNet, UNetConfig
from unetkit.train import trainer as trainer_module
from unetkit.train.start import train

CPU = torch.device("cpu")
HAS_BF16 = engine.cpu_bf16_support() != "none"


def test_fp32_means_no_autocast_and_unknown_precisions_are_refused() -> None:
    assert engine.autocast_dtype(CPU, "fp32") is None
    with pytest.raises(InputError, match="--precision fp8"):
        engine.autocast_dtype(CPU, "fp8")
    with pytest.raises(InputError, match="for GPUs"):
        engine.autocast_dtype(CPU, "fp16")


def test_auto_follows_the_measured_table_of_cpu_support(monkeypatch: pytest.MonkeyPatch) -> None:
    for support in ("native", "emulated", "none"):
        monkeypatch.setattr(engine, "cpu_bf16_support", lambda s=support: s)
        expected = torch.bfloat16 if support in engine.CPU_AUTO_BF16 else None
        assert engine.autocast_dtype(CPU, "auto") == expected
    with pytest.raises(InputError, match="no bfloat16 support"):
        engine.autocast_dtype(CPU, "bf16")  # support is "none" now


def test_channels_last_changes_the_layout_not_the_result() -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_channels=1, num_classes=2, base_width=4, depth=2)).eval()
    image = torch.randn(2, 1, 40, 36)
    plain = model(image)
    fast = engine.to_memory_format(model, True)
    assert fast.inc.block[0].weight.is_contiguous(memory_format=torch.channels_last)
    out = fast(engine.as_batch(image, CPU, True))
    assert torch.allclose(out, plain, atol=1e-5)


def test_configure_process_sets_one_thread_per_usable_core() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert engine.configure_process() == engine.usable_cores() == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bfloat16 support in PyTorch")
def test_bf16_and_fp32_runs_of_20_steps_reach_similar_losses(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    """Autocast keeps fp32 master weights: 20 steps in bf16 end near where 20 steps in fp32 end."""
    images, labels = toy_data
    config = TrainConfig(base_width=8, depth=2, lr=1e-2, batch_size=4, patch_size=16, epochs=4, budget_s=None,
                         augment="none", loss="ce", schedule="constant", device="cpu", val_fraction=0.2)
    losses: dict[str, list[float]] = {}
    original = trainer_module.Trainer._step
    for precision in ("fp32", "bf16"):
        recorded: list[float] = []

        def recording_step(self, *args, _into=recorded, **kwargs):  # type: ignore[no-untyped-def]
            loss = original(self, *args, **kwargs)
            _into.append(loss)
            return loss

        trainer_module.Trainer._step = recording_step
        try:
            train(images, labels, tmp_path / precision, replace(config, precision=precision),
                  progress=False, say=lambda _: None)
        finally:
            trainer_module.Trainer._step = original
        losses[precision] = recorded[:20]
    fp32, bf16 = losses["fp32"], losses["bf16"]
    assert len(fp32) == len(bf16) == 20  # 4 epochs of 5 patches batches (5 images of 32 x 32)
    assert fp32[0] == pytest.approx(bf16[0], rel=0.05)  # same weights, same batch: only rounding differs
    assert bf16[-1] < bf16[0] * 0.8  # bf16 learns
    assert abs(sum(bf16[-5:]) - sum(fp32[-5:])) / sum(fp32[-5:]) < 0.25


def test_a_gpu_that_only_emulates_bf16_computes_in_fp16_with_a_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pre-Ampere GPUs (T4, V100) emulate bf16 slowly: auto must pick fp16 there, and bf16 must be refused."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    gpu = torch.device("cuda")
    assert engine.autocast_dtype(gpu, "auto") == torch.float16
    assert engine.needs_grad_scaler(engine.autocast_dtype(gpu, "auto"), gpu)
    with pytest.raises(InputError, match="bfloat16"):
        engine.autocast_dtype(gpu, "bf16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # Ampere and later
    assert engine.autocast_dtype(gpu, "auto") == torch.bfloat16


def test_a_trained_precision_this_device_lacks_becomes_auto_for_using_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU's fp16 or bf16 run must predict on any laptop; a precision the device has is kept."""
    monkeypatch.setattr(engine, "cpu_bf16_support", lambda: "none")
    assert engine.inference_precision(CPU, "fp16") == "auto"
    assert engine.inference_precision(CPU, "bf16") == "auto"
    assert engine.inference_precision(CPU, "fp32") == "fp32"
    monkeypatch.setattr(engine, "cpu_bf16_support", lambda: "native")
    assert engine.inference_precision(CPU, "bf16") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    gpu = torch.device("cuda")  # a pre-Ampere GPU given a run trained in bf16 on a newer one
    assert engine.inference_precision(gpu, "bf16") == "auto"
    assert engine.inference_precision(gpu, "fp16") == "fp16"


def test_cuda_and_cuda_0_are_one_device() -> None:
    """torch.device("cuda") != torch.device("cuda:0"): a loaded Run was copied to the GPU again on every predict."""
    from unetkit.devices import same_device

    assert same_device(torch.device("cpu"), torch.device("cpu"))
    assert not same_device(torch.device("cpu"), torch.device("cuda"))
    assert same_device(torch.device("cuda"), torch.device("cuda:0"))  # the current GPU is cuda:0 unless set otherwise
    assert not same_device(torch.device("cuda:1"), torch.device("cuda:0"))
