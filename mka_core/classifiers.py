"""The audio-classifier contract ``mka eval`` measures through (FD, KL, accuracy).

It lives in the core so that classifier plugins (``register_audio_classifiers``) build on it
without importing the ``training`` package; the built-in mel CNN and how a classifier is found
are in :mod:`training.evaluation.classifier`.

An :class:`AudioClassifier` has a ``name``, its ``classes`` (label names) and ``multi_label``
(sigmoid outputs, several classes may be on) or not (softmax outputs). Its
:meth:`~AudioClassifier.embed` takes a list of mono 16 kHz waveforms (any lengths) and returns a
:class:`ClassifierOutput`: ``embeddings [B, D]`` (what the Fréchet distance compares) and
``probabilities [B, C]`` (what KL and accuracy use). A classifier that works at another rate
resamples inside ``embed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch


@dataclass
class ClassifierOutput:
    """``embeddings [B, D]`` and ``probabilities [B, C]``, float32 on the CPU."""

    embeddings: torch.Tensor
    probabilities: torch.Tensor


def embed_in_length_batches(
    waves: Sequence[torch.Tensor],
    batch_size: int,
    forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    embed_dim: int,
    num_classes: int,
) -> ClassifierOutput:
    """Run ``forward`` (a ``[B, T]`` CPU batch -> embeddings ``[B, D]``, probabilities ``[B, C]``)
    over 1-D clips, batching only clips of equal length (no padding), so a clip scores the same in
    any batch; the outputs come back in the clips' order. For classifier plugins too."""
    if not waves:
        return ClassifierOutput(torch.zeros(0, embed_dim), torch.zeros(0, num_classes))
    embeddings: list[torch.Tensor | None] = [None] * len(waves)
    probs: list[torch.Tensor | None] = [None] * len(waves)
    by_length: dict[int, list[int]] = {}
    for index, wave in enumerate(waves):
        by_length.setdefault(wave.numel(), []).append(index)
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            embedding, p = forward(torch.stack([waves[i] for i in chunk]))
            for row, index in enumerate(chunk):
                embeddings[index], probs[index] = embedding[row].float().cpu(), p[row].float().cpu()
    return ClassifierOutput(torch.stack(embeddings), torch.stack(probs))


class AudioClassifier:
    """What ``mka eval`` needs from a classifier (subclass it, or duck-type these members)."""

    name: str = ""
    classes: list[str] = []
    multi_label: bool = True

    def embed(self, waves: Sequence[torch.Tensor]) -> ClassifierOutput:
        """Embeddings and class probabilities of mono 16 kHz waveforms (1-D tensors of any lengths)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "classes": len(self.classes), "multi_label": bool(self.multi_label)}


__all__ = ["AudioClassifier", "ClassifierOutput", "embed_in_length_batches"]
