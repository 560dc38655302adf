"""Griffin-Lim inverts the exact front end."""

from __future__ import annotations

import math

import torch

from mka_core.audio.mel import MelFrontEnd
from mka_core.models.vocoders.griffinlim import GriffinLimConfig, GriffinLimVocoder


def chirp_plus_noise(seconds: float = 2.0, seed: int = 0) -> torch.Tensor:
    sr = 16000
    t = torch.arange(int(seconds * sr)) / sr
    freq = 200 + 2800 * t / seconds
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.sin(2 * math.pi * torch.cumsum(freq, 0) / sr) + 0.01 * torch.randn(t.shape, generator=g)


def test_spectral_convergence_on_a_chirp():
    front = MelFrontEnd()
    mel = front(chirp_plus_noise())
    wave = GriffinLimVocoder()(mel[:, 0])
    assert wave.shape == (1, mel.shape[-1] * 256)
    target, rebuilt = 10 ** mel, 10 ** front(wave)
    convergence = (torch.linalg.norm(target - rebuilt) / torch.linalg.norm(target)).item()
    assert convergence < 0.15, convergence


def test_batch_equals_singles_and_is_deterministic():
    front = MelFrontEnd()
    mel = torch.cat([front(chirp_plus_noise(1.0, 1)), front(chirp_plus_noise(1.0, 2))])[:, 0]
    vocoder = GriffinLimVocoder(GriffinLimConfig(iterations=8))
    batch = vocoder(mel)
    assert torch.allclose(batch[1:], vocoder(mel[1:]), atol=1e-5)
    assert torch.equal(batch, vocoder(mel))
    assert batch.abs().max() <= 1.0
