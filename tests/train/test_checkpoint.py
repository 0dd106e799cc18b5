"""Checkpoints: safetensors + JSON, atomic, checked against the model; pickles refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unetkit.errors import InputError
from unetkit.models import build_model
from unetkit.train.checkpoint import (
    load_resume_state,
    load_tensors,
    load_weights,
    save_resume_state,
    save_tensors,
    save_weights,
)


def tiny() -> torch.nn.Module:
    return build_model("unet", base_width=4, depth=2)


def test_weights_round_trip_exactly(tmp_path: Path) -> None:
    source, target = tiny(), tiny()
    save_weights(tmp_path / "w.safetensors", source, {"epoch": 3})
    metadata = load_weights(tmp_path / "w.safetensors", target)
    assert metadata == {"epoch": 3}
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), name


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    save_weights(tmp_path / "w.safetensors", tiny(), {})
    other = build_model("unet", base_width=8, depth=2)
    with pytest.raises(InputError, match="do not fit"):
        load_weights(tmp_path / "w.safetensors", other)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_pickle_files_are_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    torch.save(tiny().state_dict(), path)
    with pytest.raises(InputError, match="pickle"):
        load_tensors(path)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, tiny(), {})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="corrupt"):
        load_weights(path, tiny())


def test_failed_save_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save_tensors(path, {"a": torch.ones(3)}, {"v": 1})
    with pytest.raises(Exception):
        save_tensors(path, {"a": torch.ones(3), "b": "not a tensor"}, {"v": 2})  # type: ignore[dict-item]
    tensors, metadata = load_tensors(path)
    assert metadata == {"v": 1} and torch.equal(tensors["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temporary left behind


def test_resume_state_restores_model_optimizer_and_rng(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 16, 16)).sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(5)
    save_resume_state(tmp_path, model, optimizer, {"sampler": generator.get_state()}, {"step": 7})

    restored = tiny()
    restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=1e-3)
    rng, counters = load_resume_state(tmp_path, restored, restored_optimizer)
    assert counters == {"step": 7}
    assert torch.equal(rng["sampler"], generator.get_state())
    for a, b in zip(model.state_dict().values(), restored.state_dict().values()):
        assert torch.equal(a, b)
    # one more identical step from both gives identical weights: the optimiser state came back whole
    for m, o in ((model, optimizer), (restored, restored_optimizer)):
        torch.manual_seed(1)
        o.zero_grad()
        m(torch.randn(2, 1, 16, 16)).sum().backward()
        o.step()
    for a, b in zip(model.parameters(), restored.parameters()):
        assert torch.equal(a, b)


def test_resume_state_keeps_the_fp16_loss_scale(tmp_path: Path) -> None:
    """A GPU fp16 run's scale has shrunk after overflows; a resume restarting at 2**16 would skip steps again."""
    model = tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    scaler.scale(torch.tensor(1.0))  # the scale exists once a loss was scaled
    scaler.update(new_scale=512.0)
    save_resume_state(tmp_path, model, optimizer, {}, {"step": 1}, scaler=scaler)
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    load_resume_state(tmp_path, tiny(), torch.optim.AdamW(tiny().parameters(), lr=1e-3), scaler=fresh)
    assert fresh.get_scale() == 512.0
    off = torch.amp.GradScaler("cpu", enabled=False)  # bf16 and fp32 runs have no scale to keep
    save_resume_state(tmp_path, model, optimizer, {}, {"step": 1}, scaler=off)
    load_resume_state(tmp_path, tiny(), torch.optim.AdamW(tiny().parameters(), lr=1e-3), scaler=off)


def test_a_flipped_byte_in_the_tensors_is_caught_by_the_checksum(tmp_path: Path) -> None:
    """2 kB overwritten inside model.safetensors' tensor data loaded fine and predicted all-0 masks (audit)."""
    from unetkit.train.checkpoint import load_tensors, save_tensors

    path = tmp_path / "w.safetensors"
    save_tensors(path, {"a": torch.arange(1000, dtype=torch.float32), "b": torch.ones(3, dtype=torch.bfloat16)}, {"k": 1})
    tensors, metadata = load_tensors(path)
    assert metadata == {"k": 1} and tensors["a"][999] == 999
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # one bit in the tensor bytes (the header is at the start)
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum"):
        load_tensors(path)


def test_a_resume_state_of_another_network_is_one_clear_error(tmp_path: Path) -> None:
    """last/state.safetensors of a width-16 run in a width-8 run (two trains into one folder) gave a traceback of
    every mismatched layer from load_state_dict, exit 1 (audit)."""
    model = tiny()
    save_resume_state(tmp_path, model, torch.optim.AdamW(model.parameters()), {}, {"step": 1})
    other = build_model("unet", base_width=8, depth=2)
    with pytest.raises(InputError, match=r"state.safetensors: weights do not fit the model in run.json \(shape of"):
        load_resume_state(tmp_path, other, torch.optim.AdamW(other.parameters()))


@pytest.mark.parametrize("text, code", [("Io error: Os { code: 28, kind: StorageFull }", 28),
                                        ("Permission denied (os error 13)", 13), ("something else", None)])
def test_safetensors_disk_errors_keep_their_errno(text: str, code: int | None) -> None:
    """'(os error 13)' was not recognised: a read-only run folder got no errno, hence no fix in the message (audit)."""
    from safetensors import SafetensorError

    from unetkit.train.checkpoint import _as_os_error

    assert _as_os_error(SafetensorError(text)).errno == code


def test_an_unreadable_checkpoint_is_a_permission_problem_not_damage(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """chmod 000 model.safetensors was called a corrupt checkpoint ("No such file or directory"), with the advice
    to train again (audit). As root every file is readable, so the refusal of the system is stood in for."""
    import builtins

    path = tmp_path / "w.safetensors"
    save_weights(path, tiny(), {})
    real_open = builtins.open

    def refusing_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    with pytest.raises(InputError, match=r"cannot be read \(Permission denied\); give your user read access") as caught:
        load_weights(path, tiny())
    assert "corrupt" not in str(caught.value) and "train again" not in str(caught.value)
