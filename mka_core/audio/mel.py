"""The mel front end of Make-An-Audio, exactly as the reference release computes it.

Waveform at 16 kHz -> reflect-pad (n_fft - hop) / 2 = 384 samples on each side -> STFT with
``center=False`` (Hann window 1024, hop 256) -> magnitude -> Slaney-normalised Slaney-scale
mel filterbank (80 bins, 0-8000 Hz) -> ``log10(max(x, 1e-5))``. Values lie in about
[-5, 1.5]; 62.5 frames per second.

With that padding an input of ``N`` samples gives ``(N + 2*384 - 1024) // 256 + 1 =
(N - 256) // 256 + 1`` frames, which is ``N // 256`` for every ``N >= 256``.

Layout everywhere in mka: ``[B, 1, n_mels, frames]`` (height = mel bins, width = time).
"""

from __future__ import annotations

import math

import torch
import torchaudio
from pydantic import Field

from mka_core.config import StrictModel
from mka_core.errors import InputError


class MelConfig(StrictModel):
    """Parameters of the mel front end (defaults: the paper and the reference release)."""

    sample_rate: int = Field(16000, description="Audio sample rate in Hz.")
    n_fft: int = Field(1024, description="FFT size.")
    win_length: int = Field(1024, description="Hann window length.")
    hop_length: int = Field(256, description="Hop between frames (62.5 frames/s at 16 kHz).")
    n_mels: int = Field(80, description="Mel bins (the spectrogram's height).")
    fmin: float = Field(0.0, description="Lowest filter edge in Hz.")
    fmax: float = Field(8000.0, description="Highest filter edge in Hz.")
    log_floor: float = Field(1e-5, description="Magnitudes are clamped to this before log10.")

    @property
    def pad(self) -> int:
        return (self.n_fft - self.hop_length) // 2

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


def mel_filterbank(config: MelConfig) -> torch.Tensor:
    """``[n_mels, n_fft // 2 + 1]`` Slaney-normalised filters on the Slaney mel scale."""
    fb = torchaudio.functional.melscale_fbanks(
        n_freqs=config.n_fft // 2 + 1,
        f_min=config.fmin,
        f_max=config.fmax,
        n_mels=config.n_mels,
        sample_rate=config.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return fb.T.contiguous()


_F_SP = 200.0 / 3  # Slaney scale: linear below 1 kHz, 200/3 Hz per mel
_MIN_LOG_HZ, _MIN_LOG_MEL = 1000.0, 15.0
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale (as librosa with ``htk=False`` and torchaudio ``mel_scale='slaney'``)."""
    freq = torch.as_tensor(freq, dtype=torch.float64)
    linear = freq / _F_SP
    log = _MIN_LOG_MEL + torch.log(freq.clamp(min=1e-9) / _MIN_LOG_HZ) / _LOGSTEP
    return torch.where(freq >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    mel = torch.as_tensor(mel, dtype=torch.float64)
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log, linear)


def mel_bin_centres(config: MelConfig) -> torch.Tensor:
    """Centre frequency (Hz) of each mel bin, lowest first (the peak of its triangle)."""
    points = torch.linspace(float(hz_to_mel(config.fmin)), float(hz_to_mel(config.fmax)), config.n_mels + 2,
                            dtype=torch.float64)
    return mel_to_hz(points)[1:-1].float()


class MelFrontEnd(torch.nn.Module):
    """``[B, N]`` or ``[N]`` waveform -> ``[B, 1, n_mels, frames]`` log10 mel (float32)."""

    def __init__(self, config: MelConfig | None = None) -> None:
        super().__init__()
        self.config = config or MelConfig()
        self.register_buffer("window", torch.hann_window(self.config.win_length), persistent=False)
        self.register_buffer("filterbank", mel_filterbank(self.config), persistent=False)

    def magnitude(self, waveform: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude ``[B, n_fft//2+1, frames]`` with the reference padding."""
        cfg = self.config
        if waveform.dim() == 1:
            waveform = waveform[None]
        if waveform.dim() != 2:
            raise InputError(f"Expected a waveform of shape [B, N] or [N], got {tuple(waveform.shape)}.")
        if waveform.shape[-1] < cfg.hop_length:
            raise InputError(f"Audio of {waveform.shape[-1]} samples is too short: at least {cfg.hop_length} are needed.")
        x = waveform.float()
        # Reflect padding needs more samples than the pad; very short clips fall back to zeros.
        mode = "reflect" if x.shape[-1] > cfg.pad else "constant"
        x = torch.nn.functional.pad(x[:, None], (cfg.pad, cfg.pad), mode=mode)[:, 0]
        spec = torch.stft(
            x,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=self.window.to(x.device),
            center=False,
            return_complex=True,
        )
        return spec.abs()

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        magnitude = self.magnitude(waveform)
        mel = torch.matmul(self.filterbank.to(magnitude.device), magnitude)
        return torch.log10(torch.clamp(mel, min=self.config.log_floor))[:, None]


def frames_for_samples(num_samples: int, config: MelConfig | None = None) -> int:
    """Frames the front end yields for ``num_samples`` samples."""
    cfg = config or MelConfig()
    return (num_samples + 2 * cfg.pad - cfg.n_fft) // cfg.hop_length + 1


def frames_for_seconds(seconds: float, config: MelConfig | None = None) -> int:
    cfg = config or MelConfig()
    return frames_for_samples(int(round(seconds * cfg.sample_rate)), cfg)


def samples_for_frames(frames: int, config: MelConfig | None = None) -> int:
    cfg = config or MelConfig()
    return frames * cfg.hop_length


def tile_or_crop(mel: torch.Tensor, frames: int = 624) -> torch.Tensor:
    """Fit a mel to ``frames`` along time: crop longer ones, *tile* shorter ones.

    Tiling (repeating the clip) rather than zero-padding is what the reference training does,
    so short clips do not teach the model silence.
    """
    length = mel.shape[-1]
    if length == 0:
        raise InputError("Cannot tile an empty mel spectrogram.")
    if length >= frames:
        return mel[..., :frames]
    repeats = -(-frames // length)
    return mel.repeat(*([1] * (mel.dim() - 1)), repeats)[..., :frames]
