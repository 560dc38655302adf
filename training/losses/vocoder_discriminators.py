"""GAN discriminators for vocoder training: HiFi-GAN's MPD and MSD, BigVGAN's MRD.

Every discriminator here maps ``(real, fake)`` waveforms (``[B, T]`` or ``[B, 1, T]``) to
``(real_logits, fake_logits, real_fmaps, fake_fmaps)``: one logits tensor ``[B, N]`` and one
list of feature maps per sub-discriminator, ready for :mod:`training.losses.vocoder_gan`. Real and fake
batches run through each sub-discriminator together (concatenated on the batch axis), which
halves the number of convolution calls; no layer mixes batch items, so results equal two
separate passes.

Convolutions are weight-normalised (``torch.nn.utils.parametrizations``), the first MSD scale
spectrally normalised, as in the originals. ``channel_divisor`` shrinks every width for
tests and small experiments (1 = the published sizes).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from mka_core.config import StrictModel
from mka_core.errors import InputError

LEAKY_SLOPE = 0.1

Logits = list[torch.Tensor]
FeatureMaps = list[list[torch.Tensor]]


def _as_batch_channel_time(wave: torch.Tensor) -> torch.Tensor:
    if wave.dim() == 2:
        return wave.unsqueeze(1)
    if wave.dim() == 3 and wave.shape[1] == 1:
        return wave
    raise InputError(f"Discriminators take waveforms [batch, samples] or [batch, 1, samples], got {list(wave.shape)}.")


def _split(logits: torch.Tensor, fmaps: list[torch.Tensor], batch: int):
    return logits[:batch], logits[batch:], [f[:batch] for f in fmaps], [f[batch:] for f in fmaps]


class _MultiDiscriminator(nn.Module):
    """Runs each sub-discriminator on real and fake together and collects the four lists."""

    discriminators: nn.ModuleList

    def _prepare(self, wave: torch.Tensor, index: int) -> torch.Tensor:
        return wave

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[Logits, Logits, FeatureMaps, FeatureMaps]:
        real, fake = _as_batch_channel_time(real), _as_batch_channel_time(fake)
        if real.shape != fake.shape:
            raise InputError(f"Real and fake waveforms differ in shape: {list(real.shape)} vs {list(fake.shape)}.")
        batch = real.shape[0]
        both = torch.cat([real, fake], dim=0)
        out: tuple[Logits, Logits, FeatureMaps, FeatureMaps] = ([], [], [], [])
        for index, disc in enumerate(self.discriminators):
            both = self._prepare(both, index)
            logits, fmaps = disc(both)
            for collected, part in zip(out, _split(logits, fmaps, batch)):
                collected.append(part)
        return out


# -- multi-period (HiFi-GAN) ------------------------------------------------------------------------


class PeriodDiscriminator(nn.Module):
    """Folds the waveform into ``[T / p, p]`` columns and convolves along time only."""

    def __init__(self, period: int, channel_divisor: int = 1, kernel: int = 5, stride: int = 3) -> None:
        super().__init__()
        self.period = period
        widths = [1] + [c // channel_divisor for c in (32, 128, 512, 1024, 1024)]
        pad = (kernel - 1) // 2
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (kernel, 1), (stride if i < 4 else 1, 1), padding=(pad, 0)))
            for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:]))
        )
        self.conv_post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, channels, length = x.shape
        if length % self.period:
            # Reflect-pad to a whole number of periods (needs length > pad, true for real clips).
            x = F.pad(x, (0, self.period - length % self.period), mode="reflect")
        x = x.view(batch, channels, -1, self.period)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class MultiPeriodDiscriminator(_MultiDiscriminator):
    """HiFi-GAN MPD: one :class:`PeriodDiscriminator` per period (2, 3, 5, 7, 11)."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), channel_divisor: int = 1) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channel_divisor) for p in periods)


# -- multi-scale (HiFi-GAN) ---------------------------------------------------------------------------


