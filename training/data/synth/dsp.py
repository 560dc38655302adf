"""Small, vectorised signal-building blocks shared by the event generators.

Everything works on float32 arrays at :data:`SAMPLE_RATE` and draws its randomness from a
``numpy.random.Generator`` handed in by the caller, so a clip is a pure function of its seed.
Speed matters (the corpus aims at dozens of clips per second on one core), hence: uniform
rather than Gaussian white noise (cheaper to draw, just as white), filters designed once and
cached, grains placed with one ``bincount`` instead of a Python loop, and FFTs of
``next_fast_len`` sizes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft
from scipy.signal import butter, sosfilt

SAMPLE_RATE = 16000
NYQUIST = SAMPLE_RATE / 2
#: Highest frequency a partial may have; anything above would fold back (alias).
MAX_PARTIAL_HZ = 7600.0
TWO_PI = 2.0 * np.pi


def white(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance white noise (uniform samples: 5x cheaper than Gaussian, equally flat)."""
    return (rng.random(n, dtype=np.float32) - np.float32(0.5)) * np.float32(3.4641016)


@lru_cache(maxsize=512)
def _sos(kind: str, low: float, high: float, order: int) -> np.ndarray:
    if kind == "bandpass":
        return butter(order, [low, high], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    return butter(order, low, btype=kind, fs=SAMPLE_RATE, output="sos")


def _hz(value: float) -> float:
    # Rounded so that the design cache is hit across clips; 1 Hz is far below audibility here.
    return float(min(max(round(value), 20.0), NYQUIST - 50.0))


def lowpass(x: np.ndarray, cutoff: float, order: int = 2) -> np.ndarray:
    return sosfilt(_sos("lowpass", _hz(cutoff), 0.0, order), x).astype(np.float32, copy=False)


def highpass(x: np.ndarray, cutoff: float, order: int = 2) -> np.ndarray:
    return sosfilt(_sos("highpass", _hz(cutoff), 0.0, order), x).astype(np.float32, copy=False)


def bandpass(x: np.ndarray, low: float, high: float, order: int = 2) -> np.ndarray:
    low, high = _hz(low), _hz(high)
    high = max(low + 10, high)
    return sosfilt(_sos("bandpass", low, high, order), x).astype(np.float32, copy=False)


def noise_spectrum(rng: np.random.Generator, size: int, gain_at, rms: float = 1.0) -> np.ndarray:
    """The rfft of ``size`` samples of noise with magnitude spectrum ``gain_at(freqs_hz)`` and the given RMS."""
    freqs = np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE).astype(np.float32)
    bins = freqs.size
    spectrum = (rng.random(bins, dtype=np.float32) - 0.5) + 1j * (rng.random(bins, dtype=np.float32) - 0.5)
    spectrum *= np.asarray(gain_at(freqs), dtype=np.float32)
    spectrum[0] = 0.0
    # The RMS from the spectrum (Parseval) instead of a pass over the samples.
    power = 2.0 * float(np.sum(np.square(np.abs(spectrum), dtype=np.float64))) / size**2
    return (spectrum * np.float32(rms / np.sqrt(max(power, 1e-30)))).astype(np.complex64, copy=False)


def shaped_noise(rng: np.random.Generator, n: int, gain_at) -> np.ndarray:
    """Noise with magnitude spectrum ``gain_at(freqs_hz)``, unit RMS (one inverse FFT)."""
    size = scipy.fft.next_fast_len(n, real=True)
    return scipy.fft.irfft(noise_spectrum(rng, size, gain_at), n=size)[:n].astype(np.float32, copy=False)


