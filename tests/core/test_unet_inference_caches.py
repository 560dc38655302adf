"""The U-Net's inference shortcuts (context K/V reuse, stacked QKV, channels-last) change nothing
but speed: results equal a cache-free, NCHW computation, and every cache notices a change."""

from __future__ import annotations

import copy

import pytest
import torch

from mka_core.models.attention import CrossAttention
from mka_core.models.unet import UNet, UNetConfig


def randomized_tiny(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    unet = UNet(UNetConfig.preset("tiny")).eval()
    with torch.no_grad():
        for p in unet.parameters():  # zero-initialised convs would hide most of the network
            p.add_(0.05 * torch.randn_like(p))
    return unet


def reference_forward(unet: UNet, *args, **kwargs) -> torch.Tensor:
    """The same U-Net with every cache bypassed (grad mode) and NCHW feature maps."""
    ref = copy.deepcopy(unet).requires_grad_(True)
    ref.memory_format = "contiguous"
    with torch.enable_grad():
        return ref(*args, **kwargs).detach()


def inputs(seed: int = 1, batch: int = 2, tokens: int = 5):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 10, 16, generator=gen)
    ctx = torch.randn(batch, tokens, 32, generator=gen)
    return x, torch.tensor([700, 20])[:batch], ctx


def test_cached_paths_equal_the_plain_computation():
    unet = randomized_tiny()
    x, t, ctx = inputs()
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    expected = reference_forward(unet, x, t, ctx, mask)
    with torch.no_grad():
        first = unet(x, t, ctx, mask)
        second = unet(x, t, ctx, mask)  # served from the caches
    torch.testing.assert_close(first, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(first, second)
    assert first.is_contiguous()


def test_context_changed_in_place_is_noticed():
    unet = randomized_tiny()
    x, t, ctx = inputs()
    with torch.no_grad():
        unet(x, t, ctx)
        ctx.mul_(-2.0)
        after = unet(x, t, ctx)
    torch.testing.assert_close(after, reference_forward(unet, x, t, ctx), atol=1e-5, rtol=1e-5)


def test_new_context_and_new_weights_are_noticed():
    unet = randomized_tiny()
    x, t, ctx = inputs()
    other = inputs(seed=5)[2]
    with torch.inference_mode():
        unet(x, t, ctx)
        swapped = unet(x, t, other)
    torch.testing.assert_close(swapped, reference_forward(unet, x, t, other), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        unet(x, t, ctx)
        for module in unet.modules():
            if isinstance(module, CrossAttention):
                module.to_k.weight.mul_(1.5)
                module.to_q.weight.mul_(0.5)
        changed = unet(x, t, ctx)
    torch.testing.assert_close(changed, reference_forward(unet, x, t, ctx), atol=1e-5, rtol=1e-5)


def test_dtype_change_and_deepcopy_start_fresh():
    unet = randomized_tiny()
    x, t, ctx = inputs()
    with torch.no_grad():
        unet(x, t, ctx)
        copied = copy.deepcopy(unet)
        assert torch.equal(copied(x, t, ctx), unet(x, t, ctx))
        half = unet.to(torch.bfloat16)(x.bfloat16(), t, ctx.bfloat16())
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), reference_forward(unet.float(), x, t, ctx), atol=0.1, rtol=0.05)


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_training_gradients_flow_through_every_projection(layout):
    unet = randomized_tiny()
    unet.memory_format = layout
    x, t, ctx = inputs()
    ctx.requires_grad_(True)
    with torch.no_grad():
        unet(x, t, ctx)  # fill the caches first: training must not reuse them
    unet(x, t, ctx).square().mean().backward()
    for module in unet.modules():
        if isinstance(module, CrossAttention):
            for lin in (module.to_q, module.to_k, module.to_v):
                assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0
