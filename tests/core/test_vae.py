"""The spectrogram VAE: sizes, reference key names, shapes, posterior, scale factor, resampling details."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from mka_core.errors import InputError
from mka_core.models.vae import AutoencoderKL, DiagonalGaussian, VAEConfig
from mka_core.models.vae_blocks import AttnBlock, Downsample

BASE_VAE_PARAMETERS = 68_984_037  # = the reference first_stage_model, counted tensor by tensor
PREFIX = "first_stage_model."


def reference_layout(name: str) -> dict[str, list[int]]:
    candidates = [os.environ.get("MKA_REFERENCE_LAYOUTS", ""), Path(__file__).parents[1] / "data" / "reference",
                  "/work/shared/reference"]
    for folder in candidates:
        path = Path(folder) / f"{name}.layout.json"
        if folder and path.is_file():
            tensors = json.loads(path.read_text())["tensors"]
            return {k[len(PREFIX):]: v[0] for k, v in tensors.items() if k.startswith(PREFIX)}
    pytest.skip(f"reference layout {name}.layout.json not available (set MKA_REFERENCE_LAYOUTS)")


def meta_vae(config: VAEConfig | None = None) -> AutoencoderKL:
    with torch.device("meta"):
        return AutoencoderKL(config or VAEConfig.preset("base"))


@pytest.fixture(scope="module")
def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(VAEConfig.preset("tiny")).eval()


def test_base_parameter_count():
    n = sum(p.numel() for p in meta_vae().parameters())
    assert n == BASE_VAE_PARAMETERS
    assert abs(n - 69e6) / 69e6 < 0.03


def test_base_state_dict_equals_reference_keys_and_shapes():
    ref = reference_layout("maa1_full")
    ours = {k: list(v.shape) for k, v in meta_vae().state_dict().items()}
    # The one extra key: the reference keeps `scale_factor` at the checkpoint's top level (next to
    # the schedule buffers), not under first_stage_model; mka stores it with the VAE it belongs to.
    # It is a 0-d float32 tensor in both.
    assert sorted(set(ours) - set(ref)) == ["scale_factor"]
    assert sorted(set(ref) - set(ours)) == []
    assert ours.pop("scale_factor") == []
    assert list(ours) == list(ref)
    assert ours == ref


def test_attention_sits_where_the_time_resolution_is_156_or_78():
    assert VAEConfig().attention_levels() == {2, 3}
    keys = meta_vae().state_dict()
    assert "encoder.down.2.attn.1.q.weight" in keys and "encoder.down.1.attn.0.q.weight" not in keys
    assert "decoder.up.3.attn.2.proj_out.weight" in keys and "decoder.up.1.attn.0.q.weight" not in keys
    # Another nominal resolution moves the attention accordingly (848 in family B gives the same levels).
    assert VAEConfig(resolution=848, attn_resolutions=[106, 212]).attention_levels() == {2, 3}


def test_base_shapes_on_meta():
    vae = meta_vae()
    mel = torch.empty(2, 1, 80, 624, device="meta")
    posterior = vae.encode(mel)
    assert posterior.mean.shape == posterior.logvar.shape == (2, 4, 10, 78)
    assert vae.decode(posterior.mode()).shape == (2, 1, 80, 624)
    assert vae.decode_latents(vae.encode_latents(mel, sample=False)).shape == (2, 1, 80, 624)


@pytest.mark.parametrize("frames", [16, 48])
def test_tiny_round_trip_shapes(tiny_vae, frames):
    mel = torch.randn(2, 1, 80, frames)
    with torch.no_grad():
        z = tiny_vae.encode_latents(mel, generator=torch.Generator().manual_seed(0))
        assert z.shape == (2, 4, 10, frames // 8)
        out = tiny_vae.decode_latents(z)
        recon, posterior = tiny_vae(mel)
    assert out.shape == recon.shape == mel.shape
    assert torch.isfinite(out).all() and posterior.kl().shape == (2,)


def test_shape_errors(tiny_vae):
    with pytest.raises(InputError, match="multiples of 8"):
        tiny_vae.encode(torch.randn(1, 1, 80, 100))
    with pytest.raises(InputError, match=r"\[B, 1, n_mels, frames\]"):
        tiny_vae.encode(torch.randn(1, 2, 80, 64))
    with pytest.raises(InputError, match="latents"):
        tiny_vae.decode(torch.randn(1, 3, 10, 8))


def test_presets_and_config_errors():
    assert VAEConfig.preset("base") == VAEConfig()
    with pytest.raises(InputError, match="tiny"):
        VAEConfig.preset("large")
    with pytest.raises(ValidationError, match="norm_groups"):
        VAEConfig(ch=24)
    with pytest.raises(ValidationError):
        VAEConfig(scale_factor=0.0)


def test_posterior_clamps_and_kl():
    moments = torch.randn(2, 8, 3, 4)
    moments[0, 4, 0, 0], moments[1, 5, 1, 1] = 50.0, -50.0
    post = DiagonalGaussian(moments)
    assert post.logvar.max() == 20.0 and post.logvar.min() == -30.0
    torch.testing.assert_close(post.mode(), moments[:, :4])
    mean, logvar = moments[:, :4], moments[:, 4:].clamp(-30, 20)
    expected = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)
    torch.testing.assert_close(post.kl(), expected)


def test_posterior_sampling_follows_generators():
    post = DiagonalGaussian(torch.cat([torch.zeros(2, 4, 5, 6), torch.zeros(2, 4, 5, 6)], dim=1))  # N(0, 1)
    a = post.sample(torch.Generator().manual_seed(1))
    b = post.sample(torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    per_sample = post.sample([torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)])
    single = DiagonalGaussian(torch.zeros(1, 8, 5, 6)).sample(torch.Generator().manual_seed(4))
    assert torch.equal(per_sample[1:], single)
    with pytest.raises(InputError, match="one per sample"):
        post.sample([torch.Generator()])


def test_scale_factor_applies_and_travels_with_the_weights(tiny_vae):
    vae = AutoencoderKL(VAEConfig.preset("tiny")).eval()
    vae.load_state_dict(tiny_vae.state_dict())
    vae.set_scale_factor(0.5)
    assert vae.config.scale_factor == 0.5 and vae.scale_factor.shape == () and vae.scale_factor_value == 0.5
    mel = torch.randn(1, 1, 80, 16)
    with torch.no_grad():
        z = vae.encode_latents(mel, sample=False)
        torch.testing.assert_close(z, vae.encode(mel).mean * 0.5)
        torch.testing.assert_close(vae.decode_latents(z), vae.decode(z * 2.0))
    fresh = AutoencoderKL(VAEConfig.preset("tiny"))
    fresh.load_state_dict(vae.state_dict())
    assert fresh.scale_factor_value == 0.5 and fresh.config.scale_factor == 0.5
    half = fresh.to(torch.bfloat16)  # the scale stays float32 so latents are not biased by rounding
    assert half.scale_factor.dtype == torch.float32 and half.encoder.conv_in.weight.dtype == torch.bfloat16
    with pytest.raises(InputError, match="positive"):
        vae.set_scale_factor(-1.0)


def test_encoder_downsample_pads_right_and_bottom_only():
    down = Downsample(1)
    with torch.no_grad():
        down.conv.weight.zero_()
        down.conv.weight[0, 0, 1, 1] = 1.0  # centre tap: output (i, j) reads padded input (2i+1, 2j+1)
        down.conv.bias.zero_()
    x = torch.randn(1, 1, 8, 10)
    assert torch.equal(down(x), x[..., 1::2, 1::2])


def test_decoder_levels_and_order():
    vae = meta_vae()
    ups = vae.decoder.up
    assert [len(level.block) for level in ups] == [3, 3, 3, 3]
    assert [level.block[-1].conv2.out_channels for level in ups] == [128, 256, 256, 512]  # stored highest-res first
    assert [len(level.block) for level in vae.encoder.down] == [2, 2, 2, 2]


def test_batch_equals_singles(tiny_vae):
    mel = torch.randn(3, 1, 80, 16)
    with torch.no_grad():
        batch = tiny_vae.decode(tiny_vae.encode(mel).mode())
        singles = torch.cat([tiny_vae.decode(tiny_vae.encode(mel[i : i + 1]).mode()) for i in range(3)])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=1e-5)


def test_tiled_decode(tiny_vae):
    z = torch.randn(1, 4, 10, 20)
    with torch.no_grad():
        whole = tiny_vae.decode(z)
        assert torch.equal(tiny_vae.decode(z, tile=20), whole)
        tiled = tiny_vae.decode(z, tile=8, overlap=2)
    assert tiled.shape == whole.shape and torch.isfinite(tiled).all()
    with pytest.raises(InputError, match="overlap"):
        tiny_vae.decode(z, tile=8, overlap=8)


def test_attention_is_single_head_over_all_channels():
    torch.manual_seed(0)
    block = AttnBlock(32, norm_groups=8).eval()
    x = torch.randn(2, 32, 4, 6)
    with torch.no_grad():
        n = block.norm(x)
        q, k, v = (m(n).flatten(2) for m in (block.q, block.k, block.v))  # [B, C, HW]
        w = torch.softmax(torch.einsum("bci,bcj->bij", q, k) * 32**-0.5, dim=-1)
        expected = x + block.proj_out(torch.einsum("bij,bcj->bci", w, v).reshape(2, 32, 4, 6))
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)
