"""Weight-norm folding against torch's own weight_norm (hook and parametrization APIs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mka_core.errors import WeightsError
from mka_core.models.vocoders.weight_norm import (
    apply_weight_norm,
    effective_weight,
    fold_weight_norm,
    remove_weight_norm,
)
from tests.core._vocoder_reference import hook_weight_norm


def _randomise(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape) * 0.5 + (0.3 if p.dim() == 3 and p.shape[1:] == (1, 1) else 0.0))


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.Conv1d(5, 7, 3, padding=2, dilation=2),
        lambda: nn.ConvTranspose1d(6, 4, 8, stride=4, padding=2),
        lambda: nn.Conv1d(4, 1, 7, padding=3),
    ],
)
@pytest.mark.parametrize("api", ["hook", "parametrization"])
def test_folding_reproduces_the_weight_normed_conv(make, api):
    torch.manual_seed(0)
    normed = make()
    if api == "hook":
        normed = hook_weight_norm(normed)
    else:
        normed = nn.utils.parametrizations.weight_norm(normed)
    _randomise(normed)
    state = normed.state_dict()
    gain_key = "weight_g" if api == "hook" else "parametrizations.weight.original0"
    if isinstance(normed, nn.ConvTranspose1d):
        assert state[gain_key].shape == (normed.in_channels, 1, 1)  # dim 0 = input channels
    plain = make()
    plain.load_state_dict(fold_weight_norm(state))
    x = torch.randn(2, plain.in_channels, 9)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), normed(x), rtol=1e-5, atol=1e-6)


def test_effective_weight_formula_and_whole_tensor_gain():
    v = torch.randn(3, 2, 4)
    g = torch.tensor([1.5, -0.5, 2.0]).view(3, 1, 1)
    expected = g * v / v.flatten(1).norm(dim=1).view(3, 1, 1)
    torch.testing.assert_close(effective_weight(g, v), expected)
    torch.testing.assert_close(effective_weight(torch.tensor(2.0), v), 2 * v / v.norm())
    with pytest.raises(WeightsError):
        effective_weight(torch.ones(2, 1, 1), v)


def test_unpaired_tensors_are_reported():
    with pytest.raises(WeightsError, match="conv.weight_v"):
        fold_weight_norm({"conv.weight_g": torch.ones(2, 1, 1), "conv.bias": torch.zeros(2)})
    passthrough = fold_weight_norm({"a.weight": torch.ones(1), "b.filter": torch.zeros(3)})
    assert set(passthrough) == {"a.weight", "b.filter"}


def test_apply_then_remove_keeps_the_function():
    net = nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.ConvTranspose1d(4, 2, 4, 2, padding=1))
    x = torch.randn(1, 3, 6)
    before = net(x).detach()
    apply_weight_norm(net)
    assert any("original0" in k for k in net.state_dict())
    torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-6)
    remove_weight_norm(net)
    assert set(net.state_dict()) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-6)
