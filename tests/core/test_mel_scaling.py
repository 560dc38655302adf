"""The family-B mel scaling (dB in [0, 1], [-1, 1] for the VAE) against the reference's chain of steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from mka_core.audio.mel import MelConfig, MelFrontEnd
from mka_core.audio.mel_scaling import db_unit_from_log10, log10_from_db_unit, to_log10, to_model_space
from mka_core.errors import InputError


def reference_unit(linear_mel: np.ndarray) -> np.ndarray:
    """The family-B preprocessing chain, step by step: floor, log10, x20, -20, +100, /100, clip."""
    x = np.maximum(1e-5, linear_mel)
    x = np.log10(x)
    x = x * 20
    x = x - 20
    x = x + 100
    x = x / 100
    return np.clip(x, 0.0, 1.0)


def test_front_end_output_is_the_reference_unit_mel_mapped_to_minus_one_one():
    torch.manual_seed(0)
    wave = torch.randn(2, 8000) * torch.linspace(0, 1, 8000) ** 3  # quiet start, loud end: both clips reached
    config = MelConfig.preset("maa-b")
    front = MelFrontEnd(config)
    linear = front.linear_mel(wave).double().numpy()
    expected = reference_unit(linear) * 2 - 1
    got = front(wave)[:, 0].double().numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert got.min() == -1.0 and got.max() <= 1.0


def test_maa_b_preset_and_log10_default():
    b = MelConfig.preset("maa-b")
    assert (b.fmin, b.fmax, b.scaling, b.db_ref, b.db_min) == (125.0, 7600.0, "db_unit", 20.0, -100.0)
    assert MelConfig.preset("base") == MelConfig() and MelConfig().scaling == "log10"
    with pytest.raises(InputError, match="maa-b"):
        MelConfig.preset("family-c")
    with pytest.raises(ValidationError):
        MelConfig(db_min=10.0)
    with pytest.raises(ValidationError):
        MelConfig(scaling="db")


def test_silence_value_is_what_the_front_end_gives_for_zeros():
    for name, silence in (("base", -5.0), ("maa-b", -1.0)):
        config = MelConfig.preset(name)
        assert config.silence == pytest.approx(silence)
        out = MelFrontEnd(config)(torch.zeros(1, 4096))
        assert torch.allclose(out, torch.full_like(out, silence))


def test_log10_round_trip_is_exact_where_the_clip_lets_values_through():
    config = MelConfig.preset("maa-b")
    log_mel = torch.linspace(-3.99, 0.99, 1001, dtype=torch.float64)  # u strictly inside (0, 1)
    back = to_log10(to_model_space(log_mel, config), config)
    assert torch.allclose(back, log_mel, atol=1e-12)
    # Outside the range the clip wins: below -4 is silence, above 1 is full scale.
    edges = to_model_space(torch.tensor([-5.0, -4.0, 1.0, 1.4], dtype=torch.float64), config)
    assert edges.tolist() == [-1.0, -1.0, 1.0, 1.0]


def test_model_space_to_vocoder_input_equals_the_reference_clamp():
    """Decoded [-1, 1] mel -> log10 (what mka hands a vocoder) -> [0, 1]: the reference's clamp((x+1)/2, 0, 1)."""
    config = MelConfig.preset("maa-b")
    decoded = torch.linspace(-1.7, 1.6, 997)
    unit = db_unit_from_log10(to_log10(decoded, config), config.db_ref, config.db_min)
    assert torch.allclose(unit, torch.clamp((decoded + 1) / 2, 0, 1), atol=1e-6)


def test_log10_scaling_is_the_identity_and_helpers_invert_each_other():
    config = MelConfig()
    x = torch.randn(3, 80, 7)
    assert torch.equal(to_model_space(x, config), x) and torch.equal(to_log10(x, config), x)
    assert torch.equal(MelFrontEnd(config).to_log10(x), x)
    u = torch.rand(1000, dtype=torch.float64)
    assert torch.allclose(db_unit_from_log10(log10_from_db_unit(u)), u, atol=1e-12)
