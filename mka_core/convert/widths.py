"""Widths read from a checkpoint's tensors, so a layout-faithful but narrower file converts too.

The released checkpoints fix every width (320-channel U-Net, 128-channel VAE, bert-base-uncased,
a 1024-wide projection). A file with the same key names at smaller widths (the test checkpoints
served by the local hub in ``tests/weights``, or a distilled model in the released layout) is
the same architecture: the converters take ``model_channels`` / ``context_dim`` of the U-Net,
``ch`` of the VAE and the BERT sizes from the decisive tensors here. Everything else (depths,
channel multipliers, attention placement, key names) stays the release's, and every tensor is
still checked against the module built from these configs, so a damaged file is still refused.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
UNET_CONTEXT = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
VAE_IN = "first_stage_model.encoder.conv_in.weight"


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    tensor = state.get(key)
    return tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else None


def fit_unet_config(config: Any, state: Mapping[str, torch.Tensor]) -> Any:
    """``config`` with the model width (and cross-attention width) of the checkpoint's U-Net."""
    first = _shape(state, UNET_IN)
    if first is None or len(first) != 4:
        return config
    update: dict[str, Any] = {}
    if first[0] != config.model_channels:
        update["model_channels"] = int(first[0])
        if config.model_channels % config.norm_groups == 0 and first[0] % config.norm_groups:
            update["norm_groups"] = _largest_divisor(int(first[0]), config.norm_groups)
    context = _shape(state, UNET_CONTEXT)
    if config.context_dim is not None and context is not None and len(context) == 2 and context[1] != config.context_dim:
        update["context_dim"] = int(context[1])
    return config.model_copy(update=update) if update else config


def fit_vae_config(config: Any, state: Mapping[str, torch.Tensor]) -> Any:
    """``config`` with the first-level width of the checkpoint's VAE."""
    first = _shape(state, VAE_IN)
    if first is None or len(first) != 4 or first[0] == config.ch:
        return config
    ch = int(first[0])
    groups = config.norm_groups if ch % config.norm_groups == 0 else _largest_divisor(ch, config.norm_groups)
    return type(config)(**{**config.model_dump(), "ch": ch, "norm_groups": groups})


def _largest_divisor(width: int, at_most: int) -> int:
    return max(d for d in range(1, at_most + 1) if width % d == 0)


def bert_config(bert: Mapping[str, torch.Tensor], base: Mapping[str, Any]) -> dict[str, Any]:
    """bert-base-uncased's config with the sizes of the checkpoint's BERT tensors (prefix stripped)."""
    config = dict(base)
    words = bert.get("embeddings.word_embeddings.weight")
    if not isinstance(words, torch.Tensor) or words.ndim != 2:
        return config
    hidden = int(words.shape[1])
    layers = {int(m.group(1)) for k in bert if (m := re.match(r"encoder\.layer\.(\d+)\.", k))}
    config["vocab_size"] = int(words.shape[0])
    if hidden != config["hidden_size"]:
        config["hidden_size"] = hidden
        # Heads cannot be read from tensors; the release's 64 channels per head, at least one head.
        config["num_attention_heads"] = max(1, hidden // 64) if hidden % 64 == 0 else 1
    if layers:
        config["num_hidden_layers"] = max(layers) + 1
    inner = bert.get("encoder.layer.0.intermediate.dense.weight")
    if isinstance(inner, torch.Tensor) and inner.ndim == 2:
        config["intermediate_size"] = int(inner.shape[0])
    positions = bert.get("embeddings.position_embeddings.weight")
    if isinstance(positions, torch.Tensor) and positions.ndim == 2:
        config["max_position_embeddings"] = int(positions.shape[0])
    types = bert.get("embeddings.token_type_embeddings.weight")
    if isinstance(types, torch.Tensor) and types.ndim == 2:
        config["type_vocab_size"] = int(types.shape[0])
    return config


def projection_shapes(projection: Mapping[str, torch.Tensor], hidden: int) -> dict[str, tuple[int, ...]]:
    """The per-token projection's expected shapes for a BERT of width ``hidden`` (width from linear1)."""
    first = projection.get("linear1.weight")
    dim = int(first.shape[0]) if isinstance(first, torch.Tensor) and first.ndim == 2 else 1024
    return {"linear1.weight": (dim, hidden), "linear2.weight": (dim, dim), "layer_norm.weight": (dim,),
            "layer_norm.bias": (dim,)}
