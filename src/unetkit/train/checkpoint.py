"""Checkpoints as data, never code: safetensors for tensors, JSON for everything else.

Every file is written to a temporary name in the same folder, fsynced and then
renamed over the old one, so an interrupted save leaves the previous
checkpoint intact. The resume state is one safetensors file whose header
carries the JSON part (step, epoch, best score, optimiser hyper-parameters),
so tensors and counters can never disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, load_file, save_file

from unetkit.data.io import write_atomic
from unetkit.errors import InputError

WEIGHTS_FILE = "model.safetensors"
RESUME_DIR = "last"
RESUME_FILE = "state.safetensors"


CHECKSUM_KEY = "unetkit_sha256"  # of the tensors' names and bytes, in the header: a damaged file predicted all-0 masks


def tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors in name order: their names, dtypes, shapes and raw bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Atomically write tensors with a JSON metadata header."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {"unetkit": json.dumps(metadata), CHECKSUM_KEY: tensor_checksum(tensors)}

    def write(tmp: Path) -> None:
        try:
            save_file(tensors, str(tmp), metadata=header)
        except SafetensorError as exc:  # its disk errors are not OSErrors: make them one, which write_atomic reports
            raise _as_os_error(exc) from None

    write_atomic(path, write)


def _as_os_error(exc: SafetensorError) -> OSError:
    """safetensors wraps the system's error in text: the errno back, when it is there."""
    found = re.search(r"code: (\d+)|os error (\d+)", str(exc))  # "Os { code: 28, ... }" or "(os error 13)"
    code = int(found.group(1) or found.group(2)) if found else None
    return OSError(code, os.strerror(code)) if code is not None else OSError(str(exc))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read tensors and the JSON metadata; pickle files are refused."""
    path = Path(path)
    if path.suffix in (".pt", ".pth", ".ckpt", ".pkl"):
        raise InputError(f"{path}: pickle checkpoints can run code and are not loaded; use a unetkit run (safetensors)")
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint; check the run folder")
    try:
        tensors, header = _read_safetensors(path)
        metadata = json.loads(header.get("unetkit", "{}"))
    except PermissionError as exc:  # not damage: "train again" would throw away a good run (audit)
        raise InputError(f"{path}: cannot be read ({exc.strerror}); give your user read access to it "
                         "(chmod u+r), the file itself may be intact") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: corrupt checkpoint ({exc}); train again or restore the file") from None
    if CHECKSUM_KEY in header and header[CHECKSUM_KEY] != tensor_checksum(tensors):  # files from before have none
        raise InputError(f"{path}: corrupt checkpoint (its tensors differ from the checksum saved with them); restore "
                         "the file or train again")
    return tensors, metadata


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors and metadata. safetensors refuses a path that is not UTF-8 (a folder named in
    Latin-1 on an old share, which Python holds with surrogates), calling the checkpoint corrupt: such a file's
    bytes are read here and parsed by safetensors from memory (weights are megabytes)."""
    with open(path, "rb"):  # a file without read permission: Python's PermissionError, where safetensors said
        pass              # "No such file or directory"
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        data = Path(path).read_bytes()
        length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + length]).get("__metadata__") or {}
        return load(data), header
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata() or {}
    return load_file(str(path)), header


def remove_partial_writes(run_dir: Path) -> list[Path]:
    """Delete what saves killed mid-write left: temporary files (".NAME.tmpPID" of write_atomic, ".tmpXXXX" of
    safetensors) in the run folder and its resume folder. The files they were replacing are intact."""
    removed = []
    for folder in (Path(run_dir), Path(run_dir) / RESUME_DIR):
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and path.name.startswith(".") and ".tmp" in path.name:
                    path.unlink(missing_ok=True)
                    removed.append(path)
    return removed


def save_weights(path: Path, model: torch.nn.Module, metadata: dict[str, Any]) -> None:
    save_tensors(path, model.state_dict(), metadata)


def check_fit(path: Path, tensors: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    """The saved tensors have the network's names and shapes, or one line naming the file: load_state_dict's
    RuntimeError is a traceback of every mismatched layer."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected else f"shape of {wrong[:3]}"
        raise InputError(f"{path}: weights do not fit the model in run.json ({detail}); the run folder is inconsistent")


def load_weights(path: Path, model: torch.nn.Module) -> dict[str, Any]:
    """Load weights into `model`, checking names and shapes first; returns the metadata."""
    tensors, metadata = load_tensors(path)
    check_fit(path, tensors, model)
    damaged = next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if damaged is not None:  # a run saves only finite weights (the finite-loss guard): this file was changed since
        raise InputError(f"{path}: holds non-finite weights ({damaged}); the file is damaged: restore it or train again")
    model.load_state_dict(tensors)
    return metadata


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state_dict into tensors and JSON-able values."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            name = f"optim.{index}.{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value
            else:
                scalars[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    items = [(k, v) for k, v in tensors.items() if k.startswith("optim.")] + list(info["scalars"].items())
    for name, value in items:
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": info["param_groups"]}


def save_resume_state(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: dict[str, torch.Tensor],
    counters: dict[str, Any],
    ema: torch.nn.Module | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Everything needed to continue: weights, optimiser, RNG states, counters, the weight average and the fp16
    loss scale (a fresh scale would overflow the first steps after a resume), in one atomic file."""
    folder = Path(run_dir) / RESUME_DIR
    folder.mkdir(exist_ok=True)
    optim_tensors, optim_info = _flatten_optimizer(optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(optim_tensors)
    tensors.update({f"rng.{k}": v for k, v in rng.items()})
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    scale = scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
    save_tensors(folder / RESUME_FILE, tensors, {"counters": counters, "optimizer": optim_info, "grad_scaler": scale})


def load_resume_state(
    run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ema: torch.nn.Module | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore model, optimiser (weight average, loss scale) in place; return the RNG states and the counters."""
    path = Path(run_dir) / RESUME_DIR / RESUME_FILE
    if not path.is_file():
        raise InputError(f"{run_dir}: has no resume state ({RESUME_DIR}/{RESUME_FILE}); it stopped before its first epoch ended")
    tensors, metadata = load_tensors(path)
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    check_fit(path, weights, model)
    model.load_state_dict(weights)
    optimizer.load_state_dict(_unflatten_optimizer(tensors, metadata["optimizer"]))
    if ema is not None:
        averaged = {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
        if not averaged:
            raise InputError(f"{path}: holds no weight average but the run uses --ema; resume with the run's own settings")
        check_fit(path, averaged, ema)
        ema.load_state_dict(averaged)
    if scaler is not None and scaler.is_enabled() and metadata.get("grad_scaler"):
        scaler.load_state_dict(metadata["grad_scaler"])
    rng = {k[len("rng.") :]: v for k, v in tensors.items() if k.startswith("rng.")}
    return rng, metadata["counters"]
