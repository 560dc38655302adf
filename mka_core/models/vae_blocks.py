"""Encoder and decoder of the spectrogram VAE (the reference's ``diffusionmodules/model.py``).

Names mirror the reference checkpoints (``down.0.block.0.norm1``, ``mid.attn_1``,
``up.3.upsample.conv``, ``nin_shortcut``...). Facts kept from PITFALLS.md: every GroupNorm
has eps 1e-6; activation is swish; the encoder downsamples with a right/bottom pad of 1 and
an unpadded stride-2 conv; the decoder's ``up`` list is stored highest-resolution first but
run from the last entry; attention is single-head over all channels; no output tanh.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def vae_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """Two 3x3 convs with GroupNorm+swish; ``nin_shortcut`` (1x1) when the width changes. No time input."""

    def __init__(self, in_channels: int, out_channels: int, *, dropout: float = 0.0, norm_groups: int = 32) -> None:
        super().__init__()
        self.norm1 = vae_norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = vae_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut: nn.Module | None = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions; q, k, v, proj_out are 1x1 convs."""

    def __init__(self, channels: int, *, norm_groups: int = 32) -> None:
        super().__init__()
        self.norm = vae_norm(channels, norm_groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)

        def tokens(t: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, 1, H*W, C]
            return t.reshape(b, 1, c, h * w).transpose(2, 3)

        out = F.scaled_dot_product_attention(tokens(self.q(n)), tokens(self.k(n)), tokens(self.v(n)), scale=c**-0.5)
        out = out.transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Pad one row/column at the bottom/right, then a 3x3 stride-2 conv without padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest x2, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: ``block`` (ResnetBlocks), ``attn`` (after each block, if any), a resampler."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()

    def run_blocks(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return h


class MidBlock(nn.Module):
    def __init__(self, channels: int, *, dropout: float, norm_groups: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout=dropout, norm_groups=norm_groups)
        self.attn_1 = AttnBlock(channels, norm_groups=norm_groups)
        self.block_2 = ResnetBlock(channels, channels, dropout=dropout, norm_groups=norm_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """``[B, in_channels, H, W]`` -> ``[B, 2 * z_channels, H / f, W / f]`` (mean and log-variance)."""

    def __init__(
        self,
        *,
        in_channels: int,
        ch: int,
        ch_mult: list[int],
        num_res_blocks: int,
        z_channels: int,
        attention_levels: set[int],
        dropout: float = 0.0,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        for level, mult in enumerate(ch_mult):
            stage = Level()
            block_out = ch * mult
            for _ in range(num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, dropout=dropout, norm_groups=norm_groups))
                block_in = block_out
                if level in attention_levels:
                    stage.attn.append(AttnBlock(block_in, norm_groups=norm_groups))
            if level != len(ch_mult) - 1:
                stage.downsample = Downsample(block_in)
            self.down.append(stage)
        self.mid = MidBlock(block_in, dropout=dropout, norm_groups=norm_groups)
        self.norm_out = vae_norm(block_in, norm_groups)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage.run_blocks(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """``[B, z_channels, h, w]`` -> ``[B, out_channels, h * f, w * f]``; levels have num_res_blocks + 1 blocks."""

    def __init__(
        self,
        *,
        out_channels: int,
        ch: int,
        ch_mult: list[int],
        num_res_blocks: int,
        z_channels: int,
        attention_levels: set[int],
        dropout: float = 0.0,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = MidBlock(block_in, dropout=dropout, norm_groups=norm_groups)
        stages: list[Level] = []
        for level in reversed(range(len(ch_mult))):
            stage = Level()
            block_out = ch * ch_mult[level]
            for _ in range(num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, dropout=dropout, norm_groups=norm_groups))
                block_in = block_out
                if level in attention_levels:
                    stage.attn.append(AttnBlock(block_in, norm_groups=norm_groups))
            if level != 0:
                stage.upsample = Upsample(block_in)
            stages.append(stage)
        # Stored highest resolution first (up.0 = ch channels), as in the reference checkpoints.
        self.up = nn.ModuleList(reversed(stages))
        self.norm_out = vae_norm(block_in, norm_groups)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            h = stage.run_blocks(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
