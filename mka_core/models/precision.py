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


def precision_warnings(device: torch.device, requested: torch.dtype, running: torch.dtype) -> list[str]:
    """What a user should hear about the precision a pipeline runs in (one sentence each).

    * bfloat16 requested on a CPU that only emulates it: it runs float32 instead;
    * float16 on a CPU: PyTorch's CPU float16 kernels are much slower than float32 (about 10x
      for mka's U-Net on 2 cores), and float16 saves nothing a CPU needs.
    """
    warnings = []
    if device.type == "cpu" and requested == torch.bfloat16 and running == torch.float32:
        warnings.append(
            "bfloat16 was requested, but this CPU has no bfloat16 instructions, so mka runs float32 here "
            f"(3-5x faster than emulated bfloat16; {FORCE_ENV}=1 forces bfloat16)."
        )
    if device.type == "cpu" and running == torch.float16:
        warnings.append(
            "float16 on a CPU is much slower than float32 (about 10x for the U-Net: CPUs have no fast float16 "
            "kernels); use --dtype float32 on the CPU and keep float16 for GPUs."
        )
    return warnings
