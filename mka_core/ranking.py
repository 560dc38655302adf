"""Ranking candidates by how well they match their prompt (``mka generate --n K --rank-with CLAP``).

A *scorer* is any callable ``scorer(waveforms [B, N], prompts: list[str]) -> scores [B]``
(higher = better match); a CLAP model giving the cosine similarity of audio and text
embeddings is the intended one. Ranking never drops a candidate: it only orders each
input's candidates best first. Without a scorer, candidates keep their generation order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from mka_core.errors import InputError

Scorer = Callable[[torch.Tensor, list[str]], torch.Tensor]


@dataclass
class Ranking:
    """``order``: indices into the batch, grouped by prompt (first appearance), best first within a group."""

    order: list[int]
    scores: list[float]
    #: Rank of each batch index within its prompt's group (1 = best).
    ranks: list[int]


def rank_candidates(waveforms: torch.Tensor, prompts: Sequence[str], scorer: Scorer) -> Ranking:
    """Score every waveform against its own prompt and order each prompt's candidates best first."""
    if waveforms.shape[0] != len(prompts):
        raise InputError(f"Got {waveforms.shape[0]} waveforms for {len(prompts)} prompts; give one prompt per waveform.")
    with torch.no_grad():
        scores = [float(s) for s in torch.as_tensor(scorer(waveforms, list(prompts))).flatten().tolist()]
    if len(scores) != len(prompts):
        raise InputError(f"The scorer returned {len(scores)} scores for {len(prompts)} candidates.")
    groups: dict[str, list[int]] = {}
    for index, prompt in enumerate(prompts):
        groups.setdefault(prompt, []).append(index)
    order: list[int] = []
    ranks = [0] * len(prompts)
    for members in groups.values():
        best_first = sorted(members, key=lambda i: (-scores[i], i))  # ties keep generation order
        for rank, index in enumerate(best_first, start=1):
            ranks[index] = rank
        order.extend(best_first)
    return Ranking(order, scores, ranks)


def load_clap_scorer(path: str | Path, device: torch.device | str = "cpu") -> Scorer:
    """A CLAP scorer from a LAION-CLAP checkpoint, provided by the ``clap-text`` plugin.

    The plugin's conditioner class offers ``load_scorer(path, device=...)``; without it (or
    without the plugin) ranking is unavailable and this says so in one sentence.
    """
    from mka_core.errors import PluginError
    from mka_core.plugins import manager

    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"--rank-with {path}: no such CLAP checkpoint.")
    try:
        cls = manager.get("conditioner", "clap-text")
    except PluginError as exc:
        raise InputError("Ranking needs the clap-text plugin (pip install 'mka[clap]'), which is not installed.") from exc
    loader = getattr(cls, "load_scorer", None)
    if loader is None:
        raise InputError("The installed clap-text plugin cannot score audio against text (no load_scorer); update it.")
    return loader(path, device=device)
