"""Which device to compute on."""

from __future__ import annotations

import torch

from unetkit.errors import InputError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when PyTorch sees a GPU, else the CPU; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise InputError(f"--device {name}: unknown; use cpu, cuda or auto")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
    return torch.device(name)
