"""Snake-family periodic activations (BigVGAN), elementwise on ``[B, C, ...]``."""

from __future__ import annotations

import torch
from torch import nn

#: Keeps 1/magnitude finite when a learned magnitude reaches 0 (value of the reference).
_EPS = 1e-9


def _snake(x: torch.Tensor, frequency: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """``x + 1 / (magnitude + eps) * sin(x * frequency)^2``, parameters shaped to broadcast."""
    inv_magnitude = 1.0 / (magnitude + _EPS)
    if torch.is_grad_enabled():
        wave = torch.sin(x * frequency)
        return torch.addcmul(x, wave * wave, inv_magnitude)
    # Inference: one buffer reused in place. This runs at twice the audio rate on every
    # channel, so each saved allocation and pass over memory counts.
    wave = x * frequency
    wave.sin_()
    wave.mul_(wave)
    return torch.addcmul(x, wave, inv_magnitude, out=wave)


def _channel_shape(x: torch.Tensor) -> tuple[int, ...]:
    """Shape that broadcasts a ``[C]`` parameter over axis 1 of ``x``."""
    return (-1,) + (1,) * (x.dim() - 2)


class SnakeBeta(nn.Module):
    """``x + 1 / (beta + eps) * sin(x * alpha)^2`` with one ``alpha`` and ``beta`` per channel.

    ``alpha`` sets the frequency and ``beta`` the magnitude of the periodic part. With
    ``logscale`` (the reference 16 kHz release) both are stored as logarithms and
    exponentiated in the forward pass; they then start at 0 (i.e. 1), otherwise at 1.
    """

    def __init__(self, channels: int, logscale: bool = True) -> None:
        super().__init__()
        self.logscale = logscale
        init = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = _channel_shape(x)
        alpha, beta = self.alpha.view(shape), self.beta.view(shape)
        if self.logscale:
            alpha, beta = alpha.exp(), beta.exp()
        return _snake(x, alpha, beta)


class Snake(nn.Module):
    """``x + 1 / (alpha + eps) * sin(x * alpha)^2``: one parameter sets frequency and magnitude."""

    def __init__(self, channels: int, logscale: bool = True) -> None:
        super().__init__()
        self.logscale = logscale
        self.alpha = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(_channel_shape(x))
        if self.logscale:
            alpha = alpha.exp()
        return _snake(x, alpha, alpha)
