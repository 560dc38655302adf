"""Pieces shared by the HiFi-GAN and BigVGAN generators: config checks, padding, init."""

from __future__ import annotations

import math
from typing import Any

from torch import nn


def check_generator_geometry(config: Any) -> None:
    """Shared HiFi-GAN / BigVGAN config checks; raises ``ValueError`` (pydantic reports it)."""
    rates, kernels = config.upsample_rates, config.upsample_kernel_sizes
    if len(rates) != len(kernels) or not rates:
        raise ValueError("upsample_rates and upsample_kernel_sizes must be non-empty and of equal length")
    for rate, kernel in zip(rates, kernels):
        # padding (k - u) // 2 gives exactly T * u samples only when k - u is even and >= 0.
        if rate < 1 or kernel < rate or (kernel - rate) % 2:
            raise ValueError(
                f"upsample kernel {kernel} does not fit rate {rate}: need kernel >= rate and even difference"
            )
    if math.prod(rates) != config.hop_length:
        raise ValueError(
            f"the product of upsample_rates ({math.prod(rates)}) must equal hop_length ({config.hop_length})"
        )
    if config.upsample_initial_channel % (2 ** len(rates)):
        raise ValueError(
            f"upsample_initial_channel ({config.upsample_initial_channel}) must be divisible by 2**{len(rates)} "
            "because channels halve at every upsampling stage"
        )
    if len(config.resblock_kernel_sizes) != len(config.resblock_dilation_sizes) or not config.resblock_kernel_sizes:
        raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes must be non-empty and of equal length")
    if any(k % 2 == 0 for k in config.resblock_kernel_sizes):
        raise ValueError("resblock kernel sizes must be odd so that the residual branch keeps the length")


def same_padding(kernel: int, dilation: int = 1) -> int:
    """Padding that keeps the length of a stride-1 conv with an odd kernel."""
    return (kernel * dilation - dilation) // 2


def init_generator_weights(module: nn.Module) -> None:
    """Small normal init (std 0.01) of the conv weights, as the reference generators do."""
    for conv in module.modules():
        if isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d)):
            nn.init.normal_(conv.weight, 0.0, 0.01)
