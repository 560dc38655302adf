"""Durations, mel frames and latent widths: the arithmetic users reach.

A request of ``d`` seconds at sample rate ``sr`` and hop ``h`` needs ``ceil(round(d*sr)/h)``
mel frames. The model works on a multiple of its *frame granularity* ``g`` (VAE downsampling
times U-Net downsampling: 8 x 2 = 16 frames = 0.256 s in the base preset), so the frame count
is rounded up to that multiple; the waveform is cropped back to ``round(d*sr)`` samples.
"""

from __future__ import annotations

import math

from mka_core.errors import InputError

MIN_DURATION = 0.1
MAX_DURATION = 120.0


def check_duration(duration: object, max_duration: float = MAX_DURATION) -> float:
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
        raise InputError(f"Duration must be a number of seconds, got {duration!r}.")
    if duration <= 0:
        raise InputError(f"Duration must be positive, got {duration:g} s.")
    if duration < MIN_DURATION or duration > max_duration:
        raise InputError(f"Duration {duration:g} s is outside the supported range {MIN_DURATION:g}-{max_duration:g} s.")
    return float(duration)


def num_samples_for(duration: float, sample_rate: int) -> int:
    return int(round(duration * sample_rate))


def frames_for(duration: float, *, sample_rate: int = 16000, hop_length: int = 256, granularity: int = 16,
               max_duration: float = MAX_DURATION) -> tuple[int, int]:
    """(mel frames to generate, exact output samples) for ``duration`` seconds."""
    duration = check_duration(duration, max_duration)
    samples = num_samples_for(duration, sample_rate)
    frames = math.ceil(samples / hop_length)
    return int(math.ceil(frames / granularity) * granularity), samples


def latent_width(frames: int, vae_factor: int = 8) -> int:
    return frames // vae_factor


def seconds_for_frames(frames: int, *, sample_rate: int = 16000, hop_length: int = 256) -> float:
    return frames * hop_length / sample_rate
