"""Griffin-Lim inverts the exact front end."""

from __future__ import annotations

import math

import pytest
import torch

from mka_core.audio.mel import MelFrontEnd
from mka_core.errors import InputError
from mka_core.models.vocoders.base import Vocoder
from mka_core.models.vocoders.griffinlim import GriffinLimConfig, GriffinLimVocoder


def chirp_plus_noise(seconds: float = 2.5, seed: int = 0) -> torch.Tensor:
    sr = 16000
    t = torch.arange(int(seconds * sr)) / sr
    freq = 200 + 2800 * t / seconds
    g = torch.Generator().manual_seed(seed)
    return 0.5 * torch.sin(2 * math.pi * torch.cumsum(freq, 0) / sr) + 0.01 * torch.randn(t.shape, generator=g)


def spectral_convergence(target_log_mel: torch.Tensor, wave: torch.Tensor) -> float:
    """||S_in - S_out||_F / ||S_in||_F on linear mel magnitudes."""
    target, rebuilt = 10 ** target_log_mel, 10 ** MelFrontEnd()(wave)
    return (torch.linalg.norm(target - rebuilt) / torch.linalg.norm(target)).item()


@pytest.fixture(scope="module")
def chirp_mel() -> torch.Tensor:
    return MelFrontEnd()(chirp_plus_noise())  # [1, 1, 80, 156]


def test_spectral_convergence_on_a_chirp(chirp_mel):
    wave = GriffinLimVocoder()(chirp_mel)
    assert wave.shape == (1, chirp_mel.shape[-1] * 256)
    convergence = spectral_convergence(chirp_mel, wave)
    print(f"spectral convergence, default settings: {convergence:.4f}")
    assert convergence < 0.15


def test_mel_refitting_beats_plain_griffin_lim(chirp_mel):
    plain = GriffinLimVocoder(GriffinLimConfig(refit_steps=0, initial_nnls_steps=0))
    ours = spectral_convergence(chirp_mel, GriffinLimVocoder()(chirp_mel))
    baseline = spectral_convergence(chirp_mel, plain(chirp_mel))
    print(f"spectral convergence: clamped pseudo-inverse + fast GLA {baseline:.4f}, with NNLS and refits {ours:.4f}")
    assert ours < 0.7 * baseline


def test_output_is_aligned_with_the_mel():
    """A click at a known sample comes back at the same place (same framing both ways)."""
    wave = torch.zeros(16000)
    wave[8000:8040] = 0.8
    mel = MelFrontEnd()(wave)
    out = GriffinLimVocoder(GriffinLimConfig(iterations=32))(mel)[0]
    energy = out**2
    centroid = float((energy * torch.arange(energy.numel())).sum() / energy.sum())
    assert abs(centroid - 8020) < 64  # a framing off by the 384-sample pad would miss by far more
    assert energy[7500:8600].sum() > 0.99 * energy.sum()


def test_output_length_is_frames_times_hop_for_any_length():
    vocoder = GriffinLimVocoder(GriffinLimConfig(iterations=4))
    for frames in (1, 2, 3, 7, 64):
        mel = torch.full((1, 80, frames), -3.0)
        assert vocoder(mel).shape == (1, frames * 256)


def test_batch_equals_singles_and_is_deterministic():
    front = MelFrontEnd()
    mel = torch.cat([front(chirp_plus_noise(1.0, 1)), front(chirp_plus_noise(1.0, 2))])[:, 0]
    vocoder = GriffinLimVocoder(GriffinLimConfig(iterations=16))
    batch = vocoder(mel)
    assert batch.shape == (2, mel.shape[-1] * 256)
    torch.testing.assert_close(batch[0:1], vocoder(mel[0:1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(batch[1:2], vocoder(mel[1:2]), atol=1e-5, rtol=0)
    assert torch.equal(batch, vocoder(mel))
    assert batch.abs().max() <= 1.0
    other_seed = GriffinLimVocoder(GriffinLimConfig(iterations=16, seed=1))(mel)
    assert not torch.allclose(batch, other_seed)


def test_contract_and_errors():
    vocoder = GriffinLimVocoder()
    assert isinstance(vocoder, Vocoder) and not vocoder.has_weights
    assert vocoder.sample_rate == 16000 and vocoder.hop_length == 256
    assert len(vocoder.state_dict()) == 0
    assert GriffinLimConfig.preset("base") == GriffinLimConfig()
    with pytest.raises(InputError, match="tiny, base"):
        GriffinLimConfig.preset("large")
    with pytest.raises(InputError, match="80"):
        vocoder(torch.zeros(1, 64, 10))
    silence = vocoder(torch.full((2, 1, 80, 20), -5.0))
    assert torch.isfinite(silence).all() and silence.abs().max() < 1e-3


def test_runs_on_an_accelerator_when_there_is_one(chirp_mel):
    if torch.cuda.is_available():
        device = "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        pytest.skip("no accelerator here")
    config = GriffinLimConfig(iterations=16)
    on_cpu = GriffinLimVocoder(config)(chirp_mel)
    on_device = GriffinLimVocoder(config).to(device)(chirp_mel.to(device))
    assert on_device.device.type == device
    assert spectral_convergence(chirp_mel, on_device.cpu()) < 1.2 * spectral_convergence(chirp_mel, on_cpu)
