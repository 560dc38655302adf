"""Vocoder GAN parts: MPD / MSD / MRD discriminators and the LSGAN, feature-matching and mel losses."""

from __future__ import annotations

import math

import pytest
import torch

from mka_core.audio.mel import MelConfig, mel_bin_centres
from mka_core.errors import InputError
from training.losses.vocoder_discriminators import (
    DiscriminatorConfig,
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScaleDiscriminator,
    VocoderDiscriminator,
)
from training.losses.vocoder_gan import (
    MultiResolutionMelLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)

SAMPLES = 4096


def _waves(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, SAMPLES, generator=g) * 0.3, torch.randn(batch, 1, SAMPLES, generator=g) * 0.3


@pytest.mark.parametrize(
    "make, count, layers",
    [
        (lambda: MultiPeriodDiscriminator(channel_divisor=8), 5, 6),
        (lambda: MultiScaleDiscriminator(channel_divisor=8), 3, 8),
        (lambda: MultiResolutionDiscriminator(channel_divisor=8), 3, 6),
    ],
)
def test_output_structure_and_joint_pass_equals_separate_passes(make, count, layers):
    torch.manual_seed(0)
    disc = make().eval()
    real, fake = _waves()
    with torch.no_grad():
        real_logits, fake_logits, real_fmaps, fake_fmaps = disc(real, fake)
        # Same inputs swapped: what was "fake" now comes back as "real", unchanged by batching.
        swapped = disc(fake.squeeze(1), real.unsqueeze(1))
    assert len(real_logits) == len(fake_logits) == len(real_fmaps) == len(fake_fmaps) == count
    for r, f, rf, ff in zip(real_logits, fake_logits, real_fmaps, fake_fmaps):
        assert r.shape == f.shape and r.dim() == 2 and r.shape[0] == 2
        assert len(rf) == len(ff) == layers
    for a, b in zip(fake_logits, swapped[0]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for maps_a, maps_b in zip(real_fmaps, swapped[3]):
        for a, b in zip(maps_a, maps_b):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_period_discriminator_folds_by_period():
    disc = MultiPeriodDiscriminator(periods=(3,), channel_divisor=8)
    real, fake = _waves(1)
    _, _, fmaps, _ = disc(real[:, :1000], fake[..., :1000])
    assert fmaps[0][0].shape[-1] == 3  # the period axis survives every layer
    assert fmaps[0][0].shape[-2] == math.ceil(math.ceil(1000 / 3) / 3)


def test_msd_first_scale_is_spectrally_normalised():
    disc = MultiScaleDiscriminator(channel_divisor=8)
    kinds = [type(d.convs[0].parametrizations.weight[0]).__name__ for d in disc.discriminators]
    assert kinds[0] == "_SpectralNorm" and kinds[1] == kinds[2] == "_WeightNorm"


def test_mrd_magnitude_is_the_unwindowed_stft():
    disc = MultiResolutionDiscriminator(resolutions=((512, 50, 240),), channel_divisor=8)
    wave = torch.randn(1, 1, SAMPLES)
    sub = disc.discriminators[0]
    padded = torch.nn.functional.pad(wave, (231, 231), mode="reflect")[:, 0]
    window = torch.zeros(512)
    window[136:376] = 1.0  # a rectangular 240-sample window centred in n_fft
    frames = padded.unfold(-1, 512, 50) * window
    expected = torch.fft.rfft(frames, dim=-1).abs().transpose(-1, -2)
    torch.testing.assert_close(sub.magnitude(wave), expected, rtol=1e-4, atol=1e-3)


def test_full_size_parameter_counts():
    with torch.device("meta"):
        counts = {
            name: sum(p.numel() for p in VocoderDiscriminator(DiscriminatorConfig(kinds=[name])).parameters())
            for name in ("mpd", "msd", "mrd")
        }
    assert counts["mpd"] > 40_000_000 and counts["msd"] > 29_000_000 and counts["mrd"] < 1_000_000


def test_combined_discriminator_concatenates_in_order():
    disc = VocoderDiscriminator(DiscriminatorConfig.preset("tiny"))
    real, fake = _waves(1)
    real_logits, *_ = disc(real, fake)
    assert len(real_logits) == 5 + 3
    assert DiscriminatorConfig.preset("hifigan").kinds == ["mpd", "msd"]
    with pytest.raises(InputError, match="'bigvgan'"):
        DiscriminatorConfig.preset("melgan")


def test_mismatched_or_malformed_waves_are_input_errors():
    disc = MultiPeriodDiscriminator(channel_divisor=8)
    with pytest.raises(InputError, match="differ"):
        disc(torch.zeros(1, 100), torch.zeros(1, 101))
    with pytest.raises(InputError, match="samples"):
        disc(torch.zeros(1, 2, 100), torch.zeros(1, 2, 100))


def test_lsgan_losses_have_the_least_squares_values():
    real = [torch.ones(2, 5), torch.full((2, 3), 0.5)]
    fake = [torch.zeros(2, 5), torch.full((2, 3), 0.5)]
    total, terms = discriminator_loss(real, fake)
    assert terms[0].item() == 0.0 and terms[1].item() == pytest.approx(0.5)
    assert total.item() == pytest.approx(0.5)
    g_total, g_terms = generator_adversarial_loss([torch.full((1, 4), 0.25), torch.ones(1, 2)])
    assert g_terms[0].item() == pytest.approx(0.5625) and g_terms[1].item() == 0.0
    assert g_total.item() == pytest.approx(0.5625)


def test_feature_matching_value_and_gradient_direction():
    real = [[torch.ones(1, 4, requires_grad=True), torch.zeros(2, 2, requires_grad=True)]]
    fake = [[torch.zeros(1, 4, requires_grad=True), torch.full((2, 2), 3.0, requires_grad=True)]]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(1.0 + 3.0)
    loss.backward()
    assert real[0][0].grad is None and fake[0][0].grad is not None


def test_mel_loss_matches_the_front_end_at_its_resolution():
    from mka_core.audio.mel import MelFrontEnd

    loss = MultiResolutionMelLoss(resolutions=((1024, 256, 1024, 80),))
    wave = torch.randn(2, SAMPLES) * 0.2
    torch.testing.assert_close(loss.log_mel(wave, 0), MelFrontEnd()(wave)[:, 0], rtol=1e-4, atol=1e-4)


def test_mel_loss_zero_for_identical_and_grows_with_difference():
    loss = MultiResolutionMelLoss()
    t = torch.arange(SAMPLES) / 16000
    tone = 0.5 * torch.sin(2 * math.pi * 440 * t).unsqueeze(0)
    assert loss(tone, tone).item() == 0.0
    near = loss(tone, tone * 0.9).item()
    far = loss(tone, 0.5 * torch.sin(2 * math.pi * 3000 * t).unsqueeze(0)).item()
    assert 0 < near < far


def test_mel_loss_front_end_resolution_and_silent_gradient():
    loss = MultiResolutionMelLoss(resolutions=((1024, 256, 1024, 80),))
    t = torch.arange(SAMPLES) / 16000
    mel = loss.log_mel(0.5 * torch.sin(2 * math.pi * 1000 * t).unsqueeze(0), 0)
    assert mel.shape == (1, 80, SAMPLES // 256)
    centres = mel_bin_centres(MelConfig())
    assert abs(centres[mel[0, :, 8].argmax()].item() - 1000) < 60
    # Half digital silence, half tone: |STFT| = 0 in places must not turn gradients into NaN.
    partly_silent = torch.cat([torch.zeros(SAMPLES // 2), 0.3 * torch.sin(2 * math.pi * 500 * t[: SAMPLES // 2])])
    partly_silent = partly_silent.unsqueeze(0).requires_grad_(True)
    loss(torch.randn(1, SAMPLES) * 0.1, partly_silent).backward()
    assert torch.isfinite(partly_silent.grad).all() and partly_silent.grad.abs().sum() > 0
