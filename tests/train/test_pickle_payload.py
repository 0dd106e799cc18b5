"""A crafted pickle checkpoint never runs its payload: not as weights, not as resume state, not under a .pt name."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from conftest import write_blob_pairs

from unetkit.cli import main
from unetkit.config import TrainConfig
from unetkit.train.start import train


class Payload:
    """Unpickling this creates `marker`: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.marker, "w"))


def plain_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"state_dict": Payload(marker)}))


def torch_pickle(path: Path, marker: Path) -> None:
    """The zip format of torch.save, as a .pt/.pth from another tool would be."""
    torch.save({"weight": torch.zeros(2), "evil": Payload(marker)}, path)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pickle")
    write_blob_pairs(root)
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=16, epochs=1, budget_s=None, device="cpu")
    train(root / "image", root / "label", root / "run", config, progress=False, say=lambda _: None)
    return root


@pytest.mark.parametrize("writer", [plain_pickle, torch_pickle])
@pytest.mark.parametrize("target", ["model.safetensors", "last/state.safetensors"])
def test_pickle_in_place_of_a_checkpoint_is_refused_without_running(
    tiny_run: Path, tmp_path: Path, writer, target: str, capsys: pytest.CaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("run.json", "model.safetensors"):
        (run / name).write_bytes((tiny_run / "run" / name).read_bytes())
    (run / "last").mkdir()
    (run / "last" / "state.safetensors").write_bytes((tiny_run / "run" / "last" / "state.safetensors").read_bytes())
    marker = tmp_path / "payload-ran"
    writer(run / target, marker)
    if target == "model.safetensors":
        code = main(["predict", str(run), str(tiny_run / "image"), "--out", str(tmp_path / "pred"), "--quiet"])
    else:
        code = main(["train", "--resume", str(run), "--epochs", "99", "--quiet"])  # finished: more epochs to resume
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and target.split("/")[-1] in err[0], err
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".pkl"])
def test_pickle_named_as_such_is_refused_without_running(tmp_path: Path, suffix: str) -> None:
    from unetkit.train.checkpoint import load_tensors
    from unetkit.errors import InputError

    marker = tmp_path / "payload-ran"
    torch_pickle(tmp_path / f"model{suffix}", marker)
    with pytest.raises(InputError, match="pickle"):
        load_tensors(tmp_path / f"model{suffix}")
    assert not marker.exists()


def test_the_payload_really_runs_when_unpickled(tmp_path: Path) -> None:
    """The control: the crafted files are live, so the tests above would notice a pickle load."""
    marker = tmp_path / "payload-ran"
    plain_pickle(tmp_path / "a.pkl", marker)
    pickle.loads((tmp_path / "a.pkl").read_bytes())
    assert marker.exists()
    marker.unlink()
    torch_pickle(tmp_path / "b.pt", marker)
    torch.load(tmp_path / "b.pt", weights_only=False)
    assert marker.exists()
