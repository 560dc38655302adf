"""The vocoder contract: a log-mel spectrogram in, a waveform out."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from mka_core.config import StrictModel


class Vocoder(nn.Module):
    """Turns mels of the front end into audio.

    Input: ``mel`` of shape ``[B, n_mels, frames]`` in the space of mka's mel front end
    (log10 magnitude with a 1e-5 floor, see :mod:`mka_core.audio.mel`).
    Output: ``[B, frames * hop_length]`` float waveform in [-1, 1] at ``sample_rate``.

    Vocoders whose network was trained on another mel scaling convert internally, so every
    vocoder can be swapped for another behind this one signature.
    """

    config_class: ClassVar[type[StrictModel]]
    #: Whether the vocoder has learned weights to save (Griffin-Lim has none).
    has_weights: ClassVar[bool] = True

    def __init__(self, config: StrictModel) -> None:
        super().__init__()
        self.config = config

    @property
    def sample_rate(self) -> int:
        return int(getattr(self.config, "sample_rate", 16000))

    @property
    def hop_length(self) -> int:
        return int(getattr(self.config, "hop_length", 256))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
