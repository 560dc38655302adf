"""The clip-text and clip-image conditioners (OpenCLIP, one global token).

Both write into ``openclip:<model>/<pretrained>``: train a diffusion model on the text
embeddings of captions, then generate from images (or, with clip-video, from videos).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch

from mka_core.conditioning import Condition, InputKind
from mka_core.errors import InputError
from mka_core.plugins.hookspecs import hookimpl
from mka_plugins.conditioners._openclip import OpenClipConditioner


class ClipTextConditioner(OpenClipConditioner):
    """Captions through the OpenCLIP text tower: ``encode_text``, L2-normalised, ``[B, 1, D]``."""

    name: ClassVar[str] = "clip-text"
    input_kind: ClassVar[InputKind] = "text"
    tower = "text"
    summary: ClassVar[str] = "OpenCLIP text tower: train on captions, then generate from images or videos in the same space."

    def prepare(self, inputs: Sequence[Any]) -> torch.Tensor:
        """Texts -> ``[B, context_length]`` token ids (open_clip's tokenizer, truncated, CPU)."""
        texts = list(inputs)
        if not texts:
            raise InputError("clip-text got no texts to encode; pass at least one prompt.")
        for text in texts:
            if not isinstance(text, str):
                raise InputError(f"clip-text takes strings, not {type(text).__name__}.")
        return self.tokenizer(texts)

    def encode(self, prepared: torch.Tensor) -> Condition:
        features = self.clip.encode_text(prepared.to(self.device))
        return self.global_condition(features)


class ClipImageConditioner(OpenClipConditioner):
    """Images through the OpenCLIP image tower: ``encode_image``, L2-normalised, ``[B, 1, D]``."""

    name: ClassVar[str] = "clip-image"
    input_kind: ClassVar[InputKind] = "image"
    tower = "image"
    summary: ClassVar[str] = "OpenCLIP image tower, one L2-normalised global token."

    def prepare(self, inputs: Sequence[Any]) -> torch.Tensor:
        """Images -> ``[B, 3, S, S]`` float32 pixels (decode, convert to RGB, open_clip transform)."""
        items = list(inputs)
        if not items:
            raise InputError("clip-image got no images to encode; pass at least one image.")
        return torch.stack([self.transform(item) for item in items])

    def encode(self, prepared: torch.Tensor) -> Condition:
        return self.global_condition(self.encode_pixels(prepared))


@hookimpl
def register_conditioners(register):
    register(ClipTextConditioner)
    register(ClipImageConditioner)
