"""Griffin-Lim: the weight-free vocoder that inverts mka's exact mel front end.

log10 mel -> linear mel -> non-negative least-squares-ish inversion of the filterbank (the
pseudo-inverse, clamped at zero) -> fast Griffin-Lim (with momentum, Perraudin et al. 2013)
using the *same* framing as the front end (reflect-pad 384, STFT without centring), so the
output is aligned with the mel and has exactly ``frames * hop`` samples.
"""

from __future__ import annotations

import torch
from pydantic import Field

from mka_core.audio.mel import MelConfig, mel_filterbank
from mka_core.config import StrictModel
from mka_core.models.vocoders.base import Vocoder


class GriffinLimConfig(StrictModel):
    mel: MelConfig = MelConfig()
    iterations: int = Field(48, ge=1, le=1000, description="Griffin-Lim iterations.")
    momentum: float = Field(0.99, ge=0.0, lt=1.0, description="Fast Griffin-Lim momentum (0 = classic).")
    power: float = Field(1.0, gt=0, description="Exponent on the inverted magnitude (>1 sharpens).")
    seed: int = Field(0, description="Seed of the initial phase (results are deterministic).")

    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    @property
    def hop_length(self) -> int:
        return self.mel.hop_length


class GriffinLimVocoder(Vocoder):
    name = "griffin-lim"
    summary = "Weight-free fallback: inverts the exact mel front end with fast Griffin-Lim."
    config_class = GriffinLimConfig
    has_weights = False

    def __init__(self, config: GriffinLimConfig | None = None) -> None:
        super().__init__(config or GriffinLimConfig())
        mel = self.config.mel
        fb = mel_filterbank(mel)
        self.register_buffer("inverse_filterbank", torch.linalg.pinv(fb.double()).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(mel.win_length), persistent=False)

    # -- framing identical to the front end ------------------------------------------------------
    def _stft(self, wave: torch.Tensor) -> torch.Tensor:
        mel = self.config.mel
        pad = mel.pad
        x = torch.nn.functional.pad(wave[:, None], (pad, pad), mode="reflect")[:, 0]
        return torch.stft(x, mel.n_fft, mel.hop_length, mel.win_length, window=self.window, center=False,
                          return_complex=True)

    def _istft(self, spec: torch.Tensor) -> torch.Tensor:
        mel = self.config.mel
        frames = spec.shape[-1]
        chunks = torch.fft.irfft(spec, n=mel.n_fft, dim=1) * self.window[None, :, None]
        length = (frames - 1) * mel.hop_length + mel.n_fft
        signal = torch.nn.functional.fold(chunks, (1, length), (1, mel.n_fft), stride=(1, mel.hop_length))[:, 0, 0]
        norm = torch.nn.functional.fold(
            (self.window**2)[None, :, None].expand(1, -1, frames), (1, length), (1, mel.n_fft), stride=(1, mel.hop_length)
        )[0, 0, 0]
        signal = signal / norm.clamp(min=1e-3)
        pad = mel.pad
        return signal[:, pad : length - pad]

    def forward(self, mel_log: torch.Tensor) -> torch.Tensor:
        if mel_log.dim() == 4:
            mel_log = mel_log.squeeze(1)
        linear_mel = torch.pow(10.0, mel_log.float())
        magnitude = torch.matmul(self.inverse_filterbank, linear_mel).clamp(min=0) ** self.config.power
        generator = torch.Generator(device="cpu").manual_seed(self.config.seed)
        # One initial phase shared by every sample, so a batch equals its single runs.
        phase = torch.rand(magnitude.shape[1:], generator=generator).to(magnitude.device)[None] * (2 * torch.pi)
        angles = torch.polar(torch.ones_like(magnitude), phase)
        previous = torch.zeros_like(angles)
        momentum = self.config.momentum
        for _ in range(self.config.iterations):
            rebuilt = self._stft(self._istft(magnitude * angles))
            accelerated = rebuilt - (momentum / (1 + momentum)) * previous
            angles = accelerated / accelerated.abs().clamp(min=1e-8)
            previous = rebuilt
        wave = self._istft(magnitude * angles)
        peak = wave.abs().amax(dim=-1, keepdim=True).clamp(min=1.0)
        return (wave / peak).clamp(-1.0, 1.0)
