"""The mel front end of Make-An-Audio, exactly as the reference release computes it.

Waveform at 16 kHz -> reflect-pad (n_fft - hop) / 2 = 384 samples on each side -> STFT with
``center=False`` (periodic Hann window 1024, hop 256) -> magnitude ``sqrt(re^2 + im^2)`` ->
Slaney-normalised Slaney-scale mel filterbank (80 bins, 0-8000 Hz) -> ``log10(max(x, 1e-5))``.
Values lie in about [-5, 1.5]; 62.5 frames per second.

Frame count: an input of ``N`` samples is padded to ``N + 2*pad`` and framed without centring,
so it gives ``(N + 2*pad - n_fft) // hop + 1`` frames. With the defaults ``2*pad = n_fft - hop``
exactly, which reduces this to ``(N - hop) // hop + 1 = N // hop``: every ``N >= 256`` gives
``N // 256`` frames (160000 samples -> 625, 159744 -> 624) and frame ``t`` is centred on sample
``t * hop + hop / 2``. When ``n_fft - hop`` is odd the pad is rounded down and the general
formula (see :func:`frames_for_samples`) applies.

Layout everywhere in mka: ``[B, 1, n_mels, frames]`` (height = mel bins, width = time).

Scalings (``MelConfig.scaling``, see :mod:`mka_core.audio.mel_scaling`): ``"log10"`` above
(family A); ``"db_unit"`` for the family-B models (``MelConfig.preset("maa-b")``: 125-7600 Hz,
dB mapped to [0, 1] and then to the [-1, 1] their VAE sees). Vocoders always take log10 mels:
:meth:`MelFrontEnd.to_log10` converts the front end's output for them.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torchaudio
from pydantic import Field, model_validator

from mka_core.audio.mel_scaling import silence_value, to_log10, to_model_space
from mka_core.config import StrictModel
from mka_core.errors import InputError

#: Training clips of the reference release: 10 s padded, 624 frames (shorter mels are tiled).
TRAINING_FRAMES = 624


class MelConfig(StrictModel):
    """Parameters of the mel front end (defaults: the paper and the reference release)."""

    sample_rate: int = Field(16000, gt=0, description="Audio sample rate in Hz; inputs must already be at this rate.")
    n_fft: int = Field(1024, gt=0, description="FFT size; the STFT has n_fft // 2 + 1 frequency bins.")
    win_length: int = Field(1024, gt=0, description="Length of the periodic Hann window (zero-padded to n_fft if shorter).")
    hop_length: int = Field(256, gt=0, description="Samples between frames (62.5 frames/s at 16 kHz).")
    n_mels: int = Field(80, gt=0, description="Mel bins: the spectrogram's height.")
    fmin: float = Field(0.0, ge=0, description="Lower edge in Hz of the lowest mel filter.")
    fmax: float = Field(8000.0, gt=0, description="Upper edge in Hz of the highest mel filter (at most sample_rate / 2).")
    log_floor: float = Field(1e-5, gt=0, description="Mel magnitudes are clamped to at least this before log10 (-5 = silence).")
    scaling: Literal["log10", "db_unit"] = Field(
        "log10",
        description="log10: the floored log10 magnitude (family A). db_unit: 20*log10 - db_ref, mapped so db_min dB "
        "is 0, clipped to [0, 1], then output as 2u - 1 in [-1, 1] (family B).",
    )
    db_ref: float = Field(20.0, description="db_unit only: reference level in dB subtracted from 20*log10(magnitude).")
    db_min: float = Field(-100.0, lt=0, description="db_unit only: the level (dB, after db_ref) mapped to 0.")

    @model_validator(mode="after")
    def _check_consistency(self) -> "MelConfig":
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if not self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need fmin < fmax <= sample_rate / 2, got fmin={self.fmin}, fmax={self.fmax}")
        return self

    @classmethod
    def preset(cls, name: str) -> "MelConfig":
        """``base`` / ``tiny``: the paper's front end; ``maa-b``: the family-B models' (125-7600 Hz, db_unit)."""
        if name in ("base", "tiny"):
            return cls()
        if name == "maa-b":
            return cls(fmin=125.0, fmax=7600.0, scaling="db_unit")
        raise InputError(f"Unknown mel preset '{name}'; valid presets are 'base', 'tiny' and 'maa-b'.")

    @property
    def silence(self) -> float:
        """The front end's output for silence: -5 (log10) or -1 (db_unit)."""
        return silence_value(self)

    @property
    def pad(self) -> int:
        """Reflect padding on each side of the waveform: (n_fft - hop) // 2 = 384."""
        return (self.n_fft - self.hop_length) // 2

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


def mel_filterbank(config: MelConfig) -> torch.Tensor:
    """``[n_mels, n_fft // 2 + 1]`` Slaney-normalised filters on the Slaney mel scale (float32)."""
    fb = torchaudio.functional.melscale_fbanks(
        n_freqs=config.n_freqs,
        f_min=config.fmin,
        f_max=config.fmax,
        n_mels=config.n_mels,
        sample_rate=config.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return fb.T.contiguous()


def analysis_window(config: MelConfig) -> torch.Tensor:
    """The periodic Hann window, centred in ``n_fft`` when ``win_length`` is shorter."""
    window = torch.hann_window(config.win_length)
    left = (config.n_fft - config.win_length) // 2
    return torch.nn.functional.pad(window, (left, config.n_fft - config.win_length - left))


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
    """Inverse of :func:`hz_to_mel`."""
    mel = torch.as_tensor(mel, dtype=torch.float64)
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * torch.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log, linear)


