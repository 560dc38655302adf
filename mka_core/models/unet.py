"""The latent diffusion U-Net (the reference's ``openaimodel.UNetModel``), predicting noise.

State-dict keys equal the reference checkpoints' ``model.diffusion_model.*`` keys with that
prefix removed (``time_embed.0``, ``input_blocks.1.1.transformer_blocks.0.attn1.to_q``, ...),
so converting released weights is a prefix strip.

Block layout for ``channel_mult [1, 2]`` and 2 res blocks::

    input_blocks.0        conv_in
    input_blocks.1, .2    [ResBlock, attention]           level 0
    input_blocks.3        Downsample (``op``) or a down-ResBlock (``resblock_updown``)
    input_blocks.4, .5    [ResBlock, attention]           level 1
    middle_block          [ResBlock, attention, ResBlock]
    output_blocks.0-2     [ResBlock, attention(, Upsample)] level 1, skip concat current-first
    output_blocks.3-5     [ResBlock, attention]           level 0
    out                   GroupNorm32, SiLU, zero-initialised conv
"""

from __future__ import annotations

import copy
from typing import Literal, Sequence

import torch
from pydantic import Field, model_validator
from torch import nn

from mka_core.config import StrictModel
from mka_core.errors import InputError
from mka_core.models.attention import AttentionBlock, SpatialTransformer, TensorMemo
from mka_core.models.unet_blocks import (
    Downsample,
    GroupNorm32,
    ResBlock,
    Upsample,
    timestep_embedding,
    zero_init,
)


class InputGroup(StrictModel):
    """A named run of input channels; the first conv sees the groups concatenated in order."""

    name: str
    channels: int = Field(ge=1)


