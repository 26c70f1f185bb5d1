"""Where training runs: one place that turns a device name into a ``torch.device`` and picks autocast."""

from __future__ import annotations

import contextlib
import re
from contextlib import AbstractContextManager

import torch

#: Device names ``resolve_device`` accepts; ``cuda:N`` picks GPU N.
DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA = re.compile(r"cuda(?::(\d+))?")


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"``: the first GPU if CUDA is available, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as named.

    Asking for CUDA where there is none (or for a GPU index that does not exist) is an error rather than a
    silent fall-back to the CPU, so a run never takes hours longer than its owner expects.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = _CUDA.fullmatch(name)
    if match is None:
        raise ValueError(f"unknown device {name!r}; allowed: {', '.join(DEVICE_NAMES)}")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    index = match.group(1)
    if index is not None and int(index) >= torch.cuda.device_count():
        raise RuntimeError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(name)


def autocast(device: torch.device | str, enabled: bool = True) -> AbstractContextManager:
    """bf16 autocast on CUDA when ``enabled``; a no-op context on the CPU (and when disabled).

    The CPU gets no autocast because bf16 matmuls are slower than float32 on most CPUs (those without
    AMX or AVX512-BF16), and our CPU models are small enough that memory is no concern.  bf16 (not fp16)
    on CUDA needs no loss scaler: it has float32's exponent range.
    """
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
