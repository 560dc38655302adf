"""Device and dtype selection: never hard-code CUDA."""

from __future__ import annotations

import torch

from mka_core.errors import InputError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; explicit names are checked."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"Unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"Device '{name}' was requested but CUDA is not available here; use --device auto or cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"Device '{name}' does not exist: this machine has {torch.cuda.device_count()} CUDA device(s).")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("Device 'mps' was requested but Apple MPS is not available here; use --device auto or cpu.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"Unsupported device '{name}'; use auto, cpu, cuda, cuda:N or mps.")
    return device


def resolve_dtype(name: str | torch.dtype | None = "float32") -> torch.dtype:
    if isinstance(name, torch.dtype):
        if name not in DTYPES.values():
            raise InputError(f"Unsupported dtype {name}; use float32, bfloat16 or float16.")
        return name
    key = (name or "float32").strip().lower()
    if key not in DTYPES:
        raise InputError(f"Unknown dtype '{name}'; use float32, bfloat16 or float16.")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