class UNetConfig(StrictModel):
    """Hyper-parameters of :class:`UNet`. ``base`` is the released text-to-audio model."""

    in_channels: int = Field(4, ge=1, description="Total input channels of the first conv.")
    input_groups: list[InputGroup] | None = Field(
        None,
        description=(
            "Order of the concatenated input channels; None means one group 'x_t' of in_channels. "
            "The reference inpainting model is [x_t 4, masked_latent 4, mask 1]."
        ),
    )
    out_channels: int = Field(4, ge=1)
    model_channels: int = Field(320, ge=1)
    channel_mult: list[int] = Field(default_factory=lambda: [1, 2], min_length=1)
    num_res_blocks: int = Field(2, ge=1)
    attention_levels: list[int] | None = Field(
        None, description="Levels (0 = full resolution) with attention; None = every level. The middle always has it."
    )
    num_heads: int = Field(8, ge=1, description="Heads per attention layer (used when num_head_channels is None).")
    num_head_channels: int | None = Field(
        None, ge=1, description="If set, heads = channels / num_head_channels (family-B image model: 32)."
    )
    transformer_depth: int = Field(1, ge=1)
    context_dim: int | None = Field(1024, ge=1, description="Cross-attention context width; None = no context.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    norm_groups: int = Field(32, ge=1)
    global_condition_to_time: bool = Field(
        False,
        description=(
            "Family-B image model: a global context token [B, 1, D] is added to the time embedding "
            "(D must equal 4 * model_channels) and is also the cross-attention context."
        ),
    )
    attention_type: Literal["spatial_transformer", "legacy_attention_block"] = Field(
        "spatial_transformer",
        description="'legacy_attention_block' = family-B inpainting: self-attention only, no context.",
    )
    resblock_updown: bool = Field(False, description="Resample with ResBlocks instead of conv Downsample/Upsample.")
    guidance_embed_dim: int | None = Field(
        None, ge=2,
        description=(
            "Consistency-distilled students (`mka train distill`): the guidance scale w is an input, embedded "
            "sinusoidally (of 1000 w) in this many dimensions and added through a linear map to the time "
            "embedding's input. None = an ordinary U-Net (guidance by two forwards)."
        ),
    )

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels

    @property
    def downsample_factor(self) -> int:
        """Latent height and width must be multiples of this."""
        return 2 ** (len(self.channel_mult) - 1)

    def resolved_input_groups(self) -> list[InputGroup]:
        return self.input_groups or [InputGroup(name="x_t", channels=self.in_channels)]

    def has_attention(self, level: int) -> bool:
        return self.attention_levels is None or level in self.attention_levels

    def heads_for(self, channels: int) -> tuple[int, int]:
        """(heads, dim_head) of an attention layer at ``channels`` channels."""
        if self.num_head_channels is not None:
            return channels // self.num_head_channels, self.num_head_channels
        return self.num_heads, channels // self.num_heads

    def norm_channel_counts(self) -> list[int]:
        """Channel counts of every normalised tensor (ResBlock inputs/outputs and attention widths)."""
        mc = self.model_channels
        counts, skips, ch = [mc], [mc], mc
        for level, mult in enumerate(self.channel_mult):
            for _ in range(self.num_res_blocks):
                counts += [ch, mult * mc]
                ch = mult * mc
                skips.append(ch)
            if level != len(self.channel_mult) - 1:
                skips.append(ch)
        for mult in reversed(self.channel_mult):
            for _ in range(self.num_res_blocks + 1):
                counts += [ch + skips.pop(), mult * mc]
                ch = mult * mc
        return counts

    @model_validator(mode="after")
    def _check(self) -> "UNetConfig":
        groups = self.resolved_input_groups()
        if sum(g.channels for g in groups) != self.in_channels:
            raise ValueError(f"input_groups add up to {sum(g.channels for g in groups)} channels, not in_channels={self.in_channels}.")
        bad = sorted({c for c in self.norm_channel_counts() if c % self.norm_groups})
        if bad:
            raise ValueError(f"norm_groups={self.norm_groups} does not divide the channel counts {bad}; pick a divisor.")
        for mult in set(self.channel_mult):
            ch = mult * self.model_channels
            divisor = self.num_head_channels or self.num_heads
            if ch % divisor:
                raise ValueError(f"{ch} channels cannot be split into attention heads of {divisor}; change the head setting.")
        if self.attention_levels is not None and any(not 0 <= lv < len(self.channel_mult) for lv in self.attention_levels):
            raise ValueError(f"attention_levels {self.attention_levels} must lie in 0..{len(self.channel_mult) - 1}.")
        if self.attention_type == "legacy_attention_block" and (self.context_dim is not None or self.global_condition_to_time):
            raise ValueError("legacy_attention_block has no cross-attention; set context_dim to null and global_condition_to_time to false.")
        if self.global_condition_to_time and self.context_dim != self.time_embed_dim:
            raise ValueError(
                f"global_condition_to_time needs context_dim == 4 * model_channels = {self.time_embed_dim}, got {self.context_dim}."
            )
        return self

    @classmethod
    def preset(cls, name: str) -> "UNetConfig":
        """``base``: the released text-to-audio U-Net (160.2 M parameters); ``tiny``: same layout, small widths."""
        if name == "base":
            return cls()
        if name == "tiny":
            return cls(model_channels=32, context_dim=32, num_heads=4, norm_groups=8)
        raise InputError(f"Unknown U-Net preset '{name}'; valid presets are 'base' and 'tiny'.")


class UNetStage(nn.Sequential):
    """A sequence of blocks that routes the time embedding and the context to those that use them."""

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context, mask)
            else:
                x = layer(x)
        return x


