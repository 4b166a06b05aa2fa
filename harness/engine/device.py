"""Device and numeric precision selection."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from harness.errors import BenchError

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``run.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``xpu``) as a torch device;
    a device this machine lacks is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BenchError(f"unknown device {name!r}", "use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise BenchError(f"unknown device {name!r}", "use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device {name!r} was asked for but CUDA is not available here",
                         "use --set run.device=auto (or cpu), or install a CUDA build of torch")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise BenchError(f"device {name!r} was asked for but this machine has {torch.cuda.device_count()} GPU(s)",
                         f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}, or run.device=auto")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BenchError(f"device {name!r} was asked for but MPS is not available here", "use auto or cpu")
    if device.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise BenchError(f"device {name!r} was asked for but XPU is not available here", "use auto or cpu")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """``run.precision`` for ``device``: ``auto`` is bf16 on CUDA (fp16 where bf16 is missing) and
    fp32 elsewhere (CPU bf16 kernels are slower than fp32 on many CPUs)."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise BenchError("fp16 autocast needs CUDA", "use bf16 or fp32 on the CPU")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32); reusable."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def seed_everything(seed: int) -> None:
    """Seed every generator the loop and the models draw from (HF masking uses NumPy's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
