"""The latent diffusion U-Net: sizes, reference key names, time embedding, masks, batching, expansion."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from mka_core.errors import InputError
from mka_core.models.attention import AttentionBlock
from mka_core.models.unet import InputGroup, UNet, UNetConfig, expand_input_channels
from mka_core.models.unet_blocks import timestep_embedding

BASE_UNET_PARAMETERS = 160_223_684  # = the reference maa1_full U-Net, counted tensor by tensor
PREFIX = "model.diffusion_model."


def reference_layout(name: str) -> dict[str, list[int]]:
    """Key -> shape of a reference checkpoint layout (shared/reference/*.layout.json), or skip."""
    candidates = [os.environ.get("MKA_REFERENCE_LAYOUTS", ""), Path(__file__).parents[1] / "data" / "reference",
                  "/work/shared/reference"]
    for folder in candidates:
        path = Path(folder) / f"{name}.layout.json"
        if folder and path.is_file():
            tensors = json.loads(path.read_text())["tensors"]
            return {k[len(PREFIX):]: v[0] for k, v in tensors.items() if k.startswith(PREFIX)}
    pytest.skip(f"reference layout {name}.layout.json not available (set MKA_REFERENCE_LAYOUTS)")


def meta_unet(config: UNetConfig) -> UNet:
    with torch.device("meta"):
        return UNet(config)


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (zero-initialised ones included) small random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


def tiny(**update) -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig.preset("tiny").model_copy(update=update))


# -- sizes and key names ---------------------------------------------------------------------


def test_base_parameter_count_matches_the_paper_model():
    n = sum(p.numel() for p in meta_unet(UNetConfig.preset("base")).parameters())
    assert n == BASE_UNET_PARAMETERS
    assert abs(n - 160.2e6) / 160.2e6 < 0.01


def test_base_state_dict_equals_reference_keys_and_shapes():
    ref = reference_layout("maa1_full")
    ours = {k: list(v.shape) for k, v in meta_unet(UNetConfig.preset("base")).state_dict().items()}
    # No differences at all: same names, same shapes, same order (every reference key is a parameter).
    assert sorted(set(ours) - set(ref)) == []
    assert sorted(set(ref) - set(ours)) == []
    assert list(ours) == list(ref)
    assert ours == ref


@pytest.mark.parametrize(
    "layout, config",
    [
        # Family B image-to-audio: 256 channels, 32-channel heads, global CLIP token added to the time embedding.
        ("ta54_img2audio", dict(model_channels=256, num_head_channels=32, global_condition_to_time=True)),
        # Family B inpainting: 9 input channels, legacy self-attention, ResBlock resampling, no context.
        ("inpaint7", dict(in_channels=9, context_dim=None, attention_type="legacy_attention_block", resblock_updown=True)),
    ],
)
def test_family_b_configs_reproduce_their_reference_layouts(layout, config):
    ref = reference_layout(layout)
    ours = {k: list(v.shape) for k, v in meta_unet(UNetConfig(**config)).state_dict().items()}
    assert list(ours) == list(ref)
    assert ours == ref


def test_presets_and_config_errors():
    assert UNetConfig.preset("base") == UNetConfig()
    with pytest.raises(InputError, match="tiny"):
        UNetConfig.preset("huge")
    with pytest.raises(ValidationError, match="norm_groups"):
        UNetConfig(model_channels=48, norm_groups=32)
    with pytest.raises(ValidationError, match="context_dim"):
        UNetConfig(global_condition_to_time=True)  # 1024-d token but a 1280-d time embedding
    with pytest.raises(ValidationError, match="input_groups"):
        UNetConfig(in_channels=9, input_groups=[InputGroup(name="x_t", channels=4)])
    with pytest.raises(ValidationError):
        UNetConfig(bogus=1)


# -- time embedding --------------------------------------------------------------------------


def test_timestep_embedding_is_cosine_first_with_half_divisor():
    t = np.array([0, 1, 500, 991])
    half = 160
    freqs = np.exp(-math.log(10000.0) * np.arange(half) / half)  # divisor half, not half - 1
    expected = np.concatenate([np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs)], axis=1)
    got = timestep_embedding(torch.tensor(t), 320).numpy()
    assert got.shape == (4, 320) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-4)
    # Float timesteps give the same embedding as integer ones.
    assert torch.equal(timestep_embedding(torch.tensor(t, dtype=torch.float32), 320), torch.from_numpy(got))


# -- forward behaviour -----------------------------------------------------------------------


def test_output_is_zero_at_init_and_nonzero_after_perturbing():
    unet = tiny().eval()
    x, ctx = torch.randn(2, 4, 10, 16), torch.randn(2, 5, 32)
    with torch.no_grad():
        out = unet(x, torch.tensor([10, 900]), ctx)
        assert out.shape == (2, 4, 10, 16)
        assert torch.count_nonzero(out) == 0  # zero-initialised output conv
        torch.nn.init.normal_(unet.out[2].weight, std=0.1)
        out = unet(x, torch.tensor([10, 900]), ctx)
    assert torch.count_nonzero(out) > 0


def test_masked_padding_tokens_do_not_change_the_output():
    unet = randomized(tiny())
    x, t = torch.randn(1, 4, 10, 16), torch.tensor([400])
    ctx = torch.randn(1, 5, 32)
    padded = torch.cat([ctx, 100 * torch.randn(1, 3, 32)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    with torch.no_grad():
        plain = unet(x, t, ctx)
        masked = unet(x, t, padded, mask)
        unmasked = unet(x, t, padded)
    torch.testing.assert_close(masked, plain, atol=1e-5, rtol=1e-5)
    assert (unmasked - plain).abs().max() > 1e-3  # the padding would matter without the mask


def test_all_false_mask_attends_to_nothing():
    unet = randomized(tiny())
    x, t = torch.randn(1, 4, 10, 16), torch.tensor([400])
    ctx = torch.randn(1, 6, 32)
    with torch.no_grad():
        empty = unet(x, t, ctx, torch.zeros(1, 6, dtype=torch.bool))
        # to_k / to_v have no bias, so an all-zero context yields zero values: the same "nothing".
        zeros = unet(x, t, torch.zeros_like(ctx))
    assert torch.isfinite(empty).all()
    torch.testing.assert_close(empty, zeros, atol=1e-5, rtol=1e-5)


def test_batch_equals_singles():
    unet = randomized(tiny())
    n = 3
    x, t = torch.randn(n, 4, 10, 16), torch.tensor([1, 501, 991])
    ctx = torch.randn(n, 4, 32)
    mask = torch.tensor([[True, True, False, False], [True] * 4, [False] * 4])
    with torch.no_grad():
        batch = unet(x, t, ctx, mask)
        singles = torch.cat([unet(x[i : i + 1], t[i : i + 1], ctx[i : i + 1], mask[i : i + 1]) for i in range(n)])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=1e-5)


def test_scalar_timestep_broadcasts():
    unet = randomized(tiny())
    x, ctx = torch.randn(2, 4, 10, 16), torch.randn(2, 3, 32)
    with torch.no_grad():
        torch.testing.assert_close(unet(x, torch.tensor(7), ctx), unet(x, torch.tensor([7, 7]), ctx))


def test_input_errors_are_one_sentence_input_errors():
    unet = tiny()
    ctx = torch.randn(1, 3, 32)
    with pytest.raises(InputError, match="multiples of 2"):
        unet(torch.randn(1, 4, 10, 15), torch.tensor([1]), ctx)
    with pytest.raises(InputError, match=r"\[B, 4, H, W\]"):
        unet(torch.randn(1, 5, 10, 16), torch.tensor([1]), ctx)
    with pytest.raises(InputError, match="context"):
        unet(torch.randn(1, 4, 10, 16), torch.tensor([1]), None)
    with pytest.raises(InputError, match="Context"):
        unet(torch.randn(1, 4, 10, 16), torch.tensor([1]), torch.randn(1, 3, 16))


def test_expanded_input_unet_matches_the_original_at_init():
    unet = randomized(tiny())
    wide = expand_input_channels(unet, [("masked_latent", 4), ("mask", 1)])
    assert wide.config.in_channels == 9
    assert [(g.name, g.channels) for g in wide.config.resolved_input_groups()] == [
        ("x_t", 4), ("masked_latent", 4), ("mask", 1)
    ]
    assert unet.config.in_channels == 4 and unet.input_blocks[0][0].in_channels == 4  # original untouched
    x, t, ctx = torch.randn(2, 4, 10, 16), torch.tensor([3, 700]), torch.randn(2, 3, 32)
    extra = torch.randn(2, 5, 10, 16)
    with torch.no_grad():
        original = unet(x, t, ctx)
        expanded = wide(torch.cat([x, extra], dim=1), t, ctx)
        assert torch.equal(expanded, original)
        wide.input_blocks[0][0].weight[:, 4:].normal_()
        assert not torch.equal(wide(torch.cat([x, extra], dim=1), t, ctx), original)
    # The expanded config round-trips through JSON like any other.
    assert UNet(UNetConfig(**wide.config.to_json_dict())).input_blocks[0][0].in_channels == 9
    assert expand_input_channels(unet, 5).config.input_groups[-1].channels == 5


def test_global_token_reaches_the_time_embedding():
    config = UNetConfig(model_channels=32, context_dim=128, num_head_channels=8, norm_groups=8,
                        global_condition_to_time=True)
    unet = randomized(UNet(config))
    # Silence cross-attention entirely: any remaining effect of the token comes through emb.
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if ".attn2." in name:
                p.zero_()
        x, t = torch.randn(1, 4, 10, 16), torch.tensor([50])
        a = unet(x, t, torch.randn(1, 1, 128))
        b = unet(x, t, torch.randn(1, 1, 128))
    assert (a - b).abs().max() > 1e-4
    with pytest.raises(InputError, match="one global context token"):
        unet(x, t, torch.randn(1, 2, 128))


def test_legacy_attention_uses_head_major_qkv():
    torch.manual_seed(0)
    block = randomized(AttentionBlock(64, heads=4, norm_groups=8))
    x = torch.randn(2, 64, 3, 5)
    with torch.no_grad():
        out = block(x)
        flat = x.reshape(2, 64, 15)
        qkv = block.qkv(block.norm(flat))  # [B, 3C, L]: per head a [q | k | v] run of 16 channels
        heads = []
        for h in range(4):
            q, k, v = qkv[:, h * 48 : h * 48 + 16], qkv[:, h * 48 + 16 : h * 48 + 32], qkv[:, h * 48 + 32 : h * 48 + 48]
            w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(16), dim=-1)
            heads.append(torch.einsum("bts,bcs->bct", w, v))
        expected = (flat + block.proj_out(torch.cat(heads, dim=1))).reshape(2, 64, 3, 5)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_legacy_unet_runs_without_context():
    torch.manual_seed(0)
    config = UNetConfig(in_channels=9, model_channels=32, context_dim=None, norm_groups=8,
                        attention_type="legacy_attention_block", resblock_updown=True)
    unet = randomized(UNet(config))
    with torch.no_grad():
        out = unet(torch.randn(2, 9, 10, 16), torch.tensor([1, 2]))
    assert out.shape == (2, 4, 10, 16) and torch.isfinite(out).all()
    with pytest.raises(InputError, match="no cross-attention"):
        unet(torch.randn(1, 9, 10, 16), torch.tensor([1]), torch.randn(1, 1, 8))


def test_bfloat16_forward_keeps_dtype():
    unet = randomized(tiny()).to(torch.bfloat16)
    x, ctx = torch.randn(1, 4, 10, 16, dtype=torch.bfloat16), torch.randn(1, 3, 32, dtype=torch.bfloat16)
    with torch.no_grad():
        out = unet(x, torch.tensor([5]), ctx, torch.tensor([[True, True, False]]))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_skip_concat_puts_current_features_first():
    unet = randomized(tiny())
    seen: dict[str, torch.Tensor] = {}
    unet.middle_block.register_forward_hook(lambda m, a, out: seen.__setitem__("middle", out))
    unet.input_blocks[-1].register_forward_hook(lambda m, a, out: seen.__setitem__("skip", out))
    unet.output_blocks[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("first_up_input", a[0]))
    with torch.no_grad():
        unet(torch.randn(1, 4, 10, 16), torch.tensor([5]), torch.randn(1, 3, 32))
    c = seen["middle"].shape[1]
    assert torch.equal(seen["first_up_input"][:, :c], seen["middle"])
    assert torch.equal(seen["first_up_input"][:, c:], seen["skip"])
