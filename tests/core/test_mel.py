"""The mel front end against an independent numpy computation of the same definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mka_core.audio.mel import MelConfig, MelFrontEnd, frames_for_samples, mel_bin_centres, tile_or_crop
from mka_core.errors import InputError


def slaney_filterbank_numpy(sr=16000, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0) -> np.ndarray:
    """Written from the definition: Slaney mel scale, triangles, area normalisation 2/(f[i+2]-f[i])."""
    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0), f * 3.0 / 200.0)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200.0 / 3.0)

    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    weights = np.zeros((n_mels, fft_freqs.size))
    for i in range(n_mels):
        lower = (fft_freqs - edges[i]) / (edges[i + 1] - edges[i])
        upper = (edges[i + 2] - fft_freqs) / (edges[i + 2] - edges[i + 1])
        weights[i] = np.maximum(0, np.minimum(lower, upper)) * 2.0 / (edges[i + 2] - edges[i])
    return weights


def mel_numpy(x: np.ndarray) -> np.ndarray:
    n_fft, hop, pad = 1024, 256, 384
    padded = np.pad(x.astype(np.float64), (pad, pad), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = 1 + (padded.size - n_fft) // hop
    stack = np.stack([padded[i * hop : i * hop + n_fft] * window for i in range(frames)], axis=1)
    magnitude = np.abs(np.fft.rfft(stack, axis=0))
    return np.log10(np.maximum(slaney_filterbank_numpy() @ magnitude, 1e-5))


def test_matches_independent_numpy_definition():
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    x = 0.4 * np.sin(2 * np.pi * (220 + 900 * t) * t) + 0.05 * rng.standard_normal(t.size)
    ours = MelFrontEnd()(torch.from_numpy(x).float()[None])[0, 0].double().numpy()
    reference = mel_numpy(x.astype(np.float32))
    assert ours.shape == reference.shape == (80, 125)
    assert np.abs(ours - reference).max() < 1e-4


def test_shapes_and_frame_rate():
    fe = MelFrontEnd()
    assert fe(torch.zeros(2, 159744)).shape == (2, 1, 80, 624)  # 9.984 s
    assert fe(torch.zeros(160000)).shape == (1, 1, 80, 625)  # 10 s
    assert MelConfig().frames_per_second == 62.5
    for n in (256, 1000, 16000, 159744, 160001):
        assert fe(torch.zeros(n)).shape[-1] == frames_for_samples(n) == n // 256


def test_value_range_on_real_ish_audio():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(0.9 * np.tanh(3 * rng.standard_normal(32000))).float()
    mel = MelFrontEnd()(x)
    assert mel.min() >= -5.0 and mel.max() < 1.5 + math.log10(4)


def test_too_short_audio_is_an_input_error():
    with pytest.raises(InputError, match="too short"):
        MelFrontEnd()(torch.zeros(100))


def test_bin_centres_are_increasing_and_within_band():
    centres = mel_bin_centres(MelConfig())
    assert centres.shape == (80,) and torch.all(centres[1:] > centres[:-1])
    assert 0 < centres[0] < 100 and 7000 < centres[-1] < 8000


def test_tile_or_crop_tiles_short_and_crops_long():
    mel = torch.arange(10.0).view(1, 1, 1, 10)
    tiled = tile_or_crop(mel, 25)
    assert tiled.shape[-1] == 25 and torch.equal(tiled[..., 10:20], mel[..., :10])
    assert torch.equal(tile_or_crop(mel, 4), mel[..., :4])
