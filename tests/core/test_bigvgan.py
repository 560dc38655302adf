"""BigVGAN generator: geometry, reference equivalence, checkpoint layout, anti-aliasing, SnakeBeta."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from mka_core.errors import InputError, WeightsError
from mka_core.models.vocoders.alias_free import Activation1d, kaiser_sinc_filter
from mka_core.models.vocoders.bigvgan import BigVGANConfig, BigVGANVocoder
from mka_core.models.vocoders.snake import Snake, SnakeBeta
from mka_core.models.vocoders.weight_norm import fold_weight_norm
from tests.core._vocoder_reference import (
    RefActivation1d,
    RefBigVGAN,
    RefSnakeBeta,
    kaiser_sinc_direct,
    randomise_weight_norm,
)

LAYOUT = Path("/work/shared/reference/bigvgan_16k.layout.json")
#: Parameters of the base preset with weight norm folded (measured; see test below for the derivation).
BASE_PARAMETERS = 112_199_473


@pytest.fixture(scope="module")
def tiny() -> BigVGANVocoder:
    torch.manual_seed(0)
    return BigVGANVocoder(BigVGANConfig.preset("tiny")).eval()


def _reference_for(config: BigVGANConfig, seed: int = 0) -> RefBigVGAN:
    torch.manual_seed(seed)
    ref = RefBigVGAN(
        config.num_mels,
        config.upsample_rates,
        config.upsample_kernel_sizes,
        config.upsample_initial_channel,
        config.resblock_kernel_sizes,
        config.resblock_dilation_sizes,
    )
    randomise_weight_norm(ref, torch.Generator().manual_seed(seed))
    return ref.eval()


def _layout_tensors() -> dict[str, list]:
    if not LAYOUT.is_file():
        pytest.skip("shared reference layout not available")
    return json.loads(LAYOUT.read_text())["tensors"]


# -- configuration ------------------------------------------------------------------------------


def test_base_preset_is_the_reference_16k_release():
    cfg = BigVGANConfig.preset("base")
    assert cfg.upsample_rates == [4, 4, 2, 2, 2, 2] and cfg.upsample_kernel_sizes == [8, 8, 4, 4, 4, 4]
    assert cfg.upsample_initial_channel == 1536 and cfg.num_mels == 80
    assert cfg.resblock_kernel_sizes == [3, 7, 11] and cfg.resblock_dilation_sizes == [[1, 3, 5]] * 3
    assert (cfg.activation, cfg.snake_logscale, cfg.sample_rate, cfg.hop_length) == ("snakebeta", True, 16000, 256)
    assert cfg.input_scale == "log10"


def test_config_rejects_bad_values():
    with pytest.raises(InputError, match="'base' and 'tiny'"):
        BigVGANConfig.preset("huge")
    with pytest.raises(ValidationError):
        BigVGANConfig(upsampling_rates=[4, 4])  # misspelled key
    with pytest.raises(ValidationError, match="hop_length"):
        BigVGANConfig(upsample_rates=[4, 4, 2, 2, 2, 1], upsample_kernel_sizes=[8, 8, 4, 4, 4, 1])
    with pytest.raises(ValidationError, match="divisible"):
        BigVGANConfig(upsample_initial_channel=96)
    with pytest.raises(ValidationError, match="even difference"):
        BigVGANConfig(upsample_kernel_sizes=[8, 8, 4, 4, 4, 3])
    with pytest.raises(ValidationError):
        BigVGANConfig(input_scale="unit_db")  # not offered until its conversion is specified


def test_base_parameter_count_matches_the_reference_layout():
    with torch.device("meta"):
        model = BigVGANVocoder(BigVGANConfig.preset("base"))
    count = sum(p.numel() for p in model.parameters())
    # The layout's tensors minus the weight-norm gains and the (buffer) filters.
    expected = sum(
        math.prod(shape)
        for key, (shape, _dtype) in _layout_tensors().items()
        if not key.endswith("weight_g") and not key.endswith(".filter")
    )
    assert count == expected == BASE_PARAMETERS


# -- checkpoint layout -------------------------------------------------------------------------------


def test_reference_layout_loads_with_every_key_consumed():
    tensors = _layout_tensors()
    assert len(tensors) == 784
    with torch.device("meta"):
        model = BigVGANVocoder(BigVGANConfig.preset("base"))
        state = {key: torch.empty(shape) for key, (shape, _dtype) in tensors.items()}
    folded = fold_weight_norm(state)
    own = model.state_dict()
    assert set(folded) == set(own)
    assert all(tuple(folded[k].shape) == tuple(own[k].shape) for k in own)
    model.load_reference_state_dict({"generator": state})  # raises on any missing / unexpected / shape


def test_reference_layout_names_match_at_tiny_width():
    """Same key set as the layout, with every channel count scaled down: names and nesting agree."""
    tiny_keys = set(fold_weight_norm(_reference_for(BigVGANConfig.preset("tiny")).state_dict()))
    layout_keys = set(fold_weight_norm({k: torch.empty(1) for k in _layout_tensors()}))
    assert tiny_keys == layout_keys


def test_load_fills_every_tensor_and_reproduces_the_reference(tiny):
    cfg = BigVGANConfig.preset("tiny")
    ref = _reference_for(cfg, seed=1)
    model = BigVGANVocoder(cfg).eval()
    model.load_reference_state_dict(ref.state_dict())
    folded = fold_weight_norm(ref.state_dict())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, folded[key].to(value.dtype), rtol=0, atol=0)
    mel = torch.randn(2, 80, 9, generator=torch.Generator().manual_seed(3)) * 2 - 3
    with torch.no_grad():
        expected = ref(mel).squeeze(1)
        got = model(mel)
    assert 0.01 < expected.abs().mean() < 0.9  # not saturated, so the comparison means something
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_parametrization_spelling_loads_the_same():
    cfg = BigVGANConfig.preset("tiny")
    ref = _reference_for(cfg, seed=2)
    hook_state = ref.state_dict()
    renamed = {}
    for key, value in hook_state.items():
        if key.endswith(".weight_g"):
            renamed[key[: -len(".weight_g")] + ".parametrizations.weight.original0"] = value
        elif key.endswith(".weight_v"):
            renamed[key[: -len(".weight_v")] + ".parametrizations.weight.original1"] = value
        else:
            renamed[key] = value
    a, b = BigVGANVocoder(cfg), BigVGANVocoder(cfg)
    a.load_reference_state_dict(hook_state)
    b.load_reference_state_dict(renamed)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_load_rejects_mismatched_checkpoints():
    cfg = BigVGANConfig.preset("tiny")
    state = _reference_for(cfg).state_dict()
    model = BigVGANVocoder(cfg)
    extra = dict(state, **{"extra.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match="unexpected"):
        model.load_reference_state_dict(extra)
    missing = {k: v for k, v in state.items() if not k.startswith("conv_post.")}
    with pytest.raises(WeightsError, match="missing"):
        model.load_reference_state_dict(missing)
    half = {k: v for k, v in state.items() if k != "conv_pre.weight_v"}
    with pytest.raises(WeightsError, match="conv_pre"):
        model.load_reference_state_dict(half)
    with pytest.raises(WeightsError, match="shape"):
        BigVGANVocoder(BigVGANConfig(upsample_initial_channel=128)).load_reference_state_dict(state)


# -- forward contract -----------------------------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 5, 16])
def test_output_length_and_range(tiny, frames):
    mel = torch.randn(2, 80, frames) * 3 - 4
    with torch.no_grad():
        wav = tiny(mel)
    assert wav.shape == (2, frames * 256)
    assert wav.abs().max() <= 1.0 and torch.isfinite(wav).all()


def test_saturating_input_stays_in_range(tiny):
    big = BigVGANVocoder(BigVGANConfig.preset("tiny"))
    with torch.no_grad():
        big.conv_post.weight.mul_(1e4)
        wav = big(torch.randn(1, 80, 4) * 5)
    assert wav.abs().max() <= 1.0


def test_batch_equals_singles(tiny):
    mel = torch.randn(3, 80, 7) - 3
    with torch.no_grad():
        batched = tiny(mel)
        singles = torch.cat([tiny(mel[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, singles, rtol=0, atol=1e-5)


def test_wrong_mel_shape_is_an_input_error(tiny):
    with pytest.raises(InputError, match="80"):
        tiny(torch.zeros(1, 64, 5))


def test_float64_follows_input_dtype():
    model = BigVGANVocoder(BigVGANConfig.preset("tiny")).eval()
    mel = torch.randn(1, 80, 4)
    with torch.no_grad():
        single = model(mel)
        double = model.double()(mel.double())
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), single, rtol=1e-4, atol=1e-5)


def test_gradients_reach_every_parameter():
    model = BigVGANVocoder(BigVGANConfig.preset("tiny"))
    model(torch.randn(1, 80, 3)).pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_safetensors_round_trip_keeps_outputs(tmp_path, tiny):
    from mka_core.weights import load_safetensors, save_safetensors

    # Weights are held with channels-last strides; mka's writer stores them contiguous.
    assert not tiny.resblocks[0].convs1[0].weight.is_contiguous()
    save_safetensors(tiny.state_dict(), tmp_path / "v.safetensors")
    again = BigVGANVocoder(BigVGANConfig.preset("tiny")).eval()
    again.load_state_dict(load_safetensors(tmp_path / "v.safetensors"), strict=True)
    mel = torch.randn(1, 80, 5)
    with torch.no_grad():
        assert torch.equal(again(mel), tiny(mel))


# -- anti-aliasing and SnakeBeta ------------------------------------------------------------------------


def test_kaiser_filter_values():
    ours = kaiser_sinc_filter()
    assert ours.shape == (1, 1, 12)
    assert abs(ours.sum().item() - 1.0) < 1e-6
    torch.testing.assert_close(ours, kaiser_sinc_direct(), rtol=0, atol=1e-7)
    assert torch.equal(ours, ours.flip(-1))  # linear phase


def test_filter_buffers_are_persistent_and_named_like_the_reference(tiny):
    state = tiny.state_dict()
    for key in ("activation_post.upsample.filter", "activation_post.downsample.lowpass.filter"):
        torch.testing.assert_close(state[key], kaiser_sinc_direct(), rtol=0, atol=1e-7)


@pytest.mark.parametrize("length", [1, 2, 7, 33])
def test_activation1d_equals_the_reference_computation(length):
    torch.manual_seed(length)
    ref_act = RefSnakeBeta(6)
    ours_act = SnakeBeta(6)
    ours_act.load_state_dict(ref_act.state_dict())
    ours, ref = Activation1d(ours_act), RefActivation1d(ref_act)
    x = torch.randn(2, 6, length)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)  # training (autograd) path


@pytest.mark.parametrize("length", [40, 97, 300])
def test_tiled_activation1d_equals_the_reference_values_and_gradients(monkeypatch, length):
    """Long signals are processed in tiles with context; tiny tiles here force many seams."""
    import mka_core.models.vocoders.alias_free as alias_free

    monkeypatch.setattr(alias_free, "TILE_ELEMENTS", 60)
    monkeypatch.setattr(alias_free, "MIN_TILE", 9)
    torch.manual_seed(length)
    ref_act = RefSnakeBeta(5)
    ours_act = SnakeBeta(5)
    ours_act.load_state_dict(ref_act.state_dict())
    x = torch.randn(2, 5, length)
    x_ref = x.clone().requires_grad_(True)
    x_ours = x.clone().requires_grad_(True)
    ref_out = RefActivation1d(ref_act)(x_ref)
    ours_out = Activation1d(ours_act)(x_ours)
    torch.testing.assert_close(ours_out, ref_out, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(ref_out)
    (ref_out * weights).sum().backward()
    (ours_out * weights).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours_act.alpha.grad, ref_act.alpha.grad, rtol=1e-4, atol=1e-4)


def test_activation1d_uses_loaded_filters():
    act = Activation1d(SnakeBeta(3))
    ref = RefActivation1d(RefSnakeBeta(3))
    act.act.load_state_dict(ref.act.state_dict())
    tilted = torch.linspace(0.5, 1.5, 12).view(1, 1, 12)
    for module in (act, ref):
        module.upsample.filter.mul_(tilted)
        module.downsample.lowpass.filter.mul_(tilted.flip(-1))
    x = torch.randn(1, 3, 10)
    with torch.no_grad():
        torch.testing.assert_close(act(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("logscale", [True, False])
def test_snakebeta_formula(logscale):
    snake = SnakeBeta(4, logscale=logscale)
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([-0.5, 0.0, 0.3, 1.2]) if logscale else torch.tensor([0.6, 1.0, 1.3, 3.3]))
        snake.beta.copy_(torch.tensor([0.2, -0.7, 0.0, 0.5]) if logscale else torch.tensor([1.2, 0.5, 1.0, 1.6]))
    x = torch.randn(2, 4, 11)
    a = snake.alpha.detach().view(1, 4, 1)
    b = snake.beta.detach().view(1, 4, 1)
    if logscale:
        a, b = a.exp(), b.exp()
    expected = x + 1.0 / (b + 1e-9) * torch.sin(x * a) ** 2
    torch.testing.assert_close(snake(x), expected)
    with torch.no_grad():
        torch.testing.assert_close(snake(x), expected)
    assert snake.alpha.shape == snake.beta.shape == (4,)


def test_snake_uses_alpha_for_both_roles():
    snake = Snake(2, logscale=False)
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([0.5, 2.0]))
    x = torch.randn(1, 2, 5)
    a = torch.tensor([0.5, 2.0]).view(1, 2, 1)
    torch.testing.assert_close(snake(x), x + 1 / (a + 1e-9) * torch.sin(a * x) ** 2)


def test_tiny_preset_is_small_and_registered_name():
    model = BigVGANVocoder(BigVGANConfig.preset("tiny"))
    assert sum(p.numel() for p in model.parameters()) < 300_000
    assert BigVGANVocoder.name == "bigvgan" and BigVGANVocoder.config_class is BigVGANConfig
    assert (model.sample_rate, model.hop_length) == (16000, 256)
    # The reference's down-then-up padding arithmetic: exact T * u after every transposed conv.
    for up, rate in zip(model.ups, model.config.upsample_rates):
        conv = up[0]
        assert F.conv_transpose1d(torch.zeros(1, conv.in_channels, 5), conv.weight, stride=rate,
                                  padding=conv.padding[0]).shape[-1] == 5 * rate
