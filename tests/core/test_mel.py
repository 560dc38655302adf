"""The mel front end against an independent numpy computation of the same definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from mka_core.audio.mel import (
    MelConfig,
    MelFrontEnd,
    frames_for_samples,
    frames_for_seconds,
    mel_bin_centres,
    samples_for_frames,
    tile_or_crop,
)
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
    """Reflect-pad 384, frame without centring, periodic Hann, |rfft|, Slaney mel, log10 floor 1e-5."""
    n_fft, hop, pad = 1024, 256, 384
    padded = np.pad(x.astype(np.float64), (pad, pad), mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = 1 + (padded.size - n_fft) // hop
    stack = np.stack([padded[i * hop : i * hop + n_fft] * window for i in range(frames)], axis=1)
    magnitude = np.abs(np.fft.rfft(stack, axis=0))
    return np.log10(np.maximum(slaney_filterbank_numpy() @ magnitude, 1e-5))


def real_ish(seconds: float, seed: int = 0) -> np.ndarray:
    """A chirp, a harmonic tone, noise and a silent gap: spans the whole log range."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    x = 0.4 * np.sin(2 * np.pi * (220 + 900 * t) * t)
    x += sum(0.1 / k * np.sin(2 * np.pi * 150 * k * t) for k in range(1, 12))
    x += 0.05 * rng.standard_normal(t.size)
    x[len(x) // 2 : len(x) // 2 + 4000] = 0.0
    return x.astype(np.float32)


@pytest.mark.parametrize("samples", [32000, 32000 + 77, 1000])
def test_matches_independent_numpy_definition(samples):
    x = real_ish(3.0)[:samples]
    ours = MelFrontEnd()(torch.from_numpy(x)[None])[0, 0].double().numpy()
    reference = mel_numpy(x)
    assert ours.shape == reference.shape == (80, samples // 256)
    error = np.abs(ours - reference).max()
    print(f"max |log10 mel - numpy reference| = {error:.2e}")
    assert error < 1e-4


def test_filterbank_equals_the_numpy_slaney_definition():
    ours = MelFrontEnd().filterbank.double().numpy()
    assert np.abs(ours - slaney_filterbank_numpy()).max() < 1e-6


def test_shapes_and_frame_rate():
    fe = MelFrontEnd()
    assert fe(torch.zeros(2, 159744)).shape == (2, 1, 80, 624)  # 9.984 s
    assert fe(torch.zeros(160000)).shape == (1, 1, 80, 625)  # 10 s
    assert MelConfig().frames_per_second == 62.5 and MelConfig().pad == 384
    for n in (256, 300, 385, 1000, 16000, 159744, 160001):
        assert fe(torch.zeros(n)).shape[-1] == frames_for_samples(n) == n // 256


def test_frame_helpers():
    assert frames_for_seconds(10.0) == 625
    assert frames_for_seconds(9.984) == 624
    assert frames_for_seconds(1.0) == 62
    assert samples_for_frames(624) == 159744
    assert frames_for_samples(samples_for_frames(624)) == 624
    # General case: n_fft - hop odd, so the pad rounds down and one frame fewer fits.
    odd = MelConfig(n_fft=1023, win_length=1023)
    assert odd.pad == 383 and frames_for_samples(2560, odd) == (2560 + 766 - 1023) // 256 + 1 == 9
    assert MelFrontEnd(odd)(torch.randn(2560)).shape[-1] == 9


def test_value_range_on_real_ish_audio():
    mel = MelFrontEnd()(torch.from_numpy(real_ish(4.0)))
    assert mel.min() >= -5.0 - 1e-6 and mel.max() <= 1.5
    assert mel.min() < -4.5 and mel.max() > 0.0  # the silent gap hits the floor, the tones are loud
    full_scale = torch.sin(2 * math.pi * 440 * torch.arange(16000) / 16000)
    assert MelFrontEnd()(full_scale).max() < 1.5


def test_batch_equals_singles():
    fe = MelFrontEnd()
    batch = torch.from_numpy(np.stack([real_ish(1.0, 1), real_ish(1.0, 2)]))
    assert torch.allclose(fe(batch)[1], fe(batch[1])[0], atol=1e-6)


def test_buffers_are_not_saved_and_follow_the_module():
    fe = MelFrontEnd()
    assert len(fe.state_dict()) == 0
    assert {name for name, _ in fe.named_buffers()} == {"window", "filterbank"}
    torch.testing.assert_close(fe.window, torch.hann_window(1024))
    x = torch.from_numpy(real_ish(0.5)).double()
    as_double = MelFrontEnd().to(torch.float64)(x)  # a module cast to float64 still works
    assert as_double.dtype == torch.float32
    torch.testing.assert_close(as_double, fe(x), atol=1e-4, rtol=0)


def test_bad_inputs_and_configs_are_errors():
    with pytest.raises(InputError, match="too short"):
        MelFrontEnd()(torch.zeros(100))
    with pytest.raises(InputError, match="shape"):
        MelFrontEnd()(torch.zeros(1, 1, 1000))
    with pytest.raises(ValidationError):
        MelConfig(fmax=9000)
    with pytest.raises(ValidationError):
        MelConfig(win_length=2048)
    with pytest.raises(ValidationError):
        MelConfig(n_mel=80)  # misspelled key
    with pytest.raises(InputError, match="hop"):
        MelFrontEnd(MelConfig(n_fft=128, win_length=128))


def test_bin_centres_are_increasing_and_within_band():
    centres = mel_bin_centres(MelConfig())
    assert centres.shape == (80,) and torch.all(centres[1:] > centres[:-1])
    assert 0 < centres[0] < 100 and 7000 < centres[-1] < 8000


def test_tile_or_crop_tiles_short_and_crops_long():
    mel = torch.arange(10.0).view(1, 1, 1, 10)
    tiled = tile_or_crop(mel, 25)
    assert tiled.shape == (1, 1, 1, 25)
    assert torch.equal(tiled[..., 10:20], mel) and torch.equal(tiled[..., 20:], mel[..., :5])
    assert torch.equal(tile_or_crop(mel, 4), mel[..., :4])
    assert torch.equal(tile_or_crop(mel, 10), mel)
    assert tile_or_crop(torch.randn(2, 1, 80, 700)).shape == (2, 1, 80, 624)
    with pytest.raises(InputError):
        tile_or_crop(torch.zeros(1, 1, 80, 0), 624)