class ScaleDiscriminator(nn.Module):
    """Strided, grouped 1-D convolutions over the raw waveform (MelGAN / HiFi-GAN MSD)."""

    #: (in, out, kernel, stride, groups, padding) at full width.
    LAYERS = (
        (1, 128, 15, 1, 1, 7),
        (128, 128, 41, 2, 4, 20),
        (128, 256, 41, 2, 16, 20),
        (256, 512, 41, 4, 16, 20),
        (512, 1024, 41, 4, 16, 20),
        (1024, 1024, 41, 1, 16, 20),
        (1024, 1024, 5, 1, 1, 2),
    )

    def __init__(self, use_spectral_norm: bool = False, channel_divisor: int = 1) -> None:
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm

        def width(c: int) -> int:
            return c if c == 1 else c // channel_divisor

        self.convs = nn.ModuleList(
            norm(nn.Conv1d(width(i), width(o), k, s, groups=min(g, width(i)), padding=p))
            for i, o, k, s, g, p in self.LAYERS
        )
        self.conv_post = norm(nn.Conv1d(width(1024), 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


class MultiScaleDiscriminator(_MultiDiscriminator):
    """HiFi-GAN MSD: raw audio, then x2 and x4 average-pooled; the first scale spectrally normalised."""

    def __init__(self, scales: int = 3, channel_divisor: int = 1) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(use_spectral_norm=(i == 0), channel_divisor=channel_divisor) for i in range(scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def _prepare(self, wave: torch.Tensor, index: int) -> torch.Tensor:
        # Each further scale sees the previous one pooled once more.
        return wave if index == 0 else self.pool(wave)


# -- multi-resolution (BigVGAN / UnivNet) -----------------------------------------------------------------


class ResolutionDiscriminator(nn.Module):
    """2-D convolutions over one STFT magnitude ``[B, 1, freq, frames]``.

    The STFT follows BigVGAN's: reflect-pad ``(n_fft - hop) / 2`` each side, no centring, and no
    window argument (a rectangular ``win_length`` window, zero-padded to ``n_fft``).
    """

    def __init__(self, n_fft: int, hop_length: int, win_length: int, channel_divisor: int = 1) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        # Explicit ones: the same rectangular window torch uses when none is given, minus its warning.
        self.register_buffer("window", torch.ones(win_length), persistent=False)
        ch = 32 // channel_divisor
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, ch, (3, 9), padding=(1, 4))),
                weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(ch, ch, (3, 3), padding=(1, 1))),
            ]
        )
        self.conv_post = weight_norm(nn.Conv2d(ch, 1, (3, 3), padding=(1, 1)))

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.n_fft - self.hop_length) // 2
        x = F.pad(x, (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            x, self.n_fft, self.hop_length, self.win_length, window=self.window, center=False, return_complex=True
        )
        return spec.abs()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.magnitude(x).unsqueeze(1)
        fmaps = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            fmaps.append(x)
        x = self.conv_post(x)
        fmaps.append(x)
        return x.flatten(1), fmaps


#: BigVGAN's MRD resolutions: (n_fft, hop_length, win_length).
MRD_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


class MultiResolutionDiscriminator(_MultiDiscriminator):
    """BigVGAN MRD: one :class:`ResolutionDiscriminator` per STFT resolution."""

    def __init__(
        self, resolutions: tuple[tuple[int, int, int], ...] = MRD_RESOLUTIONS, channel_divisor: int = 1
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            ResolutionDiscriminator(n, h, w, channel_divisor) for n, h, w in resolutions
        )


# -- configuration and combination ------------------------------------------------------------------------


class DiscriminatorConfig(StrictModel):
    """Which discriminators a vocoder GAN trains against, in output order.

    Presets: ``bigvgan`` (alias ``base``): MPD + MRD, the BigVGAN recipe; ``hifigan``: MPD + MSD,
    the HiFi-GAN recipe; ``tiny``: MPD + MRD at 1/8 width.
    """

    kinds: list[Literal["mpd", "msd", "mrd"]] = ["mpd", "mrd"]
    periods: list[int] = [2, 3, 5, 7, 11]
    resolutions: list[tuple[int, int, int]] = list(MRD_RESOLUTIONS)
    msd_scales: int = 3
    channel_divisor: Literal[1, 2, 4, 8] = 1

    @classmethod
    def preset(cls, name: str) -> "DiscriminatorConfig":
        if name in ("bigvgan", "base"):
            return cls()
        if name == "hifigan":
            return cls(kinds=["mpd", "msd"])
        if name == "tiny":
            return cls(channel_divisor=8)
        raise InputError(f"Unknown discriminator preset '{name}'; valid presets are 'bigvgan', 'hifigan' and 'tiny'.")


class VocoderDiscriminator(nn.Module):
    """The discriminators of ``config``; their four output lists are concatenated in order."""

    config_class = DiscriminatorConfig

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DiscriminatorConfig()
        parts: list[nn.Module] = []
        for kind in self.config.kinds:
            if kind == "mpd":
                parts.append(MultiPeriodDiscriminator(tuple(self.config.periods), self.config.channel_divisor))
            elif kind == "msd":
                parts.append(MultiScaleDiscriminator(self.config.msd_scales, self.config.channel_divisor))
            else:
                parts.append(MultiResolutionDiscriminator(tuple(self.config.resolutions), self.config.channel_divisor))
        self.parts = nn.ModuleList(parts)

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[Logits, Logits, FeatureMaps, FeatureMaps]:
        out: tuple[Logits, Logits, FeatureMaps, FeatureMaps] = ([], [], [], [])
        for part in self.parts:
            for collected, extra in zip(out, part(real, fake)):
                collected.extend(extra)
        return out
