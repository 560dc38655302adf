"""Running 1-D generator convolutions in a time-major ("channels last") memory layout.

On CPU, oneDNN's convolutions are markedly faster when channels are the innermost axis: for
the depthwise anti-aliasing filters of BigVGAN 3-5x, for its dense convolutions 20-40 %
(measured on 2 cores with torch 2.11). PyTorch exposes that layout for 4-D tensors only, so
a signal ``[B, C, T]`` travels through the generators as ``[B, C, 1, T]`` in
``torch.channels_last`` memory format, and each ``nn.Conv1d`` / ``nn.ConvTranspose1d`` is
applied through its 2-D counterpart with a ``[.., 1, k]`` view of its own weight. The
modules and their parameters stay 1-D, so state dicts keep the reference names and shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAYOUT = torch.channels_last


def to_time_major(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, T]`` -> ``[B, C, 1, T]`` stored channels-last."""
    return x.unsqueeze(2).contiguous(memory_format=LAYOUT)


def from_time_major(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, 1, T]`` -> ``[B, C, T]`` (contiguous)."""
    return x.squeeze(2).contiguous()


def _kernel_2d(weight: torch.Tensor) -> torch.Tensor:
    kernel = weight.unsqueeze(2)
    # A no-op when the parameter already has channels-last strides (see restride_weights).
    return kernel.contiguous(memory_format=LAYOUT)


def conv1d(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """Apply ``conv`` to a time-major ``[B, C, 1, T]`` signal."""
    return F.conv2d(
        x,
        _kernel_2d(conv.weight),
        conv.bias,
        stride=(1, conv.stride[0]),
        padding=(0, conv.padding[0]),
        dilation=(1, conv.dilation[0]),
        groups=conv.groups,
    )


def conv_transpose1d(x: torch.Tensor, conv: nn.ConvTranspose1d) -> torch.Tensor:
    """Apply ``conv`` (a transposed conv) to a time-major ``[B, C, 1, T]`` signal."""
    return F.conv_transpose2d(
        x,
        _kernel_2d(conv.weight),
        conv.bias,
        stride=(1, conv.stride[0]),
        padding=(0, conv.padding[0]),
        output_padding=(0, conv.output_padding[0]),
        groups=conv.groups,
        dilation=(1, conv.dilation[0]),
    )


def restride_weights(module: nn.Module) -> None:
    """Give every 1-D conv weight of ``module`` channels-last strides, in place.

    Shapes and values are unchanged (``[out, in, k]`` stays ``[out, in, k]``); only the memory
    order becomes ``out, k, in``, so :func:`conv1d` needs no per-call reordering. Loading a
    state dict copies into these strides, and ``.to(device)`` keeps them.
    """
    for conv in module.modules():
        if isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d)) and not nn.utils.parametrize.is_parametrized(conv):
            weight = conv.weight
            if weight.device.type == "meta":
                continue
            # [out, in, k] stored as [out, k, in]: an (in, k) transpose made contiguous and viewed back.
            restrided = weight.detach().transpose(1, 2).contiguous().transpose(1, 2)
            conv.weight = nn.Parameter(restrided, requires_grad=weight.requires_grad)
