"""Reading any common audio file as 16 kHz mono, and atomic writing."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from mka_core.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from mka_core.audio.io import load_audio, resample, save_audio
from mka_core.errors import InputError

RATE = 16000


def tone(rate: int, seconds: float = 0.5, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([mono * (1 - 0.1 * c) for c in range(channels)], axis=1) if channels > 1 else mono


def peak_hz(wave: torch.Tensor, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(wave.numpy() * np.hanning(wave.numel())))
    return float(np.argmax(spectrum) * rate / wave.numel())


# -- reading ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_bit_depths(tmp_path, subtype):
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, tone(RATE), RATE, subtype=subtype)
    assert sf.info(str(path)).subtype == subtype
    wave = load_audio(path)
    assert wave.dtype == torch.float32 and wave.shape == (8000,)
    tolerance = {"PCM_U8": 0.01, "PCM_16": 1e-4}.get(subtype, 1e-6)
    assert np.abs(wave.numpy() - tone(RATE)).max() < tolerance


@pytest.mark.parametrize("fmt,subtype", [("flac", "PCM_16"), ("flac", "PCM_24"), ("ogg", "VORBIS"),
                                         ("ogg", "OPUS"), ("mp3", "MPEG_LAYER_III")])
def test_compressed_formats(tmp_path, fmt, subtype):
    rate = 48000 if subtype == "OPUS" else RATE  # Opus only runs at 48 kHz (and 8/12/16/24)
    path = tmp_path / f"a.{fmt}"
    try:
        sf.write(path, tone(rate, 1.0), rate, format=fmt.upper(), subtype=subtype)
    except (sf.LibsndfileError, ValueError, TypeError):
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")
    wave = load_audio(path)
    # Lossy codecs add priming / padding samples; the length stays close and the tone survives.
    assert wave.dtype == torch.float32 and wave.dim() == 1
    assert abs(wave.numel() - RATE) < 2000, wave.numel()
    assert abs(peak_hz(wave) - 440) < 5 and 0.3 < wave.abs().max() < 0.7
    if fmt == "flac":
        assert np.abs(wave.numpy() - tone(RATE, 1.0)).max() < 1e-4


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 192000, 44101])
def test_resampled_to_16k_with_the_right_length(tmp_path, rate):
    path = tmp_path / "r.wav"
    data = tone(rate, 0.5)
    sf.write(path, data, rate, subtype="FLOAT")
    wave = load_audio(path)
    assert wave.shape == (math.ceil(data.size * RATE / rate),)
    assert abs(peak_hz(wave) - 440) < 5
    # Away from the edges the resampled tone equals the tone sampled at 16 kHz directly.
    t = np.arange(wave.numel()) / RATE
    middle = slice(800, -800)
    assert np.abs(wave.numpy() - 0.5 * np.sin(2 * np.pi * 440 * t))[middle].max() < 2e-3


def test_resampling_keeps_the_band_and_removes_what_16k_cannot_hold():
    rate = 44100
    in_band = torch.from_numpy(tone(rate, 1.0, freq=7000.0))
    above = torch.from_numpy(tone(rate, 1.0, freq=9000.0))  # would alias to 7 kHz if not filtered
    kept, removed = resample(in_band, rate, RATE), resample(above, rate, RATE)
    middle = slice(1000, -1000)
    assert abs(kept[middle].abs().max().item() - 0.5) < 0.01
    assert removed[middle].abs().max().item() < 1e-3  # better than 54 dB below the input


@pytest.mark.parametrize("channels", [2, 6, 8])
def test_downmix_is_the_channel_mean(tmp_path, channels):
    data = tone(RATE, 0.25, channels)
    path = tmp_path / "multi.wav"
    sf.write(path, data, RATE, subtype="FLOAT")
    assert np.allclose(load_audio(path).numpy(), data.mean(axis=1), atol=1e-6)


def test_multichannel_at_another_rate(tmp_path):
    data = tone(48000, 0.5, 6)
    path = tmp_path / "surround.flac"
    sf.write(path, data, 48000, subtype="PCM_24")
    wave = load_audio(path)
    assert wave.shape == (8000,) and abs(wave.abs().max().item() - 0.5 * 0.75) < 0.01


def test_max_seconds_keeps_the_start(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(44100, 2.0), 44100, subtype="FLOAT")
    full = load_audio(path)
    head = load_audio(path, max_seconds=0.5)
    assert head.shape == (8000,)
    assert torch.allclose(head[:7000], full[:7000], atol=2e-3)
    assert load_audio(path, max_seconds=10).shape == full.shape
    with pytest.raises(InputError, match="max_seconds"):
        load_audio(path, max_seconds=0)


def test_other_sample_rate_argument(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(RATE), RATE)
    assert load_audio(path, 22050).shape == (11025,)


# -- errors ----------------------------------------------------------------------------------------
def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist") as info:
        load_audio(tmp_path / "missing.wav")
    assert info.value.reason == "missing"
    with pytest.raises(InputError, match="folder") as info:
        load_audio(tmp_path)
    assert info.value.reason == "folder"


@pytest.mark.parametrize("name,content", [("bad.wav", b"RIFF\x00\x00garbage" * 10), ("notes.mp3", b"just some text\n"),
                                          ("x.m4a", b"\x00\x00\x00\x18ftypM4A " + bytes(64)), ("zero.flac", b"")])
def test_unreadable_formats(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match="Cannot read") as info:
        load_audio(path)
    assert str(info.value).count(". ") == 0 and str(info.value).endswith(".")  # one sentence
    assert info.value.reason == "unreadable"


def test_empty_audio(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), RATE)
    with pytest.raises(InputError, match="empty") as info:
        load_audio(empty)
    assert info.value.reason == "empty"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused(tmp_path, bad):
    path = tmp_path / "nonfinite.wav"
    data = np.array([0.0, 0.1, -0.1] * 100)
    data[150] = bad
    sf.write(path, data, RATE, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN or infinite") as info:
        load_audio(path)
    assert info.value.reason == "non-finite"


# -- writing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix,subtype,tolerance", [(".wav", "PCM_16", 1e-4), (".wav", "FLOAT", 1e-7),
                                                     (".flac", "PCM_24", 1e-6), (".ogg", None, 0.2)])
def test_save_round_trips(tmp_path, suffix, subtype, tolerance):
    path = tmp_path / f"out{suffix}"
    save_audio(path, torch.from_numpy(tone(RATE)).float(), subtype=subtype)
    back = load_audio(path)
    if suffix == ".ogg":
        assert abs(peak_hz(back) - 440) < 5
    else:
        assert np.abs(back.numpy() - tone(RATE)).max() < tolerance
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_save_clips_accepts_a_leading_batch_of_one_and_refuses_the_rest(tmp_path):
    path = tmp_path / "loud.wav"
    save_audio(path, torch.tensor([[0.0, 2.0, -3.0, 0.5, float("nan")]]), subtype="FLOAT")
    assert load_audio(path).tolist() == [0.0, 1.0, -1.0, 0.5, 0.0]
    with pytest.raises(InputError, match="Cannot write"):
        save_audio(tmp_path / "x.mp4", torch.zeros(10))
    with pytest.raises(InputError, match="mono"):
        save_audio(tmp_path / "two.wav", torch.zeros(2, 10))
    with pytest.raises(InputError, match="cannot hold"):
        save_audio(tmp_path / "f.flac", torch.zeros(10), subtype="FLOAT")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loud.wav"]


# -- atomic writes ---------------------------------------------------------------------------------
def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "sub" / "data.bin"
    atomic_write_bytes(path, b"first")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as handle:
            handle.write(b"half")
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"first"
    assert [p.name for p in path.parent.iterdir()] == ["data.bin"]
    atomic_write_text(path, "zweite Fassung \u2713")
    assert path.read_text(encoding="utf-8") == "zweite Fassung \u2713"


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    path = tmp_path / "new.txt"
    atomic_write_text(path, "x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    os.chmod(path, 0o640)
    atomic_write_text(path, "y")
    assert path.stat().st_mode & 0o777 == 0o640
    with pytest.raises(ValueError):
        with atomic_write(path, "ab"):
            pass
