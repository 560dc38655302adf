"""BigVGAN generator: the vocoder of the released Make-An-Audio model (16 kHz, hop 256).

Structure (module names mirror the reference checkpoint, so its keys map one-to-one once
weight norm is folded, see :func:`fold_weight_norm`):

* ``conv_pre``: mel -> ``upsample_initial_channel``, kernel 7;
* per stage ``i``: ``ups.{i}.0`` (transposed conv, *no* activation before it), then the mean
  of ``len(resblock_kernel_sizes)`` AMP blocks ``resblocks.{i*K + j}``;
* ``activation_post`` (anti-aliased SnakeBeta), ``conv_post`` (-> 1 channel, kernel 7), tanh.

An AMP block runs, for each dilation ``d``: ``x = c2(a2(c1(a1(x)))) + x`` with ``c1`` dilated by
``d`` and ``c2`` undilated; ``a1``/``a2`` are ``activations.{2i}`` / ``activations.{2i+1}``.

Internally the signal runs time-major (see :mod:`channels_last`) and the anti-aliased
activations in polyphase, tiled form (see :mod:`alias_free`); outputs equal the reference
computation to float rounding (tested against a direct re-statement of it).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Mapping

import torch
from pydantic import model_validator
from torch import nn

from mka_core.config import StrictModel
from mka_core.errors import InputError
from mka_core.models.vocoders.alias_free import Activation1d
from mka_core.models.vocoders.base import Vocoder
from mka_core.models.vocoders.channels_last import (
    conv1d,
    conv_transpose1d,
    from_time_major,
    restride_weights,
    to_time_major,
)
from mka_core.models.vocoders.generator_parts import check_generator_geometry, init_generator_weights, same_padding
from mka_core.models.vocoders.snake import Snake, SnakeBeta
from mka_core.audio.mel_scaling import db_unit_from_log10
from mka_core.models.vocoders.weight_norm import load_folded_state_dict


class BigVGANConfig(StrictModel):
    """BigVGAN generator hyper-parameters (names follow the reference ``args.yml``).

    ``input_scale`` says which mel scaling the network was trained on. ``"log10"`` (family A,
    the released 16 kHz model) takes mka's log10 mel unchanged, unclamped. ``"db_unit"``
    (family B's vocoder) was trained on the [0, 1] dB mel: the log10 input is mapped by
    :func:`mka_core.audio.mel_scaling.db_unit_from_log10` (``clip(0.2 log10 + 0.8, 0, 1)``).
    """

    num_mels: int = 80
    upsample_rates: list[int] = [4, 4, 2, 2, 2, 2]
    upsample_kernel_sizes: list[int] = [8, 8, 4, 4, 4, 4]
    upsample_initial_channel: int = 1536
    resblock: Literal["1"] = "1"
    resblock_kernel_sizes: list[int] = [3, 7, 11]
    resblock_dilation_sizes: list[list[int]] = [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    activation: Literal["snakebeta", "snake"] = "snakebeta"
    snake_logscale: bool = True
    sample_rate: int = 16000
    hop_length: int = 256
    input_scale: Literal["log10", "db_unit"] = "log10"

    @model_validator(mode="after")
    def _check_geometry(self) -> "BigVGANConfig":
        check_generator_geometry(self)
        return self

    @classmethod
    def preset(cls, name: str) -> "BigVGANConfig":
        """``base``: the reference 16 kHz release; ``tiny``: same rates, 64 initial channels."""
        if name == "base":
            return cls()
        if name == "tiny":
            # Channels halve at each of the 6 stages, so 64 is the smallest width that divides.
            return cls(upsample_initial_channel=64)
        raise InputError(f"Unknown BigVGAN preset '{name}'; valid presets are 'base' and 'tiny'.")


class AMPBlock1(nn.Module):
    """Residual block of anti-aliased periodic activations and convolutions (reference type "1")."""

    def __init__(self, channels: int, kernel: int, dilations: list[int], make_activation) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=same_padding(kernel, d)) for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=same_padding(kernel)) for _ in dilations
        )
        self.activations = nn.ModuleList(Activation1d(make_activation(channels)) for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: time-major ``[B, C, 1, T]`` (see :mod:`channels_last`)."""
        for i, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2)):
            branch = conv1d(self.activations[2 * i](x), conv1)
            x = x + conv1d(self.activations[2 * i + 1](branch), conv2)
        return x


