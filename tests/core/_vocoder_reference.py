"""Straightforward re-statements of the reference generators, for equivalence tests.

Written directly from the facts in shared/reference/PITFALLS.md (and the original HiFi-GAN
layout), in the plain [B, C, T] layout with the old hook-based weight norm, so that their
state dicts carry ``weight_g`` / ``weight_v`` exactly like the released checkpoints. They are
slow and simple on purpose: mka's optimised generators must reproduce them.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn


def hook_weight_norm(module: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the hook API is deprecated, which is the point here
        return nn.utils.weight_norm(module)


def kaiser_sinc_direct(cutoff: float = 0.25, half_width: float = 0.3, taps: int = 12) -> torch.Tensor:
    import numpy as np
    from scipy.signal import kaiser_beta
    from scipy.signal.windows import kaiser

    attenuation = 2.285 * (taps // 2 - 1) * math.pi * 4 * half_width + 7.95
    window = kaiser(taps, kaiser_beta(attenuation), sym=True)
    time = np.arange(-taps // 2, taps // 2) + 0.5
    kernel = 2 * cutoff * window * np.sinc(2 * cutoff * time)
    return torch.tensor(kernel / kernel.sum(), dtype=torch.float32).view(1, 1, taps)


class RefSnakeBeta(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.randn(channels) * 0.3)
        self.beta = nn.Parameter(torch.randn(channels) * 0.3)

    def forward(self, x):
        alpha = torch.exp(self.alpha)[None, :, None]
        beta = torch.exp(self.beta)[None, :, None]
        return x + 1.0 / (beta + 1e-9) * torch.sin(x * alpha) ** 2


class _Filter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("filter", kaiser_sinc_direct())


class _Down(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lowpass = _Filter()


class RefActivation1d(nn.Module):
    def __init__(self, act: nn.Module) -> None:
        super().__init__()
        self.act = act
        self.upsample = _Filter()
        self.downsample = _Down()

    def forward(self, x):
        channels = x.shape[1]
        up_filter = self.upsample.filter.expand(channels, -1, -1)
        x = F.pad(x, (5, 5), mode="replicate")
        x = 2 * F.conv_transpose1d(x, up_filter, stride=2, groups=channels)
        x = x[..., 15:-15]
        x = self.act(x)
        x = F.pad(x, (5, 6), mode="replicate")
        return F.conv1d(x, self.downsample.lowpass.filter.expand(channels, -1, -1), stride=2, groups=channels)


def _pad(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class RefAMPBlock1(nn.Module):
    def __init__(self, channels, kernel, dilations):
        super().__init__()
        self.convs1 = nn.ModuleList(
            hook_weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=d, padding=_pad(kernel, d)))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            hook_weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=1, padding=_pad(kernel)))
            for _ in dilations
        )
        self.activations = nn.ModuleList(RefActivation1d(RefSnakeBeta(channels)) for _ in range(2 * len(dilations)))

    def forward(self, x):
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.activations[::2], self.activations[1::2]):
            x = c2(a2(c1(a1(x)))) + x
        return x


class RefBigVGAN(nn.Module):
    def __init__(self, mels, rates, kernels, width, res_kernels, res_dilations):
        super().__init__()
        self.conv_pre = hook_weight_norm(nn.Conv1d(mels, width, 7, 1, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        self.k = len(res_kernels)
        for i, (u, k) in enumerate(zip(rates, kernels)):
            up = nn.ConvTranspose1d(width // 2**i, width // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            self.ups.append(nn.ModuleList([hook_weight_norm(up)]))
            for rk, rd in zip(res_kernels, res_dilations):
                self.resblocks.append(RefAMPBlock1(width // 2 ** (i + 1), rk, rd))
        final = width // 2 ** len(rates)
        self.activation_post = RefActivation1d(RefSnakeBeta(final))
        self.conv_post = hook_weight_norm(nn.Conv1d(final, 1, 7, 1, padding=3))

    def forward(self, x):
        x = self.conv_pre(x)
        for i in range(len(self.ups)):
            x = self.ups[i][0](x)
            xs = sum(self.resblocks[i * self.k + j](x) for j in range(self.k))
            x = xs / self.k
        x = self.conv_post(self.activation_post(x))
        return torch.tanh(x)


class RefResBlock1(nn.Module):
    def __init__(self, channels, kernel, dilations):
        super().__init__()
        self.convs1 = nn.ModuleList(
            hook_weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=d, padding=_pad(kernel, d)))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            hook_weight_norm(nn.Conv1d(channels, channels, kernel, 1, padding=_pad(kernel))) for _ in dilations
        )

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            x = c2(F.leaky_relu(c1(F.leaky_relu(x, 0.1)), 0.1)) + x
        return x


class RefResBlock2(nn.Module):
    def __init__(self, channels, kernel, dilations):
        super().__init__()
        self.convs = nn.ModuleList(
            hook_weight_norm(nn.Conv1d(channels, channels, kernel, 1, dilation=d, padding=_pad(kernel, d)))
            for d in dilations
        )

    def forward(self, x):
        for c in self.convs:
            x = c(F.leaky_relu(x, 0.1)) + x
        return x


class RefHiFiGAN(nn.Module):
    def __init__(self, mels, rates, kernels, width, res_kernels, res_dilations, block="1"):
        super().__init__()
        block_class = RefResBlock1 if block == "1" else RefResBlock2
        self.conv_pre = hook_weight_norm(nn.Conv1d(mels, width, 7, 1, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        self.k = len(res_kernels)
        for i, (u, k) in enumerate(zip(rates, kernels)):
            self.ups.append(
                hook_weight_norm(nn.ConvTranspose1d(width // 2**i, width // 2 ** (i + 1), k, u, padding=(k - u) // 2))
            )
            for rk, rd in zip(res_kernels, res_dilations):
                self.resblocks.append(block_class(width // 2 ** (i + 1), rk, rd))
        self.conv_post = hook_weight_norm(nn.Conv1d(width // 2 ** len(rates), 1, 7, 1, padding=3))

    def forward(self, x):
        x = self.conv_pre(x)
        for i in range(len(self.ups)):
            x = self.ups[i](F.leaky_relu(x, 0.1))
            xs = sum(self.resblocks[i * self.k + j](x) for j in range(self.k))
            x = xs / self.k
        x = self.conv_post(F.leaky_relu(x))
        return torch.tanh(x)


def randomise_weight_norm(module: nn.Module, generator: torch.Generator) -> None:
    """Give every ``weight_g`` values unrelated to ``||weight_v||`` (a trained checkpoint's case)."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("weight_g"):
                param.copy_(torch.rand(param.shape, generator=generator) * 0.5 + 0.05)
            elif name.endswith("weight_v") or name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
