"""The diffusers peer of mka's U-Net: same architecture, same weights, same function.

``build_peer(unet)`` returns a ``diffusers.UNet2DConditionModel`` configured to the shape of
an mka :class:`~mka_core.models.unet.UNet` (two-level 320/640 layout of the ``base`` preset,
or any other channel_mult whose every level has cross-attention) and loaded with mka's
weights. mka's keys follow the CompVis ``openaimodel`` layout, diffusers' its own; the
mapping below is derived from the block structure, not from a table.

diffusers is the ``bench`` extra: ``pip install -e .[bench]``.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from mka_core.models.unet import UNet

#: Sub-module renames inside a residual block (reference name -> diffusers name).
RESBLOCK_RENAMES = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}


def peer_config(unet: UNet) -> dict[str, Any]:
    """``UNet2DConditionModel`` keyword arguments describing the same network as ``unet``."""
    c = unet.config
    if c.attention_type != "spatial_transformer" or c.context_dim is None or c.global_condition_to_time:
        raise ValueError("the diffusers peer only mirrors cross-attention U-Nets (family A)")
    if c.attention_levels is not None and sorted(c.attention_levels) != list(range(len(c.channel_mult))):
        raise ValueError("the diffusers peer needs attention at every level")
    if c.resblock_updown or c.num_head_channels is not None or c.transformer_depth != 1:
        raise ValueError("the diffusers peer mirrors conv resampling, a fixed head count and depth 1 only")
    levels = len(c.channel_mult)
    return dict(
        sample_size=None,
        in_channels=c.in_channels,
        out_channels=c.out_channels,
        flip_sin_to_cos=True,  # cosine half first, as mka's timestep embedding
        freq_shift=0,  # frequencies divide by half, not half - 1
        down_block_types=("CrossAttnDownBlock2D",) * levels,
        mid_block_type="UNetMidBlock2DCrossAttn",
        up_block_types=("CrossAttnUpBlock2D",) * levels,
        block_out_channels=tuple(m * c.model_channels for m in c.channel_mult),
        layers_per_block=c.num_res_blocks,
        downsample_padding=1,
        act_fn="silu",
        norm_num_groups=c.norm_groups,
        norm_eps=1e-5,
        cross_attention_dim=c.context_dim,
        # diffusers' historical naming: for this block family "attention_head_dim" is the head count.
        attention_head_dim=c.num_heads,
        use_linear_projection=False,
        dropout=c.dropout,
    )


def _key_map(unet: UNet) -> dict[str, str]:
    """mka module prefix -> diffusers module prefix, for every block of ``unet``."""
    c = unet.config
    levels, n = len(c.channel_mult), c.num_res_blocks
    mapping = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
               "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out",
               "middle_block.0": "mid_block.resnets.0", "middle_block.1": "mid_block.attentions.0",
               "middle_block.2": "mid_block.resnets.1"}
    index = 1
    for level in range(levels):
        for i in range(n):
            mapping[f"input_blocks.{index}.0"] = f"down_blocks.{level}.resnets.{i}"
            mapping[f"input_blocks.{index}.1"] = f"down_blocks.{level}.attentions.{i}"
            index += 1
        if level != levels - 1:
            mapping[f"input_blocks.{index}.0.op"] = f"down_blocks.{level}.downsamplers.0.conv"
            index += 1
    for block, level in enumerate(reversed(range(levels))):
        for i in range(n + 1):
            index = block * (n + 1) + i
            mapping[f"output_blocks.{index}.0"] = f"up_blocks.{block}.resnets.{i}"
            mapping[f"output_blocks.{index}.1"] = f"up_blocks.{block}.attentions.{i}"
            if level != 0 and i == n:
                mapping[f"output_blocks.{index}.2.conv"] = f"up_blocks.{block}.upsamplers.0.conv"
    return mapping


def convert_state_dict(unet: UNet) -> dict[str, torch.Tensor]:
    """mka's state dict renamed to diffusers' keys (tensors shared, not copied)."""
    mapping = _key_map(unet)
    # Longest prefixes first so "output_blocks.2.2.conv" wins over "output_blocks.2.2".
    prefixes = sorted(mapping, key=len, reverse=True)
    out: dict[str, torch.Tensor] = {}
    for key, value in unet.state_dict().items():
        prefix = next((p for p in prefixes if key == p or key.startswith(p + ".")), None)
        if prefix is None:
            raise KeyError(f"no diffusers name for mka key {key}")
        rest = key[len(prefix):]
        if ".resnets." in mapping[prefix]:
            for old, new in RESBLOCK_RENAMES.items():
                rest = re.sub(rf"^\.{re.escape(old)}\.", f".{new}.", rest)
        out[mapping[prefix] + rest] = value
    return out


def build_peer(unet: UNet) -> torch.nn.Module:
    """A diffusers ``UNet2DConditionModel`` computing the same function as ``unet`` (float32, eval)."""
    from diffusers import UNet2DConditionModel

    peer = UNet2DConditionModel(**peer_config(unet))
    weights = convert_state_dict(unet)
    expected = peer.state_dict()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise KeyError(f"key mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
    for key, value in weights.items():
        if expected[key].shape != value.shape:
            raise ValueError(f"shape mismatch at {key}: {tuple(value.shape)} vs {tuple(expected[key].shape)}")
    peer.load_state_dict({k: v.detach().clone().float() for k, v in weights.items()})
    return peer.eval().requires_grad_(False)


class PeerCall(torch.nn.Module):
    """``peer(x, t, context)`` with mka's calling convention (returns the noise tensor)."""

    def __init__(self, peer: torch.nn.Module) -> None:
        super().__init__()
        self.peer = peer

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.peer(x, t, encoder_hidden_states=context, return_dict=False)[0]
