"""Which published checkpoint a state dict is, told by its key signature.

The reference loads its checkpoints with ``strict=False``, so a wrong file would load
"successfully" into the wrong model. mka looks at a few decisive keys and shapes instead,
and names the family (and the command) a file belongs to when it is given to the wrong one.

maa1 (family A) and ta40multi (family B text-to-audio) have the same keys and shapes; only
their mel front ends differ, which no tensor records. Those two cannot be told apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from mka_core.errors import WeightsError

UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
BERT_WORDS = "cond_stage_model.caption_encoder.base.embeddings.word_embeddings.weight"
CLIP_TOKENS = "cond_stage_model.model.token_embedding.weight"
VAE_AS_COND = "cond_stage_model.encoder.conv_in.weight"


@dataclass(frozen=True)
class Kind:
    """A layout: what it is and the command that converts it."""

    name: str
    description: str
    command: str


KINDS: dict[str, Kind] = {
    "t2a": Kind(
        "t2a",
        "a text-to-audio checkpoint with the BERT + projection text encoder (maa1_full.ckpt, or family-B ta40multi)",
        "mka convert maa1 (for maa1_full.ckpt) or mka convert maa-b --kind t2a (for ta40multi)",
    ),
    "i2a": Kind(
        "i2a",
        "a family-B image-to-audio checkpoint (ta54: OpenCLIP ViT-H-14 condition, 256-channel U-Net)",
        "mka convert maa-b --kind i2a",
    ),
    "inpaint": Kind(
        "inpaint",
        "a family-B inpainting checkpoint (inpaint7: 9-channel U-Net, no text encoder)",
        "mka convert maa-b --kind inpaint",
    ),
    "bigvgan": Kind(
        "bigvgan",
        "a BigVGAN vocoder checkpoint (best_netG.pt)",
        "pass its folder (with args.yml) as --vocoder",
    ),
}


def _shape(state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...] | None:
    tensor = state.get(key)
    return tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else None


def identify(state: Mapping[str, torch.Tensor]) -> str | None:
    """The layout name (a key of :data:`KINDS`) whose signature ``state`` carries, or None."""
    unet_in = _shape(state, UNET_IN)
    if unet_in is not None and len(unet_in) == 4:
        if unet_in[1] == 9 and VAE_AS_COND in state:
            return "inpaint"
        if CLIP_TOKENS in state:
            return "i2a"
        if BERT_WORDS in state:
            return "t2a"
        return None
    if any(k.startswith("conv_pre.") for k in state) and any(k.startswith("resblocks.") for k in state):
        return "bigvgan"
    return None


def require_kind(state: Mapping[str, torch.Tensor], expected: str, source: str) -> None:
    """Stop with one sentence when ``state`` is not of the ``expected`` layout."""
    found = identify(state)
    if found == expected:
        return
    want = KINDS[expected]
    if found is None:
        sample = ", ".join(list(state)[:3]) or "no tensors"
        raise WeightsError(
            f"{source} is not {want.description}: it matches no Make-An-Audio layout mka knows (first keys: {sample})."
        )
    got = KINDS[found]
    raise WeightsError(f"{source} is not {want.description}; it looks like {got.description} - use {got.command}.")