class UNet(nn.Module):
    """Noise-prediction U-Net: ``forward(x, t, context, context_mask) -> eps``.

    ``memory_format`` (a runtime setting, not part of the config): ``"contiguous"`` (default)
    runs NCHW feature maps; ``"channels_last"`` runs NHWC, where the attention tokens become
    views and cuDNN's tensor-core convolutions need no reorder, but CPU GroupNorm is 5x slower
    (a 2-core AVX-512 CPU lost 10 % per step). The output is NCHW either way; values agree to
    float rounding.
    """

    config_class = UNetConfig
    memory_format: Literal["channels_last", "contiguous"] = "contiguous"

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        mc, emb_dim = c.model_channels, c.time_embed_dim
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # Zero-initialised, so a student made from a teacher computes exactly the teacher at first.
        self.guidance_embed = (zero_init(nn.Linear(c.guidance_embed_dim, mc, bias=False))
                               if c.guidance_embed_dim is not None else None)

        self.input_blocks = nn.ModuleList([UNetStage(nn.Conv2d(c.in_channels, mc, 3, padding=1))])
        skip_channels, ch = [mc], mc
        last = len(c.channel_mult) - 1
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                layers: list[nn.Module] = [self._resblock(ch, mult * mc)]
                ch = mult * mc
                if c.has_attention(level):
                    layers.append(self._attention(ch))
                self.input_blocks.append(UNetStage(*layers))
                skip_channels.append(ch)
            if level != last:
                down = self._resblock(ch, ch, resample="down") if c.resblock_updown else Downsample(ch)
                self.input_blocks.append(UNetStage(down))
                skip_channels.append(ch)

        self.middle_block = UNetStage(self._resblock(ch, ch), self._attention(ch), self._resblock(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(c.channel_mult))):
            mult = c.channel_mult[level]
            for i in range(c.num_res_blocks + 1):
                layers = [self._resblock(ch + skip_channels.pop(), mult * mc)]
                ch = mult * mc
                if c.has_attention(level):
                    layers.append(self._attention(ch))
                if level != 0 and i == c.num_res_blocks:
                    layers.append(self._resblock(ch, ch, resample="up") if c.resblock_updown else Upsample(ch))
                self.output_blocks.append(UNetStage(*layers))

        self.out = nn.Sequential(
            GroupNorm32(c.norm_groups, ch), nn.SiLU(), zero_init(nn.Conv2d(ch, c.out_channels, 3, padding=1))
        )
        self._mask_is_full = TensorMemo()

    def _resblock(self, channels: int, out_channels: int, resample: str | None = None) -> ResBlock:
        c = self.config
        return ResBlock(
            channels, c.time_embed_dim, out_channels, dropout=c.dropout, norm_groups=c.norm_groups, resample=resample
        )

    def _attention(self, channels: int) -> nn.Module:
        c = self.config
        heads, dim_head = c.heads_for(channels)
        if c.attention_type == "legacy_attention_block":
            return AttentionBlock(channels, heads, norm_groups=c.norm_groups)
        return SpatialTransformer(
            channels, heads, dim_head, depth=c.transformer_depth, context_dim=c.context_dim,
            dropout=c.dropout, norm_groups=c.norm_groups,
        )

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory_format == "channels_last":
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _check_inputs(
        self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels:
            raise InputError(f"The U-Net expects input [B, {c.in_channels}, H, W], got {list(x.shape)}.")
        f = c.downsample_factor
        if x.shape[2] % f or x.shape[3] % f:
            raise InputError(
                f"Latent height and width must be multiples of {f} for this U-Net, got {x.shape[2]}x{x.shape[3]}; "
                "pad or crop the latent."
            )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise InputError(f"Timesteps must be a scalar or shape [{x.shape[0]}], got {list(t.shape)}.")
        if c.context_dim is None:
            if context is not None:
                raise InputError("This U-Net has no cross-attention; call it with context=None.")
        else:
            if context is None:
                raise InputError(f"This U-Net needs a context of shape [B, T, {c.context_dim}]; got None.")
            if context.ndim != 3 or context.shape[0] != x.shape[0] or context.shape[2] != c.context_dim:
                raise InputError(f"Context must be [{x.shape[0]}, T, {c.context_dim}], got {list(context.shape)}.")
            if c.global_condition_to_time and context.shape[1] != 1:
                raise InputError(f"This U-Net takes one global context token [B, 1, D], got {context.shape[1]} tokens.")
            if mask is not None and mask.shape != context.shape[:2]:
                raise InputError(f"context_mask must be [{context.shape[0]}, {context.shape[1]}], got {list(mask.shape)}.")
        return t

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        guidance: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """Predict the noise in ``x``.

        Args:
            x: noisy latents ``[B, in_channels, H, W]`` (extra input groups concatenated after x_t).
            t: DDPM step indices ``[B]`` (or a scalar), e.g. 991, 981, ..., 1; int or float.
            context: cross-attention tokens ``[B, T, context_dim]``; None only for context-free models.
            context_mask: ``[B, T]`` bool, True = real token. Masked tokens are ignored; a sample whose
                mask is all False attends to nothing (its cross-attention result is zero, no NaN).
            guidance: the guidance scale ``[B]`` (or a scalar) of a consistency-distilled student
                (``config.guidance_embed_dim`` set; required there, refused elsewhere).
        Returns:
            ``[B, out_channels, H, W]`` in the dtype of ``x``.
        """
        t = self._check_inputs(x, t, context, context_mask)
        guidance = self.guidance_input(guidance, x)
        if context_mask is not None:
            context_mask = context_mask.to(device=x.device, dtype=torch.bool)
            # One host sync per new mask (not per step); an all-True mask enables SDPA's unmasked kernels.
            if not context_mask.is_meta and self._mask_is_full.get((context_mask,), lambda: bool(context_mask.all())):
                context_mask = None
        return self.forward_unchecked(x, t, context, context_mask, guidance)

    def guidance_input(self, guidance: torch.Tensor | float | None, x: torch.Tensor) -> torch.Tensor | None:
        """The guidance scale as a float32 ``[B]`` tensor on ``x``'s device (None for an ordinary U-Net)."""
        if self.config.guidance_embed_dim is None:
            if guidance is not None:
                raise InputError("This U-Net takes no guidance input (only consistency-distilled students do).")
            return None
        if guidance is None:
            raise InputError("This U-Net is a consistency-distilled student: call it with guidance=SCALE.")
        w = torch.as_tensor(guidance, device=x.device, dtype=torch.float32)
        if w.ndim == 0:
            w = w.expand(x.shape[0])
        if w.shape != (x.shape[0],):
            raise InputError(f"Guidance must be a scalar or shape [{x.shape[0]}], got {list(w.shape)}.")
        return w

    def forward_unchecked(
        self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None, context_mask: torch.Tensor | None,
        guidance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:meth:`forward` after its checks: ``t`` is ``[B]``, ``context_mask`` bool or None.

        Free of host syncs and data-dependent branches, so ``torch.compile`` captures it whole.
        """
        weight_dtype = self.time_embed[0].weight.dtype
        t_emb = timestep_embedding(t, self.config.model_channels)
        if self.guidance_embed is not None:
            # As in latent consistency models: w enters beside t, embedded at 1000 w so that
            # scales a few tenths apart get distinct phases.
            w_emb = timestep_embedding(guidance * 1000.0, self.config.guidance_embed_dim)
            t_emb = t_emb + self.guidance_embed(w_emb.to(weight_dtype)).float()
        emb = self.time_embed(t_emb.to(weight_dtype))
        if self.config.global_condition_to_time:
            emb = emb + context.squeeze(1).to(emb.dtype)
        h = self._layout(x)
        skips = []
        for stage in self.input_blocks:
            h = stage(h, emb, context, context_mask)
            skips.append(h)
        h = self.middle_block(h, emb, context, context_mask)
        for stage in self.output_blocks:
            # Current features first, then the skip (the reference's concat order).
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, context, context_mask)
        return self.out(h).to(x.dtype).contiguous()


def expand_input_channels(unet: UNet, extra: int | Sequence[InputGroup | tuple[str, int]], name: str = "extra") -> UNet:
    """A copy of ``unet`` whose first conv takes extra input channels appended after the existing ones.

    ``extra`` is a channel count (one group called ``name``) or a list of ``(name, channels)``
    groups, e.g. ``[("masked_latent", 4), ("mask", 1)]`` for the reference inpainting order
    ``[x_t, masked latent, mask]``. The new input weights are zero, so the copy's output equals
    the original's at expansion time whatever the extra channels hold.
    """
    if isinstance(extra, int):
        new_groups = [InputGroup(name=name, channels=extra)]
    else:
        new_groups = [g if isinstance(g, InputGroup) else InputGroup(name=g[0], channels=g[1]) for g in extra]
    if not new_groups:
        raise InputError("expand_input_channels needs at least one extra channel.")
    groups = unet.config.resolved_input_groups() + new_groups
    total = sum(g.channels for g in groups)
    config = unet.config.model_copy(update={"in_channels": total, "input_groups": groups})
    config = UNetConfig.model_validate(config.model_dump())
    new = copy.deepcopy(unet)
    new.config = config
    old_conv = unet.input_blocks[0][0]
    conv = nn.Conv2d(total, old_conv.out_channels, 3, padding=1, device=old_conv.weight.device, dtype=old_conv.weight.dtype)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, : old_conv.in_channels].copy_(old_conv.weight)
        conv.bias.copy_(old_conv.bias)
    new.input_blocks[0][0] = conv
    return new
