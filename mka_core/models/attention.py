"""Attention modules of the latent diffusion U-Net.

* :class:`SpatialTransformer` (family A and the family-B image model): GroupNorm, 1x1 conv
  ``proj_in``, transformer blocks over the ``h*w`` tokens (mel axis outer, time inner), 1x1
  conv ``proj_out`` (zero-initialised), residual.
* :class:`AttentionBlock` (family-B inpainting, "legacy" attention): self-attention with a
  head-major 1-D conv ``qkv`` and no cross-attention.

All attention runs through ``torch.nn.functional.scaled_dot_product_attention``; the
reference's einsum-softmax differs from it by about 2.5e-6 relative (PITFALLS.md).

Key masks: ``mask [B, T]`` bool, True = a real token. Masked keys get no attention weight.
A sample whose mask is all False attends to *nothing*: its attention result is the zero
vector (the empty weighted sum), so the block's output is ``to_out`` applied to zeros (the
bias) instead of the NaN a plain softmax over no keys would give.

Inference reuses work across sampler steps: the cross-attention keys and values of a context
are computed once and kept while the same context tensor comes back (a sampler passes one
context to every step), and self-attention runs its three projections as one matmul over
the stacked ``to_q|to_k|to_v`` weights. Both caches are bypassed while autograd records, and
are invalidated when the context or a weight is replaced or modified in place.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from mka_core.models.unet_blocks import GroupNorm32, zero_init


def masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """SDPA over ``[B, heads, N, d]`` tensors with an optional ``[B, T]`` key mask (True = keep).

    Rows whose mask is all False are computed against all keys (to keep the softmax finite)
    and then set to zero, without a host sync.
    """
    if key_mask is None:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    key_mask = key_mask.to(device=q.device, dtype=torch.bool)
    empty = ~key_mask.any(dim=1)
    safe_mask = key_mask | empty[:, None]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe_mask[:, None, None, :], scale=scale)
    return out.masked_fill(empty[:, None, None, None], 0.0)


def _identity(t: torch.Tensor) -> tuple[Any, ...]:
    """What must be unchanged for a value derived from ``t`` to still hold.

    Inference tensors keep no version counter; they can only change inside inference mode,
    which mka's samplers never do to a context.
    """
    version = -1 if t.is_inference() else t._version
    return (version, t.data_ptr(), t.shape, t.dtype, t.device)


class TensorMemo:
    """The last value derived from a few tensors, recomputed when any of them changes."""

    __slots__ = ("refs", "keys", "value")

    def __init__(self) -> None:
        self.refs: tuple[weakref.ref, ...] = ()
        self.keys: tuple[Any, ...] = ()
        self.value: Any = None

    def __deepcopy__(self, memo: dict) -> "TensorMemo":
        return TensorMemo()  # a copy's tensors are new objects: start empty

    def __reduce__(self) -> tuple:
        return (TensorMemo, ())

    def get(self, tensors: tuple[torch.Tensor, ...], compute: Callable[[], Any]) -> Any:
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            return compute()  # training: never hand autograd a cached graph-less value
        if torch.compiler.is_compiling():
            return compute()  # a compiled graph holds the computation itself
        keys = tuple(_identity(t) for t in tensors)
        refs = self.refs
        if keys == self.keys and len(refs) == len(tensors) and all(r() is t for r, t in zip(refs, tensors)):
            return self.value
        value = compute()
        self.refs, self.keys, self.value = tuple(weakref.ref(t) for t in tensors), keys, value
        return value


class CrossAttention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None.

    ``to_q/to_k/to_v`` have no bias, ``to_out.0`` has one; scale ``dim_head ** -0.5``.
    """

    def __init__(
        self, query_dim: int, context_dim: int | None = None, heads: int = 8, dim_head: int = 64, dropout: float = 0.0
    ) -> None:
        super().__init__()
        inner_dim = heads * dim_head
        context_dim = context_dim if context_dim is not None else query_dim
        self.heads = heads
        self.dim_head = dim_head
        self.scale = dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(dropout))
        self._context_kv = TensorMemo()
        self._stacked_qkv = TensorMemo()

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.dim_head).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [B, N, query_dim]``, ``context [B, T, context_dim]``, ``mask [B, T]`` -> ``[B, N, query_dim]``."""
        if context is None:
            q, k, v = self._self_qkv(x)
        else:
            q = self._split_heads(self.to_q(x))
            k, v = self._context_kv.get(
                (context, self.to_k.weight, self.to_v.weight),
                lambda: (self._split_heads(self.to_k(context)), self._split_heads(self.to_v(context))),
            )
        out = masked_attention(q, k, v, mask if context is not None else None, self.scale)
        b, _, n, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head))

    def _self_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        weights = (self.to_q.weight, self.to_k.weight, self.to_v.weight)
        recording = torch.is_grad_enabled() and any(w.requires_grad for w in weights)
        if recording or self.to_q.in_features != self.to_k.in_features:
            return tuple(self._split_heads(lin(x)) for lin in (self.to_q, self.to_k, self.to_v))  # type: ignore[return-value]
        stacked = self._stacked_qkv.get(weights, lambda: torch.cat(weights, dim=0))
        b, n, _ = x.shape
        # [B, N, 3, heads, d] -> three [B, heads, N, d] views of one matmul's output.
        qkv = F.linear(x, stacked).view(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]


class GEGLU(nn.Module):
    """``proj`` to twice the width; first half is the value, second half the (exact-GELU) gate."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward ``dim -> 4 dim -> dim``; names ``net.0.proj`` and ``net.2``."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        inner = dim * mult
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Dropout(dropout), nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention, feed-forward, each pre-LayerNorm with a residual."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int | None, dropout: float = 0.0) -> None:
        super().__init__()
        # Submodules are declared in the reference's state-dict order: attn1, ff, attn2, norms.
        self.attn1 = CrossAttention(dim, None, heads, dim_head, dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context=context, mask=mask)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Transformer over the feature map's positions, conditioned by cross-attention."""

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        *,
        depth: int = 1,
        context_dim: int | None = None,
        dropout: float = 0.0,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        inner = heads * dim_head
        # Plain GroupNorm (eps 1e-6, working dtype), unlike the ResBlocks' float32 GroupNorm32.
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, dim_head, context_dim, dropout) for _ in range(depth)
        )
        self.proj_out = zero_init(nn.Conv2d(inner, channels, 1))

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, channels, h, w = x.shape
        # Token index = row * W + column: the mel axis is outer, time inner (reference order).
        # The 1x1 convs proj_in / proj_out run as matmuls on the token view: no im2col, and no
        # copies to and from the token layout (the transposes are folded into the GEMMs).
        normed = self.norm(x).reshape(b, channels, h * w).transpose(1, 2)
        tokens = F.linear(normed, self.proj_in.weight.flatten(1), self.proj_in.bias)
        for block in self.transformer_blocks:
            tokens = block(tokens, context=context, mask=mask)
        out = F.linear(tokens, self.proj_out.weight.flatten(1), self.proj_out.bias)
        return x + out.transpose(1, 2).reshape(b, channels, h, w)


class AttentionBlock(nn.Module):
    """Family-B "legacy" self-attention: GroupNorm32, 1-D conv ``qkv``, 1-D conv ``proj_out``.

    The ``qkv`` output channels are head-major: for each head a ``[q | k | v]`` block of
    ``channels / heads`` channels (not all-Q | all-K | all-V). The reference scales q and k
    by ``d ** -0.25`` each, which equals SDPA's ``d ** -0.5`` on the product.
    """

    def __init__(self, channels: int, heads: int, *, norm_groups: int = 32) -> None:
        super().__init__()
        self.heads = heads
        self.norm = GroupNorm32(norm_groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        length = flat.shape[-1]
        d = c // self.heads
        qkv = self.qkv(self.norm(flat)).reshape(b * self.heads, 3 * d, length)
        q, k, v = (t.transpose(1, 2) for t in qkv.split(d, dim=1))
        out = F.scaled_dot_product_attention(q, k, v, scale=d**-0.5)
        out = out.transpose(1, 2).reshape(b, c, length)
        return (flat + self.proj_out(out)).reshape(b, c, *spatial)
