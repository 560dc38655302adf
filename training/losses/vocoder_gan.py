"""Losses for vocoder GAN training (least-squares GAN, feature matching, mel L1).

The functions take the lists produced by :mod:`training.losses.vocoder_discriminators` and return unweighted sums;
the trainer applies the published weights, exposed here as constants:
generator loss = adversarial + ``FEATURE_MATCHING_WEIGHT`` * feature matching
+ ``MEL_WEIGHT`` * mel L1 (HiFi-GAN and BigVGAN both use 2 and 45).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mka_core.audio.mel import MelConfig, mel_filterbank

#: Weight of the feature-matching term in the generator loss (HiFi-GAN, BigVGAN).
FEATURE_MATCHING_WEIGHT = 2.0
#: Weight of the mel L1 term in the generator loss (HiFi-GAN, BigVGAN).
MEL_WEIGHT = 45.0
#: Floor before log10, as in mka's mel front end.
LOG_FLOOR = 1e-5


def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> tuple[torch.Tensor, list]:
    """LSGAN discriminator loss: ``sum_d mean((1 - D(real))^2) + mean(D(fake)^2)``.

    Returns the total and the per-discriminator terms. Pass fake logits computed from a
    detached generator output.
    """
    terms = [torch.mean((1 - real) ** 2) + torch.mean(fake**2) for real, fake in zip(real_logits, fake_logits)]
    return torch.stack(terms).sum(), terms


def generator_adversarial_loss(fake_logits: list[torch.Tensor]) -> tuple[torch.Tensor, list]:
    """LSGAN generator loss: ``sum_d mean((1 - D(fake))^2)``; returns the total and the terms."""
    terms = [torch.mean((1 - fake) ** 2) for fake in fake_logits]
    return torch.stack(terms).sum(), terms


def feature_matching_loss(real_fmaps: list[list[torch.Tensor]], fake_fmaps: list[list[torch.Tensor]]) -> torch.Tensor:
    """``sum`` over discriminators and layers of ``mean |real - fake|`` (real features are targets)."""
    terms = [
        torch.mean(torch.abs(real.detach() - fake))
        for real_layers, fake_layers in zip(real_fmaps, fake_fmaps)
        for real, fake in zip(real_layers, fake_layers)
    ]
    return torch.stack(terms).sum()


#: Default (n_fft, hop_length, win_length, n_mels): mka's front end in the middle, one finer, one coarser.
MEL_RESOLUTIONS: tuple[tuple[int, int, int, int], ...] = (
    (512, 128, 512, 40),
    (1024, 256, 1024, 80),
    (2048, 512, 2048, 160),
)


class MultiResolutionMelLoss(nn.Module):
    """Mean over resolutions of the L1 distance between log10 mels of real and generated audio.

    Each mel is computed like mka's front end (:mod:`mka_core.audio.mel`: reflect-pad
    ``(n_fft - hop) / 2``, Hann window, no centring, its Slaney filterbank, log10 with a 1e-5
    floor), except that the magnitude is ``sqrt(|z|^2 + 1e-9)`` so that its gradient stays
    finite at silent bins. With the single resolution
    ``(1024, 256, 1024, 80)`` this is HiFi-GAN's mel loss.
    """

    def __init__(
        self,
        resolutions: tuple[tuple[int, int, int, int], ...] = MEL_RESOLUTIONS,
        sample_rate: int = 16000,
        fmin: float = 0.0,
        fmax: float | None = None,
    ) -> None:
        super().__init__()
        self.resolutions = tuple(tuple(r) for r in resolutions)
        for i, (n_fft, _hop, win, n_mels) in enumerate(self.resolutions):
            self.register_buffer(f"window_{i}", torch.hann_window(win), persistent=False)
            bank = MelConfig(
                sample_rate=sample_rate, n_fft=n_fft, win_length=win, n_mels=n_mels, fmin=fmin,
                fmax=sample_rate / 2 if fmax is None else fmax,
            )
            self.register_buffer(f"filters_{i}", mel_filterbank(bank), persistent=False)

    def log_mel(self, wave: torch.Tensor, index: int) -> torch.Tensor:
        """``[B, T]`` or ``[B, 1, T]`` waveform -> ``[B, n_mels, frames]`` log10 mel at resolution ``index``."""
        n_fft, hop, win, _ = self.resolutions[index]
        wave = wave.reshape(wave.shape[0], -1)
        pad = (n_fft - hop) // 2
        wave = F.pad(wave.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            wave, n_fft, hop, win, window=getattr(self, f"window_{index}"), center=False, return_complex=True
        )
        magnitude = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
        mel = torch.matmul(getattr(self, f"filters_{index}"), magnitude)
        return torch.log10(torch.clamp(mel, min=LOG_FLOOR))

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        losses = [
            F.l1_loss(self.log_mel(fake, i), self.log_mel(real, i).detach()) for i in range(len(self.resolutions))
        ]
        return torch.stack(losses).mean()
