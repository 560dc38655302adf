"""HiFi-GAN generator: the vocoder named in the Make-An-Audio paper.

Module names mirror the original HiFi-GAN checkpoints (``conv_pre``, ``ups.{i}``,
``resblocks.{j}.convs1.{k}`` / ``convs2.{k}`` or ``convs.{k}``, ``conv_post``), whose weights
are weight-normalised; :meth:`HiFiGANVocoder.load_reference_state_dict` folds them.

Forward: ``conv_pre``; per stage a leaky ReLU (slope 0.1), the transposed conv, and the
mean of the stage's residual blocks; then a leaky ReLU with slope 0.01 (the original uses
the library default there), ``conv_post`` and tanh. The input is mka's log10 mel as is.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Mapping

import torch
import torch.nn.functional as F
from pydantic import model_validator
from torch import nn

from mka_core.config import StrictModel
from mka_core.errors import InputError
from mka_core.models.vocoders.base import Vocoder
from mka_core.models.vocoders.channels_last import (
    conv1d,
    conv_transpose1d,
    from_time_major,
    restride_weights,
    to_time_major,
)
from mka_core.models.vocoders.generator_parts import check_generator_geometry, init_generator_weights, same_padding
from mka_core.models.vocoders.weight_norm import load_folded_state_dict

#: Slope of the leaky ReLUs inside the network.
LEAKY_SLOPE = 0.1
#: Slope of the last leaky ReLU, before ``conv_post`` (torch's default, as in the original).
FINAL_LEAKY_SLOPE = 0.01


class HiFiGANConfig(StrictModel):
    """HiFi-GAN generator hyper-parameters (names follow the original ``config_v1.json``)."""

    num_mels: int = 80
    upsample_rates: list[int] = [8, 8, 2, 2]
    upsample_kernel_sizes: list[int] = [16, 16, 4, 4]
    upsample_initial_channel: int = 512
    resblock: Literal["1", "2"] = "1"
    resblock_kernel_sizes: list[int] = [3, 7, 11]
    resblock_dilation_sizes: list[list[int]] = [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    sample_rate: int = 16000
    hop_length: int = 256

    @model_validator(mode="after")
    def _check_geometry(self) -> "HiFiGANConfig":
        check_generator_geometry(self)
        return self

    @classmethod
    def preset(cls, name: str) -> "HiFiGANConfig":
        """``v1`` (alias ``base``): HiFi-GAN V1 at 16 kHz / hop 256; ``v2``: the published V2 width
        (128 initial channels, 0.9 M parameters: the small vocoder a CPU can train); ``tiny``: 32."""
        if name in ("v1", "base"):
            return cls()
        if name == "v2":
            return cls(upsample_initial_channel=128)
        if name == "tiny":
            return cls(upsample_initial_channel=32)
        raise InputError(f"Unknown HiFi-GAN preset '{name}'; valid presets are 'v1' (alias 'base'), 'v2' and 'tiny'.")


class ResBlock1(nn.Module):
    """Per dilation ``d``: ``x = c2(lrelu(c1(lrelu(x)))) + x``, ``c1`` dilated by ``d``."""

    def __init__(self, channels: int, kernel: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=same_padding(kernel, d)) for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=same_padding(kernel)) for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2):
            branch = conv1d(F.leaky_relu(x, LEAKY_SLOPE), conv1)
            x = x + conv1d(F.leaky_relu(branch, LEAKY_SLOPE), conv2)
        return x


class ResBlock2(nn.Module):
    """Per dilation ``d``: ``x = c(lrelu(x)) + x`` (HiFi-GAN V3's lighter block)."""

    def __init__(self, channels: int, kernel: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=same_padding(kernel, d)) for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv1d(F.leaky_relu(x, LEAKY_SLOPE), conv)
        return x


class HiFiGANVocoder(Vocoder):
    """HiFi-GAN: log10 mel ``[B, num_mels, frames]`` -> waveform ``[B, frames * hop_length]``."""

    name: ClassVar[str] = "hifigan"
    config_class: ClassVar[type[StrictModel]] = HiFiGANConfig
    config: HiFiGANConfig

    def __init__(self, config: HiFiGANConfig | None = None) -> None:
        super().__init__(config or HiFiGANConfig())
        cfg = self.config
        block_class = ResBlock1 if cfg.resblock == "1" else ResBlock2
        width = cfg.upsample_initial_channel
        self.conv_pre = nn.Conv1d(cfg.num_mels, width, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)):
            channels_out = width // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(width // 2**i, channels_out, kernel, rate, padding=(kernel - rate) // 2))
            for res_kernel, dilations in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes):
                self.resblocks.append(block_class(channels_out, res_kernel, dilations))
        self.conv_post = nn.Conv1d(width // 2 ** len(cfg.upsample_rates), 1, 7, padding=3)
        init_generator_weights(self.ups)
        init_generator_weights(self.resblocks)
        init_generator_weights(self.conv_post)
        restride_weights(self)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel``: ``[B, num_mels, frames]`` log10 mel -> ``[B, frames * hop_length]`` in [-1, 1]."""
        if mel.dim() != 3 or mel.shape[1] != self.config.num_mels:
            raise InputError(
                f"HiFi-GAN expects a mel of shape [batch, {self.config.num_mels}, frames], got {list(mel.shape)}."
            )
        per_stage = len(self.config.resblock_kernel_sizes)
        x = conv1d(to_time_major(mel), self.conv_pre)
        for i, up in enumerate(self.ups):
            x = conv_transpose1d(F.leaky_relu(x, LEAKY_SLOPE), up)
            blocks = self.resblocks[i * per_stage : (i + 1) * per_stage]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / per_stage
        x = conv1d(F.leaky_relu(x, FINAL_LEAKY_SLOPE), self.conv_post)
        return torch.tanh(from_time_major(x)).squeeze(1)

    def load_reference_state_dict(self, state_dict: Mapping[str, Any], source: str = "HiFi-GAN checkpoint") -> None:
        """Load an original HiFi-GAN generator state dict (``g_*`` files' ``generator``, or the dict itself).

        Weight norm is folded (hook or parametrization spelling); every key must be consumed and
        every tensor filled, else ``WeightsError``. Checkpoints saved after ``remove_weight_norm``
        (plain ``weight`` keys) load too.
        """
        if "generator" in state_dict and isinstance(state_dict["generator"], Mapping):
            state_dict = state_dict["generator"]
        load_folded_state_dict(self, state_dict, source)
