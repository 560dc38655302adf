"""Decoding recordings to 16 kHz mono, and recognising the same recording twice.

Two recordings are *the same* for the corpus when either

* their **exact content hash** matches: SHA-1 of the decoded 16 kHz mono audio with silent
  edges trimmed (in 10 ms steps), peak-normalised and rounded to 16 bits. It catches
  byte-different files that decode to the same samples: a renamed copy, a copy padded with
  silence at either end (in whole 10 ms steps), the same samples in another container whose
  decoder gives identical values. Anything that changes samples, even by one step (libsndfile scales FLAC one step
  differently from WAV), is left to the fingerprint;
* or their **fingerprints** agree: per 16 ms frame, the levels of 17 mel-spaced bands
  (150 Hz to 7 kHz) in dB under the recording's loudest band, floored at -60 dB. Two trimmed
  recordings of nearly the same length (within 2 frames) whose fingerprints differ by less
  than :data:`FINGERPRINT_MAX_DB` dB on average are duplicates. This catches lossy re-encodings
  (ogg of a wav), copies stored at another sample rate, and level changes. It does not catch
  an excerpt of a longer file, a time-stretched or pitch-shifted copy, or one mixed with other
  sounds.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from mka_core.audio.io import resample

SAMPLE_RATE = 16000
# mka_core.audio.io.resample's Kaiser-windowed sinc settings, so both give the same samples.
_ROLLOFF, _BETA = 0.9475937167399596, 14.769656459379492
FINGERPRINT_MAX_DB = 2.0
_FFT, _HOP, _BANDS = 512, 256, 17


class DecodeError(Exception):
    """The file could not be decoded (the reason is the message)."""


def decode(data: bytes | io.BytesIO, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> np.ndarray:
    """Bytes of an audio file -> float32 mono at ``sample_rate`` (channels averaged)."""
    import soundfile as sf

    handle = data if isinstance(data, io.BytesIO) else io.BytesIO(data)
    try:
        with sf.SoundFile(handle) as file:
            rate = file.samplerate
            frames = -1 if max_seconds is None else int(max_seconds * rate) + 1
            audio = file.read(frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types for bad files
        # libsndfile names the in-memory file by its object address; keep only the reason.
        text = re.sub(r"<[^>]*>:?\s*", "", str(exc).splitlines()[0] if str(exc) else "").strip()
        raise DecodeError(text[:120] or type(exc).__name__) from None
    if audio.shape[0] == 0:
        raise DecodeError("no samples")
    if not np.isfinite(audio).all():
        raise DecodeError("NaN or Inf samples")
    mono = torch.from_numpy(audio.mean(axis=1, dtype=np.float64))
    resampler = _resampler(int(rate), int(sample_rate))
    if resampler is None:
        wave = resample(mono, int(rate), int(sample_rate)).float().numpy()
    else:
        with torch.no_grad():
            wave = resampler(mono.float()).numpy()
    if max_seconds is not None:
        wave = wave[: int(max_seconds * sample_rate)]
    return np.ascontiguousarray(wave, dtype=np.float32)


@functools.lru_cache(maxsize=16)
def _resampler(orig: int, target: int):
    """A torchaudio Resample transform with mka's resampling settings (``mka_core.audio.io.resample``),
    built once per pair of rates: building the sinc kernel costs more than resampling a short
    clip. None when the rates are equal or the kernel would be too large (mka's FFT fallback)."""
    import torchaudio

    if orig == target:
        return None
    g = math.gcd(orig, target)
    up, down = target // g, orig // g
    width = math.ceil(64 * down / (min(up, down) * _ROLLOFF))
    if up * (down + 2 * width) > 20_000_000:
        return None
    return torchaudio.transforms.Resample(orig, target, lowpass_filter_width=64, rolloff=_ROLLOFF,
                                          resampling_method="sinc_interp_kaiser", beta=_BETA)


def resample_wave(wave: np.ndarray, orig: int, target: int) -> np.ndarray:
    """float32 ``wave`` from ``orig`` Hz to ``target`` Hz with mka's resampler, kernels cached."""
    resampler = _resampler(int(orig), int(target))
    tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if resampler is None:
        return resample(tensor, int(orig), int(target)).numpy().astype(np.float32)
    with torch.no_grad():
        return resampler(tensor).numpy().astype(np.float32)


def peak_dbfs(wave: np.ndarray) -> float:
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    return -np.inf if peak <= 0 else 20 * np.log10(peak)


def trim_silence(wave: np.ndarray, below_peak_db: float = 50.0, frame: int = 160) -> np.ndarray:
    """``wave`` without its leading and trailing frames quieter than ``below_peak_db`` under the peak."""
    if wave.size == 0:
        return wave
    peak = float(np.max(np.abs(wave)))
    if peak <= 0:
        return wave[:0]
    n = wave.size // frame
    if n == 0:
        return wave
    loud = np.max(np.abs(wave[: n * frame].reshape(n, frame)), axis=1) > peak * 10 ** (-below_peak_db / 20)
    indices = np.flatnonzero(loud)
    if indices.size == 0:
        return wave[:0]
    return wave[indices[0] * frame : min(wave.size, (indices[-1] + 1) * frame)]


def content_hash(trimmed: np.ndarray) -> str:
    peak = float(np.max(np.abs(trimmed))) if trimmed.size else 0.0
    scaled = trimmed / peak if peak > 0 else trimmed
    return hashlib.sha1(np.round(scaled * 32767).astype("<i2").tobytes()).hexdigest()


_BAND_MATRIX: np.ndarray | None = None


def _bands() -> np.ndarray:
    global _BAND_MATRIX
    if _BAND_MATRIX is None:
        freqs = np.fft.rfftfreq(_FFT, 1 / SAMPLE_RATE)
        mel = 2595 * np.log10(1 + freqs / 700)
        edges = np.linspace(2595 * np.log10(1 + 150 / 700), 2595 * np.log10(1 + 7000 / 700), _BANDS + 1)
        matrix = np.zeros((_BANDS, freqs.size), dtype=np.float32)
        for b in range(_BANDS):
            matrix[b, (mel >= edges[b]) & (mel < edges[b + 1])] = 1.0
        _BAND_MATRIX = matrix
    return _BAND_MATRIX


def fingerprint(trimmed: np.ndarray) -> np.ndarray:
    """``[frames, 17]`` band levels in dB under the clip's loudest band (floored at -60), as float16;
    empty for clips under two frames."""
    if trimmed.size < _FFT + _HOP:
        return np.zeros((0, _BANDS), dtype=np.float16)
    n = 1 + (trimmed.size - _FFT) // _HOP
    index = np.arange(_FFT)[None, :] + _HOP * np.arange(n)[:, None]
    frames = trimmed[index] * np.hanning(_FFT).astype(np.float32)
    bands = (np.abs(np.fft.rfft(frames, axis=1)) ** 2) @ _bands().T
    level = 10 * np.log10(bands + 1e-20)
    return np.maximum(level - level.max(), -60.0).astype(np.float16)


def fingerprint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference in dB of two fingerprints over their common frames."""
    n = min(len(a), len(b))
    return float(np.mean(np.abs(a[:n].astype(np.float32) - b[:n].astype(np.float32)))) if n else np.inf


@dataclass
class Identity:
    """What recognises a recording: exact hash, fingerprint, trimmed length in samples."""

    exact: str
    bits: np.ndarray
    samples: int


def identity(wave: np.ndarray) -> Identity:
    trimmed = trim_silence(wave)
    return Identity(content_hash(trimmed), fingerprint(trimmed), int(trimmed.size))


class DuplicateFinder:
    """Remembers the recordings kept so far; :meth:`check` says which one a new recording repeats."""

    def __init__(self, max_db: float = FINGERPRINT_MAX_DB) -> None:
        self.max_db = max_db
        self.exact: dict[str, str] = {}
        self.by_frames: dict[int, list[tuple[np.ndarray, str]]] = {}

    def check(self, ident: Identity, key: str) -> tuple[str, str] | None:
        """(kind, key of the earlier copy) when ``ident`` repeats a kept recording, else None (and it is kept)."""
        if ident.exact in self.exact:
            return "exact", self.exact[ident.exact]
        frames = ident.bits.shape[0]
        if frames >= 4:
            for length in range(frames - 2, frames + 3):
                for bits, other in self.by_frames.get(length, []):
                    if fingerprint_distance(bits, ident.bits) < self.max_db:
                        return "fingerprint", other
        self.exact[ident.exact] = key
        if frames >= 4:
            self.by_frames.setdefault(frames, []).append((ident.bits, key))
        return None
