"""Building blocks of the latent diffusion U-Net: time embedding, ResBlock, resampling.

Module and parameter names follow the reference checkpoints (``in_layers.2``,
``emb_layers.1``, ``out_layers.3``, ``skip_connection``, ``op``, ``conv``) so that a
converted state dict loads without renaming. The numerical details (cosine-first time
embedding, GroupNorm in float32 with eps 1e-5, zero-initialised last conv) are the ones
listed in ``shared/reference/PITFALLS.md``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos, sin]`` of DDPM step indices, shape ``[B, dim]``, float32.

    ``freqs[i] = exp(-ln(max_period) * i / half)`` for ``i < half = dim // 2``; the divisor is
    ``half`` (not ``half - 1``) and the cosine half comes first, as in the reference U-Net.
    The operation order mirrors the reference so the float32 result is bit-identical.
    """
    half = dim // 2
    exponent = torch.arange(start=0, end=half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(-math.log(max_period) * exponent / half)
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm evaluated in float32 and cast back, so fp16/bf16 runs normalise like fp32 ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero all parameters of ``module`` (the reference's ``zero_module``) and return it."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class Downsample(nn.Module):
    """Strided 3x3 conv (stride 2, symmetric padding 1); parameter name ``op`` as in the reference."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv (``conv``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResBlock(nn.Module):
    """Residual block conditioned on the time embedding (no scale-shift).

    ``h = conv(SiLU(GN(x)))``; ``h += Linear(SiLU(emb))``; ``h = conv(Dropout(SiLU(GN(h))))``;
    ``out = skip(x) + h`` where ``skip`` is a 1x1 conv only when the channel count changes.

    ``resample`` ``"down"``/``"up"`` gives the family-B ``resblock_updown`` variant: 2x2
    average pooling / nearest x2 applied to both paths, on the h path between SiLU and the
    first conv (that block then replaces the Downsample/Upsample module).
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        *,
        dropout: float = 0.0,
        norm_groups: int = 32,
        resample: str | None = None,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(
            GroupNorm32(norm_groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, out_channels, 3, padding=1),
        )
        self.resample = resample
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(norm_groups, out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            # Zero-initialised: a fresh block is the identity on its skip path.
            zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.resample is None:
            h = self.in_layers(x)
        else:
            h = self.in_layers[1](self.in_layers[0](x))
            h = self.in_layers[2](self._resample(h))
            x = self._resample(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h
