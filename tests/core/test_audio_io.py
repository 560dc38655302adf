"""Reading any common audio file as 16 kHz mono, and atomic writing."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from mka_core.audio.io import load_audio, save_audio
from mka_core.errors import InputError

RATE = 16000


def tone(rate: int, seconds: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([mono * (1 - 0.1 * c) for c in range(channels)], axis=1) if channels > 1 else mono


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_bit_depths(tmp_path, subtype):
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, tone(RATE), RATE, subtype=subtype)
    wave = load_audio(path)
    assert wave.dtype == torch.float32 and wave.shape == (8000,)
    tolerance = 0.02 if subtype == "PCM_U8" else 1e-3
    assert np.abs(wave.numpy() - tone(RATE)).max() < tolerance


@pytest.mark.parametrize("fmt,subtype", [("flac", "PCM_16"), ("ogg", "VORBIS"), ("mp3", "MPEG_LAYER_III")])
def test_compressed_formats(tmp_path, fmt, subtype):
    path = tmp_path / f"a.{fmt}"
    try:
        sf.write(path, tone(RATE, 1.0), RATE, format=fmt.upper() if fmt != "mp3" else "MP3", subtype=subtype)
    except (sf.LibsndfileError, ValueError, TypeError):
        pytest.skip(f"this libsndfile cannot write {fmt}")
    wave = load_audio(path)
    assert abs(wave.numel() - RATE) < 2000 and wave.abs().max() > 0.3


@pytest.mark.parametrize("rate", [8000, 44100, 48000, 192000])
def test_resampled_to_16k(tmp_path, rate):
    path = tmp_path / "r.wav"
    sf.write(path, tone(rate, 0.5), rate, subtype="FLOAT")
    wave = load_audio(path)
    assert wave.shape == (8000,)
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(np.argmax(spectrum) * RATE / wave.numel() - 440) < 5


@pytest.mark.parametrize("channels", [2, 6, 8])
def test_downmix_is_the_channel_mean(tmp_path, channels):
    data = tone(RATE, 0.25, channels)
    path = tmp_path / "multi.wav"
    sf.write(path, data, RATE, subtype="FLOAT")
    assert np.allclose(load_audio(path).numpy(), data.mean(axis=1), atol=1e-6)


def test_errors_are_one_sentence(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(InputError, match="folder"):
        load_audio(tmp_path)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(InputError, match="Cannot read"):
        load_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), RATE)
    with pytest.raises(InputError, match="empty"):
        load_audio(empty)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1] * 100), RATE, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN"):
        load_audio(nan)


def test_save_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / "out.wav"
    save_audio(path, torch.from_numpy(tone(RATE)).float())
    assert np.abs(load_audio(path).numpy() - tone(RATE)).max() < 1e-3
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
    with pytest.raises(InputError, match="Cannot write"):
        save_audio(tmp_path / "x.mp4", torch.zeros(10))