class BigVGANVocoder(Vocoder):
    """BigVGAN: log10 mel ``[B, num_mels, frames]`` -> waveform ``[B, frames * hop_length]``."""

    name: ClassVar[str] = "bigvgan"
    config_class: ClassVar[type[StrictModel]] = BigVGANConfig
    config: BigVGANConfig

    def __init__(self, config: BigVGANConfig | None = None) -> None:
        super().__init__(config or BigVGANConfig())
        cfg = self.config
        if cfg.activation == "snakebeta":
            make_activation = lambda ch: SnakeBeta(ch, logscale=cfg.snake_logscale)  # noqa: E731
        else:
            make_activation = lambda ch: Snake(ch, logscale=cfg.snake_logscale)  # noqa: E731
        width = cfg.upsample_initial_channel
        self.conv_pre = nn.Conv1d(cfg.num_mels, width, 7, padding=3)
        # ``ups.{i}`` is a one-element list in the reference, hence the ``.0`` in its keys.
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)):
            channels_in, channels_out = width // 2**i, width // 2 ** (i + 1)
            upsample = nn.ConvTranspose1d(channels_in, channels_out, kernel, rate, padding=(kernel - rate) // 2)
            self.ups.append(nn.ModuleList([upsample]))
            for res_kernel, dilations in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes):
                self.resblocks.append(AMPBlock1(channels_out, res_kernel, dilations, make_activation))
        final = width // 2 ** len(cfg.upsample_rates)
        self.activation_post = Activation1d(make_activation(final))
        self.conv_post = nn.Conv1d(final, 1, 7, padding=3)
        init_generator_weights(self.ups)
        init_generator_weights(self.resblocks)
        init_generator_weights(self.conv_post)
        restride_weights(self)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel``: ``[B, num_mels, frames]`` log10 mel -> ``[B, frames * hop_length]`` in [-1, 1]."""
        if mel.dim() != 3 or mel.shape[1] != self.config.num_mels:
            raise InputError(
                f"BigVGAN expects a mel of shape [batch, {self.config.num_mels}, frames], got {list(mel.shape)}."
            )
        if self.config.input_scale == "db_unit":
            mel = db_unit_from_log10(mel)
        per_stage = len(self.config.resblock_kernel_sizes)
        x = conv1d(to_time_major(mel), self.conv_pre)
        for i, up in enumerate(self.ups):
            x = conv_transpose1d(x, up[0])
            blocks = self.resblocks[i * per_stage : (i + 1) * per_stage]
            total = blocks[0](x)
            for block in blocks[1:]:
                total = total + block(x)
            x = total / per_stage
        x = conv1d(self.activation_post(x), self.conv_post)
        return torch.tanh(from_time_major(x)).squeeze(1)

    def load_reference_state_dict(self, state_dict: Mapping[str, Any], source: str = "BigVGAN checkpoint") -> None:
        """Load a reference BigVGAN state dict (``best_netG.pt``'s ``generator``, or the whole dict).

        Weight norm is folded (hook or parametrization spelling); every key must be consumed and
        every tensor of this module filled, else ``WeightsError``. The anti-aliasing filter
        buffers are taken from the file, as the reference's strict load does.
        """
        if "generator" in state_dict and isinstance(state_dict["generator"], Mapping):
            state_dict = state_dict["generator"]
        load_folded_state_dict(self, state_dict, source)
