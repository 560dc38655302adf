"""HiFi-GAN generator: V1 geometry, original-layout loading, reference equivalence, forward contract."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from mka_core.errors import InputError, WeightsError
from mka_core.models.vocoders.hifigan import HiFiGANConfig, HiFiGANVocoder
from mka_core.models.vocoders.weight_norm import fold_weight_norm
from tests.core._vocoder_reference import RefHiFiGAN, randomise_weight_norm

#: HiFi-GAN V1 generator with 80 mels, weight norm folded (the paper's 13.92 M).
V1_PARAMETERS = 13_926_017


def _reference_for(config: HiFiGANConfig, seed: int = 0) -> RefHiFiGAN:
    torch.manual_seed(seed)
    ref = RefHiFiGAN(
        config.num_mels,
        config.upsample_rates,
        config.upsample_kernel_sizes,
        config.upsample_initial_channel,
        config.resblock_kernel_sizes,
        config.resblock_dilation_sizes,
        config.resblock,
    )
    randomise_weight_norm(ref, torch.Generator().manual_seed(seed))
    return ref.eval()


@pytest.fixture(scope="module")
def tiny() -> HiFiGANVocoder:
    torch.manual_seed(0)
    return HiFiGANVocoder(HiFiGANConfig.preset("tiny")).eval()


def test_v1_preset_and_parameter_count():
    cfg = HiFiGANConfig.preset("v1")
    assert HiFiGANConfig.preset("base") == cfg
    assert (cfg.upsample_rates, cfg.upsample_kernel_sizes, cfg.upsample_initial_channel) == (
        [8, 8, 2, 2],
        [16, 16, 4, 4],
        512,
    )
    assert cfg.resblock == "1" and cfg.resblock_kernel_sizes == [3, 7, 11]
    with torch.device("meta"):
        ours = sum(p.numel() for p in HiFiGANVocoder(cfg).parameters())
        ref_state = _reference_for_meta(cfg)
    assert ours == sum(v.numel() for v in ref_state.values()) == V1_PARAMETERS


def test_v2_preset_is_the_published_v2_width():
    # HiFi-GAN's config_v2.json: V1's layout (same upsampling, kernels, dilations) at 128
    # initial channels instead of 512.
    cfg = HiFiGANConfig.preset("v2")
    assert cfg.upsample_initial_channel == 128 and cfg.upsample_rates == [8, 8, 2, 2]
    assert cfg.resblock_dilation_sizes == HiFiGANConfig.preset("v1").resblock_dilation_sizes
    with torch.device("meta"):
        ours = sum(p.numel() for p in HiFiGANVocoder(cfg).parameters())
        ref_state = _reference_for_meta(cfg)
    assert ours == sum(v.numel() for v in ref_state.values()) == 925_985


def _reference_for_meta(cfg: HiFiGANConfig) -> dict[str, torch.Tensor]:
    ref = RefHiFiGAN(
        cfg.num_mels, cfg.upsample_rates, cfg.upsample_kernel_sizes, cfg.upsample_initial_channel,
        cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes,
    )
    return fold_weight_norm(ref.state_dict())


def test_config_errors():
    with pytest.raises(InputError, match="'v1'"):
        HiFiGANConfig.preset("v9")
    with pytest.raises(ValidationError, match="hop_length"):
        HiFiGANConfig(upsample_rates=[8, 8, 2, 1], upsample_kernel_sizes=[16, 16, 4, 1])
    with pytest.raises(ValidationError):
        HiFiGANConfig(leaky=0.2)


@pytest.mark.parametrize("block", ["1", "2"])
def test_original_layout_loads_and_reproduces_the_reference(block):
    cfg = HiFiGANConfig(upsample_initial_channel=32, resblock=block,
                        resblock_dilation_sizes=[[1, 3, 5]] * 3 if block == "1" else [[1, 3]] * 3)
    ref = _reference_for(cfg, seed=4)
    state = ref.state_dict()
    assert "ups.0.weight_g" in state and state["ups.0.weight_g"].shape == (32, 1, 1)  # [in, 1, 1]
    model = HiFiGANVocoder(cfg).eval()
    model.load_reference_state_dict({"generator": state})
    folded = fold_weight_norm(state)
    assert set(folded) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(value, folded[key]), key
    mel = torch.randn(2, 80, 6, generator=torch.Generator().manual_seed(5)) - 3
    with torch.no_grad():
        expected = ref(mel).squeeze(1)
        got = model(mel)
    assert 0.01 < expected.abs().mean() < 0.9
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_plain_weight_checkpoints_load_too(tiny):
    """A generator saved after remove_weight_norm has plain ``weight`` keys."""
    plain = {k: v.clone() for k, v in tiny.state_dict().items()}
    other = HiFiGANVocoder(HiFiGANConfig.preset("tiny")).eval()
    other.load_reference_state_dict(plain)
    mel = torch.randn(1, 80, 4)
    with torch.no_grad():
        assert torch.equal(other(mel), tiny(mel))


def test_mismatched_checkpoint_is_a_weights_error():
    state = _reference_for(HiFiGANConfig.preset("tiny")).state_dict()
    with pytest.raises(WeightsError, match="shape"):
        HiFiGANVocoder(HiFiGANConfig(upsample_initial_channel=64)).load_reference_state_dict(state)
    with pytest.raises(WeightsError, match="missing"):
        HiFiGANVocoder(HiFiGANConfig.preset("tiny")).load_reference_state_dict(
            {k: v for k, v in state.items() if "resblocks.11" not in k}
        )


@pytest.mark.parametrize("frames", [1, 6, 13])
def test_output_length_and_range(tiny, frames):
    with torch.no_grad():
        wav = tiny(torch.randn(3, 80, frames) * 3 - 4)
    assert wav.shape == (3, frames * 256)
    assert wav.abs().max() <= 1.0 and torch.isfinite(wav).all()


def test_batch_equals_singles(tiny):
    mel = torch.randn(4, 80, 5) - 3
    with torch.no_grad():
        batched = tiny(mel)
        singles = torch.cat([tiny(mel[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-5)


def test_wrong_mel_shape(tiny):
    with pytest.raises(InputError, match="80"):
        tiny(torch.zeros(80, 5))


def test_gradients_and_name():
    model = HiFiGANVocoder(HiFiGANConfig.preset("tiny"))
    model(torch.randn(2, 80, 3)).abs().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert HiFiGANVocoder.name == "hifigan" and HiFiGANVocoder.config_class is HiFiGANConfig