def normalise(x: np.ndarray) -> np.ndarray:
    """Scale to unit RMS (a silent input stays silent)."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return x if rms < 1e-12 else (x / np.float32(rms)).astype(np.float32, copy=False)


def colour_gain(colour: str):
    """Magnitude curves of the usual noise colours (white flat, pink 1/sqrt(f), brown 1/f)."""
    if colour == "white":
        return lambda f: np.ones_like(f)
    if colour == "pink":
        return lambda f: 1.0 / np.sqrt(np.maximum(f, 20.0))
    return lambda f: 1.0 / np.maximum(f, 20.0)


def phase_of(freq_hz: np.ndarray, start: float = 0.0) -> np.ndarray:
    """Running phase (radians, wrapped) of an instantaneous-frequency track."""
    cycles = np.cumsum(freq_hz, dtype=np.float64) / SAMPLE_RATE + start / TWO_PI
    cycles -= np.floor(cycles)
    return (cycles * TWO_PI).astype(np.float32)


def harmonic_tone(freq_hz: np.ndarray, amplitudes: list[float] | np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
    """Sum of harmonics ``k * f`` with the given amplitudes; partials that would alias are dropped."""
    phase = phase_of(freq_hz) if phase is None else phase
    top = float(np.max(freq_hz)) if np.size(freq_hz) else 0.0
    out = np.zeros(phase.shape, dtype=np.float32)
    for k, amplitude in enumerate(amplitudes, start=1):
        if amplitude == 0 or k * top > MAX_PARTIAL_HZ:
            continue
        out += np.float32(amplitude) * np.sin(np.float32(k) * phase)
    return out


def overlap_add(n: int, starts: np.ndarray, grains: np.ndarray) -> np.ndarray:
    """Add grain ``i`` (row ``i`` of ``grains``) at sample ``starts[i]``; tails past ``n`` are cut."""
    out = np.zeros(n, dtype=np.float32)
    if grains.size == 0 or len(starts) == 0:
        return out
    grains = np.atleast_2d(grains)
    length = grains.shape[1]
    if len(starts) <= 256:
        # Few grains: slice additions beat building an index array of every sample.
        for start, grain in zip(np.asarray(starts, dtype=np.int64), grains):
            lo, hi = max(0, int(start)), min(n, int(start) + length)
            if hi > lo:
                out[lo:hi] += grain[lo - start:hi - start]
        return out
    index = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(length, dtype=np.int64)[None, :]
    keep = (index >= 0) & (index < n)
    summed = np.bincount(index[keep], weights=grains[keep], minlength=n)
    return summed.astype(np.float32)


def decay(length: int, tau_seconds: float | np.ndarray, attack_seconds: float = 0.0) -> np.ndarray:
    """Exponential decay envelope(s) with an optional linear attack.

    ``tau_seconds`` may be an array (one envelope per row), giving shape ``[len(tau), length]``.
    """
    t = np.arange(length, dtype=np.float32) / SAMPLE_RATE
    tau = np.asarray(tau_seconds, dtype=np.float32)
    env = np.exp(-t / tau[..., None]) if tau.ndim else np.exp(-t / tau)
    if attack_seconds > 0:
        ramp = np.minimum(1.0, t / np.float32(attack_seconds))
        env = env * ramp
    return env.astype(np.float32)


def slow_curve(rng: np.random.Generator, n: int, points_per_second: float, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """A smooth random curve between ``low`` and ``high`` (random control points, cosine-eased)."""
    count = max(2, int(np.ceil(n / SAMPLE_RATE * points_per_second)) + 2)
    values = rng.uniform(low, high, count).astype(np.float32)
    # Eased on a coarse grid (every 32 samples), then linearly interpolated: the curve is slow,
    # so this is indistinguishable from easing every sample and far cheaper.
    coarse = max(2, n // 32 + 2)
    position = np.linspace(0.0, count - 1.0, coarse)
    left = np.minimum(position.astype(np.int64), count - 2)
    eased = (1.0 - np.cos(np.pi * (position - left))) * 0.5
    curve = values[left] * (1.0 - eased) + values[left + 1] * eased
    return np.interp(np.linspace(0.0, coarse - 1.0, n), np.arange(coarse), curve).astype(np.float32)


def moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` samples (O(n), unlike ``np.convolve``); edges see fewer samples' worth."""
    if width <= 1:
        return x.astype(np.float32, copy=False)
    padded = np.concatenate([np.zeros(width // 2 + 1), x.astype(np.float64), np.zeros(width - width // 2)])
    sums = np.cumsum(padded)
    return ((sums[width:width + x.size] - sums[:x.size]) / width).astype(np.float32)


def fade(x: np.ndarray, fade_in: float, fade_out: float) -> np.ndarray:
    """Raised-cosine fades of the given lengths in seconds (in place on a copy)."""
    x = x.copy()
    for seconds, head in ((fade_in, True), (fade_out, False)):
        count = min(len(x), int(seconds * SAMPLE_RATE))
        if count <= 1:
            continue
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, count, dtype=np.float32))).astype(np.float32)
        if head:
            x[:count] *= ramp
        else:
            x[-count:] *= ramp[::-1]
    return x


def gate(n: int, starts: np.ndarray, lengths: np.ndarray, ramp_seconds: float = 0.004) -> np.ndarray:
    """An on/off envelope: 1 inside ``[start, start + length)`` segments, with short ramps."""
    edges = np.zeros(n + 1, dtype=np.float32)
    starts = np.clip(np.asarray(starts, dtype=np.int64), 0, n)
    ends = np.clip(starts + np.asarray(lengths, dtype=np.int64), 0, n)
    np.add.at(edges, starts, 1.0)
    np.add.at(edges, ends, -1.0)
    env = np.minimum(np.cumsum(edges[:-1]), 1.0)
    return moving_average(env, max(1, int(ramp_seconds * SAMPLE_RATE)))


def active_level(x: np.ndarray, frame: int = 800) -> float:
    """RMS over the loudest tenth of 50 ms frames: the level of the sound while it sounds.

    Sparse sounds (a few drips, a ticking clock) have a tiny overall RMS; mixing and background
    noise are set against this level instead so that they stay audible.
    """
    usable = len(x) // frame * frame
    if usable == 0:
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0
    frames = x[:usable].reshape(-1, frame).astype(np.float32, copy=False)
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frame
    top = max(1, power.size // 10)
    return float(np.sqrt(np.mean(np.partition(power, power.size - top)[-top:])))


def lead_in(rng: np.random.Generator, n: int, low: float, high: float) -> float:
    """Seconds before a sound's first event: uniform in [low, high], shrunk for short spans.

    The first event always lands within the first fifth of the span, so even the short halves
    of a "then" composition hold their sound.
    """
    high = min(high, 0.2 * n / SAMPLE_RATE)
    low = min(low, 0.5 * high)
    return float(rng.uniform(low, high))


def db(value: float) -> float:
    return float(10.0 ** (value / 20.0))


def fft_convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Linear convolution cut to ``len(x)`` (one forward FFT each, one inverse)."""
    size = scipy.fft.next_fast_len(len(x) + len(kernel) - 1, real=True)
    spectrum = scipy.fft.rfft(x, n=size) * scipy.fft.rfft(kernel, n=size)
    return scipy.fft.irfft(spectrum, n=size)[: len(x)].astype(np.float32)
