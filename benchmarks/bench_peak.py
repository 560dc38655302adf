"""The machine's matmul peak in GFLOP/s (float32 and bfloat16): the floors' denominator.

Square matmuls of a few sizes, best time of several; the best rate over sizes is the peak.
On a CPU without bfloat16 instructions torch's bfloat16 matmul is emulated, and the row says
so: there the bfloat16 floor of a model is taken from the faster float32 kernel, which is what
mka runs when bfloat16 is requested on such a CPU (see mka_core/models/precision.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.common import Context, Row, cpu_has_native_bf16, standalone, time_call

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def matmul_peak(ctx: Context, dtype: torch.dtype) -> tuple[float, int]:
    """(best GFLOP/s, size at which it was reached)."""
    # Large squares reach the kernel's best rate (on a 2-core CPU n=1024 gives ~25 % less than 4096).
    sizes = [1024, 2048, 4096] if ctx.device.type == "cpu" else [4096, 8192]
    if ctx.quick:
        sizes = [2048] if ctx.device.type == "cpu" else [8192]
    if dtype == torch.bfloat16 and ctx.device.type == "cpu" and not cpu_has_native_bf16():
        # Emulated bfloat16 runs at a small fraction of the float32 rate on one thread: one small
        # size shows that rate without spending minutes on it (mka runs float32 there anyway).
        sizes = [512]
    best, best_n = 0.0, sizes[0]
    for n in sizes:
        gen = torch.Generator().manual_seed(n)
        a = torch.randn(n, n, generator=gen).to(ctx.device, dtype)
        b = torch.randn(n, n, generator=gen).to(ctx.device, dtype)
        inner = 1 if ctx.device.type == "cpu" else 10
        timing = time_call(lambda: [a @ b for _ in range(inner)], ctx.device, reps=max(3, ctx.reps), warmup=2)
        rate = 2 * n**3 * inner / timing.best / 1e9
        if rate > best:
            best, best_n = rate, n
    return best, best_n


def floor_peak(ctx: Context, dtype_name: str) -> float:
    """The peak a ``dtype_name`` floor divides by (see the module docstring)."""
    if dtype_name == "bfloat16" and ctx.device.type == "cpu" and not cpu_has_native_bf16():
        return max(ctx.peaks.get("bfloat16", 0.0), ctx.peaks["float32"])
    return ctx.peaks[dtype_name]


def floor_seconds(ctx: Context, flops: float, dtype_name: str) -> float:
    return flops / (floor_peak(ctx, dtype_name) * 1e9)


def run(ctx: Context) -> list[Row]:
    rows = []
    for name, dtype in DTYPES.items():
        rate, n = matmul_peak(ctx, dtype)
        ctx.peaks[name] = rate
        note = f"best of square sizes, n={n}"
        if name == "bfloat16" and ctx.device.type == "cpu" and not cpu_has_native_bf16():
            note += "; emulated (no AVX512-BF16/AMX): bf16 floors use the float32 kernel"
        rows.append(Row("peak", "matmul peak", rate, "GFLOP/s", ctx.device_name, name, note=note))
    return rows


def main() -> None:
    standalone("Matmul peak", run, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
