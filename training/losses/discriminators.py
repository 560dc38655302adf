"""Discriminators for the spectrogram VAE's adversarial loss.

``PatchDiscriminator``: the PatchGAN of the latent-diffusion autoencoders (4x4 convolutions,
stride 2, widths doubling up to 8x, BatchNorm, LeakyReLU 0.2), one logit per patch of the mel.

``MultiWindowDiscriminator``: the paper's option. Several small patch discriminators, each
looking at random time windows of a different length (short windows judge fine texture, long
ones judge structure over time); their patch logits are concatenated.
"""

from __future__ import annotations

import torch
from torch import nn


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class PatchDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 1, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < layers else 1
            blocks += [nn.Conv2d(width * prev, width * mult, 4, stride, 1, bias=False),
                       nn.BatchNorm2d(width * mult), nn.LeakyReLU(0.2, True)]
        blocks.append(nn.Conv2d(width * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*blocks)
        self.apply(_init_weights)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.main(mel)


class MultiWindowDiscriminator(nn.Module):
    """One patch discriminator per window length (in mel frames); random windows per call."""

    def __init__(self, in_channels: int = 1, width: int = 32, layers: int = 2,
                 windows: tuple[int, ...] = (32, 64, 128)) -> None:
        super().__init__()
        self.windows = tuple(int(w) for w in windows)
        self.discs = nn.ModuleList(PatchDiscriminator(in_channels, width, layers) for _ in self.windows)

    def forward(self, mel: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        frames = mel.shape[-1]
        logits = []
        for window, disc in zip(self.windows, self.discs):
            size = min(window, frames)
            start = int(torch.randint(0, frames - size + 1, (1,), generator=generator)) if frames > size else 0
            logits.append(disc(mel[..., start:start + size]).flatten(1))
        return torch.cat(logits, dim=1)