def mel_bin_centres(config: MelConfig) -> torch.Tensor:
    """Centre frequency (Hz) of each mel bin, lowest first (the peak of its triangle)."""
    points = torch.linspace(float(hz_to_mel(config.fmin)), float(hz_to_mel(config.fmax)), config.n_mels + 2,
                            dtype=torch.float64)
    return mel_to_hz(points)[1:-1].float()


def pad_waveform(waveform: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """``[B, N]`` -> ``[B, N + 2*pad]`` with the reference's reflect padding.

    Reflect padding needs more samples than the pad; shorter clips (N <= 384, under 25 ms)
    fall back to zero padding rather than failing.
    """
    mode = "reflect" if waveform.shape[-1] > config.pad else "constant"
    return torch.nn.functional.pad(waveform[:, None], (config.pad, config.pad), mode=mode)[:, 0]


def framed_stft(waveform: torch.Tensor, config: MelConfig, window: torch.Tensor) -> torch.Tensor:
    """Complex STFT ``[B, n_fft//2+1, frames]`` with the front end's framing (pad, no centring).

    Shared by the front end and the Griffin-Lim vocoder so both use the very same framing.
    """
    return torch.stft(
        pad_waveform(waveform, config),
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.n_fft,
        window=window.to(waveform),
        center=False,
        return_complex=True,
    )


class MelFrontEnd(torch.nn.Module):
    """``[B, N]`` or ``[N]`` waveform -> ``[B, 1, n_mels, frames]`` log mel (float32) in the config's scaling.

    The window and filterbank are non-persistent buffers: they follow ``.to(device)`` and are
    not part of any checkpoint (they are fully determined by the config).
    """

    def __init__(self, config: MelConfig | None = None) -> None:
        super().__init__()
        self.config = config or MelConfig()
        # Checked here, not in MelConfig: filterbank-only users (mel losses) leave hop at 256.
        if self.config.hop_length > self.config.n_fft:
            raise InputError(f"The mel hop ({self.config.hop_length}) must not exceed n_fft ({self.config.n_fft}).")
        self.register_buffer("window", analysis_window(self.config), persistent=False)
        self.register_buffer("filterbank", mel_filterbank(self.config), persistent=False)

    def _as_batch(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() == 1:
            waveform = waveform[None]
        if waveform.dim() != 2:
            raise InputError(f"Expected a waveform of shape [B, N] or [N], got {tuple(waveform.shape)}.")
        if waveform.shape[-1] < self.config.hop_length:
            raise InputError(
                f"Audio of {waveform.shape[-1]} samples is too short: at least {self.config.hop_length} are needed."
            )
        return waveform.float()

    def magnitude(self, waveform: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude ``[B, n_fft//2+1, frames]`` with the reference framing."""
        return framed_stft(self._as_batch(waveform), self.config, self.window).abs()

    def linear_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Mel magnitudes before the floor and log10, ``[B, n_mels, frames]``."""
        magnitude = self.magnitude(waveform)
        return torch.matmul(self.filterbank.to(magnitude), magnitude)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = self.linear_mel(waveform)
        log_mel = torch.log10(torch.clamp(mel, min=self.config.log_floor))
        return to_model_space(log_mel, self.config)[:, None]

    def to_log10(self, mel: torch.Tensor) -> torch.Tensor:
        """This front end's output (any shape) -> the log10 mel every vocoder takes (identity for log10)."""
        return to_log10(mel, self.config)


def frames_for_samples(num_samples: int, config: MelConfig | None = None) -> int:
    """Frames the front end yields for ``num_samples`` samples (``N // 256`` by default)."""
    cfg = config or MelConfig()
    return max(0, (num_samples + 2 * cfg.pad - cfg.n_fft) // cfg.hop_length + 1)


def frames_for_seconds(seconds: float, config: MelConfig | None = None) -> int:
    """Frames for ``seconds`` of audio (rounded to whole samples): 10 s -> 625, 9.984 s -> 624."""
    cfg = config or MelConfig()
    return frames_for_samples(int(round(seconds * cfg.sample_rate)), cfg)


def samples_for_frames(frames: int, config: MelConfig | None = None) -> int:
    """Samples a vocoder produces for ``frames`` frames: ``frames * hop`` (624 -> 159744)."""
    cfg = config or MelConfig()
    return frames * cfg.hop_length


def tile_or_crop(mel: torch.Tensor, frames: int = TRAINING_FRAMES) -> torch.Tensor:
    """Fit a mel (time on the last axis) to ``frames``: crop longer ones, *tile* shorter ones.

    Tiling (repeating the clip end to end) rather than zero-padding is what the reference
    training does, so short clips do not teach the model silence.
    """
    if frames <= 0:
        raise InputError(f"The target length must be at least one frame, got {frames}.")
    length = mel.shape[-1]
    if length == 0:
        raise InputError("Cannot tile an empty mel spectrogram.")
    if length >= frames:
        return mel[..., :frames]
    repeats = -(-frames // length)
    return mel.repeat(*([1] * (mel.dim() - 1)), repeats)[..., :frames]
