"""A light decoder: the diffusion model's latents straight to a mel, with a few upsampling convs.

The VAE decoder of the ``base`` preset costs about as much as several U-Net steps for a 10 s
clip (mid-block attention over every latent cell, 128-512 wide residual blocks at every
level). Once a consistency student samples in one or two steps, that decode and the vocoder
are most of the work. A :class:`LightDecoder` replaces the VAE decoder at generation time:

* input: *scaled* latents ``[B, C, n_mels / f_bins, frames / f_frames]``, exactly what the
  sampler returns (so it needs no scale factor of its own);
* output: the mel ``[B, 1, n_mels, frames]`` in the VAE decoder's scaling (what the vocoder
  path of the pipeline already takes);
* body: a 3x3 input conv, then one stage per factor of two of the VAE's downsampling, each
  ``blocks`` residual conv blocks (conv-SiLU-conv, no normalisation and no attention: both
  cost time and a fully convolutional net slices freely along time) and a nearest-neighbour
  2x upsampling followed by a 3x3 conv; a 3x3 output conv. Widths halve at each stage from
  ``ch * 2**stages`` (capped at ``ch * max_mult``) down to ``ch`` at full resolution, where only
  the last upsampling conv and the output conv run (the full-resolution grid is 64x the latent
  grid, so blocks there would dominate the cost).

It is trained by ``mka train light-decoder --teacher MODEL`` to reproduce the teacher VAE
decoder's mel from the teacher's own latents (see ``training/targets/light_decoder.py`` and
docs/performance.md), saved as the optional ``light_decoder/`` component of a pipeline folder,
and chosen with ``mka generate --decoder light`` or the folder's recorded ``decoder`` default.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field, field_validator
from torch import nn

from mka_core.config import StrictModel
from mka_core.errors import InputError

PRESETS = {
    "tiny": {"ch": 16, "blocks": 1, "max_mult": 4},
    "default": {"ch": 32, "blocks": 1, "max_mult": 4},
    "base": {"ch": 64, "blocks": 2, "max_mult": 4},
}


class LightDecoderConfig(StrictModel):
    latent_channels: int = Field(4, ge=1, description="latent channels of the VAE it stands in for")
    downsampling: tuple[int, int] = Field((8, 8), description="(mel bins, mel frames) per latent cell, powers of 2")
    ch: int = Field(32, ge=1, description="width at full resolution; coarser stages are wider")
    blocks: int = Field(1, ge=0, description="residual conv blocks per stage")
    max_mult: int = Field(4, ge=1, description="the coarsest stage is at most ch * max_mult wide")

    @field_validator("downsampling")
    @classmethod
    def _powers_of_two(cls, value: tuple[int, int]) -> tuple[int, int]:
        for factor in value:
            if factor < 1 or factor & (factor - 1):
                raise ValueError(f"downsampling factors must be powers of 2, got {list(value)}")
        return value

    @classmethod
    def preset(cls, name: str, latent_channels: int = 4, downsampling: tuple[int, int] = (8, 8)) -> "LightDecoderConfig":
        if name not in PRESETS:
            raise InputError(f"Unknown light-decoder preset '{name}'; choose one of: {', '.join(PRESETS)}.")
        return cls(latent_channels=latent_channels, downsampling=downsampling, **PRESETS[name])

    @property
    def stages(self) -> int:
        return int(math.log2(max(self.downsampling)))

    def widths(self) -> list[int]:
        """Width of each stage, coarsest first, then the full-resolution width."""
        n = self.stages
        return [self.ch * min(2 ** (n - i), self.max_mult) for i in range(n)] + [self.ch]


class ResConv(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(self.act(x))))


class UpStage(nn.Module):
    """``blocks`` residual blocks at this resolution, then 2x nearest upsampling (per axis) and a conv."""

    def __init__(self, width: int, out_width: int, blocks: int, scale: tuple[int, int]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResConv(width) for _ in range(blocks)])
        self.scale = scale
        self.conv = nn.Conv2d(width, out_width, 3, padding=1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        if self.scale != (1, 1):
            x = nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")
        return self.conv(self.act(x))


class LightDecoder(nn.Module):
    """Scaled latents -> mel; see the module docstring."""

    config_class: ClassVar[type[LightDecoderConfig]] = LightDecoderConfig

    def __init__(self, config: LightDecoderConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.widths()
        bins, frames = config.downsampling
        self.conv_in = nn.Conv2d(config.latent_channels, widths[0], 3, padding=1)
        stages = []
        for i in range(config.stages):
            # An axis is upsampled while its factor is not yet reached (8 x 8: both, three times).
            scale = (2 if 2 ** i < bins else 1, 2 if 2 ** i < frames else 1)
            stages.append(UpStage(widths[i], widths[i + 1], config.blocks, scale))
        self.stages = nn.ModuleList(stages)
        self.conv_out = nn.Conv2d(widths[-1], 1, 3, padding=1)
        self.act = nn.SiLU()

    @classmethod
    def for_vae(cls, vae: nn.Module, preset: str = "default", **overrides) -> "LightDecoder":
        """A light decoder with ``vae``'s latent channels and downsampling (the VAE contract)."""
        config = LightDecoderConfig.preset(preset, vae.latent_channels, tuple(vae.downsampling))
        if overrides:
            from mka_core.errors import validation_problems

            try:
                config = LightDecoderConfig.model_validate({**config.model_dump(), **overrides})
            except ValueError as exc:
                raise InputError(f"The light decoder's model.decoder_overrides are invalid: {validation_problems(exc)}.") from None
        return cls(config)

    def fits(self, vae: nn.Module) -> str | None:
        """``None`` when this decoder takes ``vae``'s latents, else what differs (one phrase)."""
        ours = (self.config.latent_channels, tuple(self.config.downsampling))
        theirs = (int(vae.latent_channels), tuple(vae.downsampling))
        if ours == theirs:
            return None
        return (f"the light decoder takes {ours[0]}-channel latents at {ours[1][0]} x {ours[1][1]} downsampling, "
                f"the VAE makes {theirs[0]}-channel latents at {theirs[1][0]} x {theirs[1][1]}")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 4 or z.shape[1] != self.config.latent_channels:
            raise InputError(f"The light decoder takes latents [batch, {self.config.latent_channels}, rows, columns], "
                             f"got shape {list(z.shape)}.")
        x = self.conv_in(z)
        for stage in self.stages:
            x = stage(x)
        return self.conv_out(self.act(x))


__all__ = ["LightDecoder", "LightDecoderConfig", "PRESETS"]
