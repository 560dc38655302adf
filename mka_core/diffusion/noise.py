"""Per-sample noise from CPU generators: a seed gives the same noise on every device.

Each sample draws from its own ``torch.Generator`` on the CPU, in float32, and the result is
then moved to the target device and dtype. So a batch of N equals N single runs with the same
seeds, and CPU, CUDA and MPS see bit-identical noise.
"""

from __future__ import annotations

from typing import Sequence

import torch


def make_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One seeded CPU generator per sample."""
    return [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]


def randn(
    shape_per_sample: Sequence[int],
    generators: Sequence[torch.Generator] | None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    batch_size: int | None = None,
) -> torch.Tensor:
    """``[B, *shape_per_sample]`` standard normal noise; sample ``i`` comes from ``generators[i]``.

    Without generators the CPU's global generator draws ``batch_size`` (default 1) samples at
    once, which is what ``torch.manual_seed(s); torch.randn(B, ...)`` gives.
    """
    shape = tuple(int(s) for s in shape_per_sample)
    if generators:
        if batch_size is not None and batch_size != len(generators):
            raise ValueError(f"{len(generators)} generators for a batch of {batch_size}; give one generator per sample")
        noise = torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
    else:
        noise = torch.randn((batch_size or 1, *shape), dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)
