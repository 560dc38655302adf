"""Per-sample noise from CPU generators: a seed gives the same noise on every device."""

from __future__ import annotations

from typing import Sequence

import torch


def make_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]


def randn(
    shape_per_sample: Sequence[int],
    generators: Sequence[torch.Generator] | None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    batch_size: int | None = None,
) -> torch.Tensor:
    """``[B, *shape]`` standard normal noise; sample ``i`` comes from ``generators[i]``.

    Drawing on the CPU and moving the result keeps results identical across CPU, CUDA and
    MPS, and makes a batch of N equal to N single runs with the same seeds.
    """
    shape = tuple(int(s) for s in shape_per_sample)
    if generators:
        noise = torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
    else:
        noise = torch.randn((batch_size or 1, *shape), dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)
