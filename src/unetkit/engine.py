"""How tensors run: threads, memory layout and reduced precision, the same for training and prediction.

A CPU spends most of a U-Net step in oneDNN convolutions. They run fastest
on channels-last (NHWC) tensors, and in bfloat16 where the CPU has the
instructions, with fp32 master weights kept by autocast. A GPU gets automatic
mixed precision (bf16 if it supports it, else fp16 with a gradient scaler).
Everything here is a choice of *how* to compute, never of *what*: `fp32` and
`channels_last=False` reproduce plain PyTorch.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from functools import lru_cache
from typing import Iterator

import torch

from unetkit.errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_process() -> int:
    """Set up this process for speed once: one intra-op thread per usable core (PyTorch's default can
    count hyper-threads or ignore cgroup limits), and large freed blocks kept for reuse
    (keep_freed_memory). Returns the thread count."""
    cores = usable_cores()
    if torch.get_num_threads() != cores:
        torch.set_num_threads(cores)
    keep_freed_memory()
    return cores


def available_memory_bytes() -> int:
    """Memory the kernel says can be used without swapping (MemAvailable), 8 GiB where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            info = {line.split(":")[0]: line.split()[1] for line in handle}
        return int(info["MemAvailable"]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return 8 << 30


def keep_freed_memory() -> bool:
    """Let glibc keep large freed blocks for reuse instead of returning them to the kernel.

    A U-Net step allocates and frees the same tens-of-megabyte activations every
    step; by default each is a fresh mmap whose pages the kernel must fault in and
    zero again. Keeping them measured 6-20 % faster steps on a 2-core CPU
    (benchmarks/RESULTS.md). The cost: the process's resident memory stays at its
    peak. Linux/glibc only; elsewhere a no-op.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 31))


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            line = next((row for row in handle if row.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.split(":", 1)[-1].split())


def cpu_bf16_support() -> str:
    """'native' (AVX512-BF16 or AMX: bf16 dot products in hardware), 'emulated' (oneDNN converts on
    AVX-512) or 'none'."""
    if cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        return "native"
    mkldnn_bf16 = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if torch.backends.mkldnn.is_available() and mkldnn_bf16 is not None and mkldnn_bf16():
        return "emulated"
    return "none"


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The dtype autocast computes in, or None for plain fp32.

    'auto' means bf16 on a GPU that supports it (else fp16), bf16 on a CPU with
    bf16 support, fp32 otherwise.
    """
    if precision not in PRECISIONS:
        raise InputError(f"--precision {precision}: unknown; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if device.type == "cuda":
        if precision == "fp16":
            return torch.float16
        native = torch.cuda.is_bf16_supported(including_emulation=False)  # emulated bf16 (pre-Ampere) is slow
        if precision == "bf16" and not native:
            raise InputError("--precision bf16: this GPU has no native bfloat16 support; use --precision fp16 or auto")
        return torch.bfloat16 if native else torch.float16
    if precision == "fp16":
        raise InputError("--precision fp16: float16 is for GPUs; on a CPU use bf16, fp32 or auto")
    support = cpu_bf16_support()
    if precision == "bf16" and support == "none":
        raise InputError("--precision bf16: this CPU has no bfloat16 support in PyTorch (needs AVX-512); use --precision fp32")
    if precision == "auto" and support not in CPU_AUTO_BF16:
        return None
    return torch.bfloat16


# The kinds of CPU bf16 support on which 'auto' computes in bf16. Emulated bf16 (AVX-512 without
# AVX512-BF16/AMX) measured 3x slower than fp32 for a U-Net training step, 5x for a matmul
# (benchmarks/RESULTS.md, issue 5), so only native support qualifies.
CPU_AUTO_BF16 = frozenset({"native"})


def inference_precision(device: torch.device, trained: str) -> str:
    """The precision to run a trained network in on `device`: its own where this device has it, else 'auto'
    (a GPU's fp16 on a CPU, bf16 on a CPU or GPU without it), so a run trained elsewhere is usable here."""
    try:
        autocast_dtype(device, trained)
    except InputError:
        return "auto"
    return trained


def needs_grad_scaler(dtype: torch.dtype | None, device: torch.device) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
    return device.type == "cuda" and dtype == torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        yield


def to_memory_format(model: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    """Channels-last weights make oneDNN and cuDNN pick their NHWC kernels for the whole network."""
    return model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def as_batch(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def describe(device: torch.device, dtype: torch.dtype | None, channels_last: bool) -> str:
    """One line for the training summary: where and how the run computes."""
    if device.type == "cuda":
        where = f"cuda ({torch.cuda.get_device_name(device)})"
    else:
        where = f"cpu ({torch.get_num_threads()} threads, bf16 {cpu_bf16_support()})"
    precision = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[dtype]
    return f"{where}, {precision}, {'channels-last' if channels_last else 'NCHW'}"
