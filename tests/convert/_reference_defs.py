"""Independent re-statements of the reference computations, straight from PITFALLS.md.

They read tensors by their *reference* key names from a checkpoint state dict (any prefix)
and compute in the plainest way the reference does: einsum attention with the scale after the
product, GroupNorm eps per module, ``[cos, sin]`` time embedding, the skip concat order, the
decoder run from the deepest level, BERT without an attention mask, DDIM over the reference
timesteps with the last step landing on ``alphas_cumprod[0]``. Nothing here imports mka's
models, so agreement with mka is evidence, not tautology.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F

Tensors = Mapping[str, torch.Tensor]


class Params:
    """Float32 views of the tensors under ``prefix``."""

    def __init__(self, state: Tensors, prefix: str = "") -> None:
        self.state, self.prefix = state, prefix

    def __call__(self, name: str) -> torch.Tensor:
        return self.state[self.prefix + name].float()

    def has(self, name: str) -> bool:
        return (self.prefix + name) in self.state

    def sub(self, name: str) -> "Params":
        return Params(self.state, f"{self.prefix}{name}.")


def linear(x, p: Params, name: str, bias: bool = True):
    return F.linear(x, p(f"{name}.weight"), p(f"{name}.bias") if bias and p.has(f"{name}.bias") else None)


def conv2d(x, p: Params, name: str, stride: int = 1, padding: int = 0):
    return F.conv2d(x, p(f"{name}.weight"), p(f"{name}.bias"), stride=stride, padding=padding)


def group_norm(x, p: Params, name: str, eps: float, groups: int = 32):
    return F.group_norm(x.float(), groups, p(f"{name}.weight"), p(f"{name}.bias"), eps)


# -- U-Net (openaimodel) --------------------------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def resblock(p: Params, x, emb, groups: int, resample: str | None = None):
    h = F.silu(group_norm(x, p, "in_layers.0", 1e-5, groups))
    if resample == "down":
        h, x = F.avg_pool2d(h, 2, 2), F.avg_pool2d(x, 2, 2)
    elif resample == "up":
        h, x = F.interpolate(h, scale_factor=2, mode="nearest"), F.interpolate(x, scale_factor=2, mode="nearest")
    h = conv2d(h, p, "in_layers.2", padding=1)
    h = h + linear(F.silu(emb), p, "emb_layers.1")[:, :, None, None]
    h = conv2d(F.silu(group_norm(h, p, "out_layers.0", 1e-5, groups)), p, "out_layers.3", padding=1)
    skip = conv2d(x, p, "skip_connection") if p.has("skip_connection.weight") else x
    return skip + h


def cross_attention(p: Params, x, context, heads: int):
    context = x if context is None else context
    q, k, v = linear(x, p, "to_q", False), linear(context, p, "to_k", False), linear(context, p, "to_v", False)
    b, n, inner = q.shape
    d = inner // heads

    def split(t):
        return t.reshape(t.shape[0], t.shape[1], heads, d).permute(0, 2, 1, 3).reshape(t.shape[0] * heads, t.shape[1], d)

    q, k, v = split(q), split(k), split(v)
    sim = torch.einsum("b i d, b j d -> b i j", q, k) * d**-0.5
    out = torch.einsum("b i j, b j d -> b i d", sim.softmax(dim=-1), v)
    out = out.reshape(b, heads, n, d).permute(0, 2, 1, 3).reshape(b, n, inner)
    return linear(out, p, "to_out.0")


def spatial_transformer(p: Params, x, context, heads_for, groups: int):
    b, c, h, w = x.shape
    tokens = conv2d(group_norm(x, p, "norm", 1e-6, groups), p, "proj_in")
    inner = tokens.shape[1]
    heads = heads_for(inner)
    tokens = tokens.reshape(b, inner, h * w).permute(0, 2, 1)  # token = row * W + column
    blk = p.sub("transformer_blocks.0")
    ln = lambda t, name: F.layer_norm(t, (inner,), blk(f"{name}.weight"), blk(f"{name}.bias"), 1e-5)  # noqa: E731
    tokens = cross_attention(blk.sub("attn1"), ln(tokens, "norm1"), None, heads) + tokens
    tokens = cross_attention(blk.sub("attn2"), ln(tokens, "norm2"), context, heads) + tokens
    value, gate = linear(ln(tokens, "norm3"), blk, "ff.net.0.proj").chunk(2, dim=-1)
    tokens = linear(value * F.gelu(gate), blk, "ff.net.2") + tokens
    tokens = tokens.permute(0, 2, 1).reshape(b, inner, h, w)
    return conv2d(tokens, p, "proj_out") + x


def legacy_attention(p: Params, x, heads: int, groups: int):
    b, c, *spatial = x.shape
    flat = x.reshape(b, c, -1)
    qkv = F.conv1d(group_norm(flat, p, "norm", 1e-5, groups), p("qkv.weight"), p("qkv.bias"))
    length = qkv.shape[-1]
    ch = c // heads
    q, k, v = qkv.reshape(b * heads, 3 * ch, length).split(ch, dim=1)  # head-major [q|k|v] per head
    scale = 1 / math.sqrt(math.sqrt(ch))
    weight = torch.einsum("bct,bcs->bts", q * scale, k * scale).float().softmax(dim=-1)
    a = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, length)
    return (flat + F.conv1d(a, p("proj_out.weight"), p("proj_out.bias"))).reshape(b, c, *spatial)


def unet_eps(state: Tensors, prefix: str, x, t, context=None, *, heads: int | None = 8, head_channels: int | None = None,
             groups: int = 32, global_token: bool = False, updown: bool = False):
    """The reference U-Net (channel_mult [1, 2], 2 res blocks) read from ``state``."""
    p = Params(state, prefix)
    heads_for = (lambda ch: ch // head_channels) if head_channels else (lambda ch: heads)
    mc = p("input_blocks.0.0.weight").shape[0]
    emb = linear(F.silu(linear(timestep_embedding(t, mc), p, "time_embed.0")), p, "time_embed.2")
    if global_token:
        emb = emb + context.squeeze(1)

    def attention(q: Params, h):
        if q.has("qkv.weight"):
            return legacy_attention(q, h, heads_for(h.shape[1]), groups)
        return spatial_transformer(q, h, context, heads_for, groups)

    hs = []
    h = conv2d(x, p, "input_blocks.0.0", padding=1)
    hs.append(h)
    for i in (1, 2, 3, 4, 5):
        blk = p.sub(f"input_blocks.{i}")
        if i == 3:
            h = resblock(blk.sub("0"), h, emb, groups, "down") if updown else conv2d(h, blk, "0.op", stride=2, padding=1)
        else:
            h = attention(blk.sub("1"), resblock(blk.sub("0"), h, emb, groups))
        hs.append(h)
    mid = p.sub("middle_block")
    h = resblock(mid.sub("2"), attention(mid.sub("1"), resblock(mid.sub("0"), h, emb, groups)), emb, groups)
    for i in range(6):
        blk = p.sub(f"output_blocks.{i}")
        h = attention(blk.sub("1"), resblock(blk.sub("0"), torch.cat([h, hs.pop()], dim=1), emb, groups))
        if i == 2:
            if updown:
                h = resblock(blk.sub("2"), h, emb, groups, "up")
            else:
                h = conv2d(F.interpolate(h, scale_factor=2, mode="nearest"), blk, "2.conv", padding=1)
    return conv2d(F.silu(group_norm(h, p, "out.0", 1e-5, groups)), p, "out.2", padding=1)


# -- VAE decoder (diffusionmodules/model.py) ---------------------------------------------------------------


def vae_resnet(p: Params, x, groups: int):
    h = conv2d(F.silu(group_norm(x, p, "norm1", 1e-6, groups)), p, "conv1", padding=1)
    h = conv2d(F.silu(group_norm(h, p, "norm2", 1e-6, groups)), p, "conv2", padding=1)
    skip = conv2d(x, p, "nin_shortcut") if p.has("nin_shortcut.weight") else x
    return skip + h


def vae_attention(p: Params, x, groups: int):
    h = group_norm(x, p, "norm", 1e-6, groups)
    q, k, v = conv2d(h, p, "q"), conv2d(h, p, "k"), conv2d(h, p, "v")
    b, c, hh, ww = q.shape
    q = q.reshape(b, c, hh * ww).permute(0, 2, 1)
    w = torch.bmm(q, k.reshape(b, c, hh * ww)) * (int(c) ** -0.5)
    w = w.softmax(dim=2).permute(0, 2, 1)
    out = torch.bmm(v.reshape(b, c, hh * ww), w).reshape(b, c, hh, ww)
    return x + conv2d(out, p, "proj_out")


def vae_decode(state: Tensors, prefix: str, z, scale_factor: float, groups: int = 32):
    """``decode_first_stage``: multiply by 1/scale_factor, post_quant_conv, decoder (deepest level first)."""
    p = Params(state, prefix)
    z = (1.0 / scale_factor) * z
    h = conv2d(conv2d(z, p, "post_quant_conv"), p, "decoder.conv_in", padding=1)
    d = p.sub("decoder")
    h = vae_resnet(d.sub("mid.block_1"), h, groups)
    h = vae_attention(d.sub("mid.attn_1"), h, groups)
    h = vae_resnet(d.sub("mid.block_2"), h, groups)
    levels = 1 + max(int(k[len(prefix + "decoder.up."):].split(".")[0]) for k in state
                     if k.startswith(prefix + "decoder.up."))
    for level in reversed(range(levels)):
        up = d.sub(f"up.{level}")
        block = 0
        while up.has(f"block.{block}.conv1.weight"):
            h = vae_resnet(up.sub(f"block.{block}"), h, groups)
            if up.has(f"attn.{block}.q.weight"):
                h = vae_attention(up.sub(f"attn.{block}"), h, groups)
            block += 1
        if level != 0:
            h = conv2d(F.interpolate(h, scale_factor=2.0, mode="nearest"), up, "upsample.conv", padding=1)
    return conv2d(F.silu(group_norm(h, d, "norm_out", 1e-6, groups)), d, "conv_out", padding=1)


# -- text encoder (bert-base-uncased, then the CLAP projection) ---------------------------------------------------


def bert_projection(state: Tensors, prefix: str, ids: torch.Tensor, heads: int = 12) -> torch.Tensor:
    """``caption_encoder``: BERT on input_ids only (no attention mask), then the per-token projection."""
    p = Params(state, prefix + "base.")
    hidden = p("embeddings.word_embeddings.weight").shape[1]
    n = ids.shape[1]
    x = (p("embeddings.word_embeddings.weight")[ids] + p("embeddings.position_embeddings.weight")[:n][None]
         + p("embeddings.token_type_embeddings.weight")[0])
    ln = lambda t, q, name: F.layer_norm(t, (hidden,), q(f"{name}.weight"), q(f"{name}.bias"), 1e-12)  # noqa: E731
    x = ln(x, p, "embeddings.LayerNorm")
    layer = 0
    d = hidden // heads
    while p.has(f"encoder.layer.{layer}.attention.self.query.weight"):
        q = p.sub(f"encoder.layer.{layer}")
        b = x.shape[0]
        split = lambda t: t.reshape(b, n, heads, d).transpose(1, 2)  # noqa: E731
        qq = split(linear(x, q, "attention.self.query"))
        kk = split(linear(x, q, "attention.self.key"))
        vv = split(linear(x, q, "attention.self.value"))
        weights = (qq @ kk.transpose(-1, -2) / math.sqrt(d)).softmax(dim=-1)
        ctx = (weights @ vv).transpose(1, 2).reshape(b, n, hidden)
        x = ln(linear(ctx, q, "attention.output.dense") + x, q, "attention.output.LayerNorm")
        inter = F.gelu(linear(x, q, "intermediate.dense"))
        x = ln(linear(inter, q, "output.dense") + x, q, "output.LayerNorm")
        layer += 1
    proj = Params(state, prefix + "projection.")
    e1 = F.linear(x, proj("linear1.weight"))
    e2 = F.linear(F.gelu(e1), proj("linear2.weight"))
    width = e1.shape[-1]
    return F.layer_norm(e1 + e2, (width,), proj("layer_norm.weight"), proj("layer_norm.bias"), 1e-5)


# -- DDIM with classifier-free guidance (ddim.py) -----------------------------------------------------------


def ddim_timesteps(steps: int, total: int = 1000) -> list[int]:
    return [t + 1 for t in range(0, total, total // steps)]


def ddim_sample(eps_fn, x_T: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int, cond, uncond, scale: float):
    """eta = 0; timesteps 991..1; abar_prev of the last step is alphas_cumprod[0]; x0 not clipped."""
    abar = alphas_cumprod.double()
    ts = ddim_timesteps(steps, abar.numel())
    prev = [float(abar[0])] + [float(abar[t]) for t in ts[:-1]]
    x = x_T.clone()
    for index in reversed(range(len(ts))):
        t = ts[index]
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        if scale == 1.0 or uncond is None:
            e = eps_fn(x, tt, cond)
        else:
            e_u, e_c = eps_fn(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([uncond, cond])).chunk(2)
            e = e_u + scale * (e_c - e_u)
        a_t, a_prev = float(abar[t]), prev[index]
        x0 = (x - math.sqrt(1 - a_t) * e) / math.sqrt(a_t)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * e
    return x
