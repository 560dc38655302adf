"""Which reduced precision a device can actually compute in.

A CPU without bfloat16 dot-product instructions (AVX512-BF16 or AMX) runs bfloat16 matmuls
and convolutions through emulation kernels that are 3-5x slower than its float32 kernels
(measured on a 2-core AVX-512 Xeon with torch 2.11: 58 vs 217 GFLOP/s). There a bfloat16
request is best served in float32: faster, and at least as accurate.
"""

from __future__ import annotations

import os
from functools import lru_cache

import torch

#: Set to 1 to run bfloat16 even where the CPU only emulates it (numerics tests, benchmarks).
FORCE_ENV = "MKA_CPU_BF16"


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU has bfloat16 dot-product instructions (AVX512-BF16 or AMX-BF16)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # a probe missing from this torch build
            continue
    return False


def compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The dtype to run models in when ``dtype`` is requested on ``device``.

    bfloat16 on a CPU that only emulates it becomes float32 (unless ``MKA_CPU_BF16=1``);
    everything else is returned unchanged.
    """
    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        if os.environ.get(FORCE_ENV, "") not in ("1", "true", "yes"):
            return torch.float32
    return dtype
