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


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether tensors on `a` and `b` live together: cuda and cuda:0 are one GPU (torch.device says they differ)."""
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device() if torch.cuda.is_available() else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
