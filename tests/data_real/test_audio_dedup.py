"""Decoding to 16 kHz mono and recognising the same recording under another encoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from training.data.real.audio import DecodeError, DuplicateFinder, decode, identity, trim_silence


def _sound(seed: int, seconds: float = 1.5, rate: int = 44100) -> np.ndarray:
    """A recording-like sound: noise bursts through a moving resonance, with an envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    noise = rng.standard_normal(n)
    tone = np.sin(2 * np.pi * rng.uniform(200, 900) * t * (1 + 0.3 * t))
    envelope = np.abs(np.sin(np.pi * t * rng.uniform(2, 5))) ** 2
    return (0.3 * (0.6 * noise + tone) * envelope).astype(np.float32)


def _encode(wave: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def test_decode_downmixes_and_resamples():
    stereo = np.stack([_sound(1, 1.0, 48000), _sound(1, 1.0, 48000)], axis=1)
    wave = decode(_encode(stereo, 48000, "WAV", "FLOAT"), 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1 and abs(wave.size - 16000) <= 1
    with pytest.raises(DecodeError):
        decode(b"not audio at all" * 10)


def test_trim_silence_removes_quiet_edges():
    sound = _sound(2, 1.0, 16000)
    padded = np.concatenate([np.zeros(8000, np.float32), sound, np.zeros(4000, np.float32)])
    trimmed = trim_silence(padded)
    assert abs(trimmed.size - sound.size) < 800


def test_exact_hash_catches_same_samples_in_other_files():
    sound = _sound(3, rate=16000)
    finder = DuplicateFinder()
    original = decode(_encode(sound, 16000, "WAV", "PCM_24"))
    assert finder.check(identity(original), "a.wav") is None
    padded = np.concatenate([np.zeros(3200, np.float32), sound, np.zeros(1600, np.float32)])
    assert finder.check(identity(decode(_encode(padded, 16000, "WAV", "PCM_24"))), "b.wav") == ("exact", "a.wav")
    # FLAC's integer scaling differs from WAV's by one step, and another level changes every
    # sample: the samples differ, the fingerprint still knows the recording.
    assert finder.check(identity(decode(_encode(sound, 16000, "FLAC", "PCM_24"))), "d.flac") == ("fingerprint", "a.wav")
    assert finder.check(identity(decode(_encode(sound * 0.5, 16000, "WAV", "PCM_24"))), "e.wav") == \
        ("fingerprint", "a.wav")


def test_fingerprint_catches_lossy_reencoding_and_other_rates():
    sound = _sound(4)
    finder = DuplicateFinder()
    assert finder.check(identity(decode(_encode(sound, 44100, "WAV", "PCM_16"))), "a.wav") is None
    vorbis = decode(_encode(sound, 44100, "OGG", "VORBIS"))
    assert finder.check(identity(vorbis), "a.ogg") == ("fingerprint", "a.wav")
    import torch

    from mka_core.audio.io import resample

    at_22k = resample(torch.from_numpy(sound), 44100, 22050).numpy()
    assert finder.check(identity(decode(_encode(at_22k * 0.7, 22050, "WAV", "PCM_16"))), "c.wav") == \
        ("fingerprint", "a.wav")


def test_different_recordings_are_not_duplicates():
    finder = DuplicateFinder()
    for seed in range(8):
        assert finder.check(identity(decode(_encode(_sound(10 + seed), 44100, "WAV", "PCM_16"))), f"{seed}.wav") is None
