"""Ranking candidates by how well they match their prompt (``mka generate --n K --rank-with CLAP``).

A *scorer* is any callable ``scorer(waveforms [B, N], prompts: list[str]) -> scores [B]``
(higher = better match), waveforms at mka's 16 kHz; the intended one is LAION-CLAP's cosine
similarity of audio and text embeddings (the clap-text plugin's ``load_scorer``). Ranking
orders each input's candidates best first and gives each its rank (1 = best) and score;
:func:`best_candidates` keeps only the best of each input. Without a scorer, candidates keep
their generation order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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


#: Names ``--rank-with`` accepts for the default LAION-CLAP weights (``$MKA_HOME/weights/laion-clap-630k-audioset``).
DEFAULT_SCORER_NAMES = ("clap", "laion-clap")


def best_candidates(ranking: Ranking) -> list[int]:
    """The batch index of the best-scoring candidate of each prompt, in the prompts' order."""
    return [index for index in ranking.order if ranking.ranks[index] == 1]


def load_clap_scorer(source: str | Path, device: torch.device | str = "cpu") -> Scorer:
    """A CLAP scorer from a LAION-CLAP checkpoint, provided by the ``clap-text`` plugin.

    ``source`` is a checkpoint file, a folder holding one, an id in ``$MKA_HOME/weights``, or
    ``clap`` for the default LAION-CLAP weights. The plugin's conditioner class offers
    ``load_scorer(source, device=...)``; without it (or without the plugin) ranking is
    unavailable and this says so in one sentence.
    """
    from mka_core.errors import PluginError
    from mka_core.plugins import manager

    text = str(source)
    path = Path(text).expanduser()
    looks_like_path = path.suffix != "" or path.is_absolute() or text.startswith((".", "~")) or "/" in text
    if text not in DEFAULT_SCORER_NAMES and looks_like_path and not path.exists():
        raise InputError(f"--rank-with {text}: no such CLAP checkpoint.")
    try:
        cls = manager.get("conditioner", "clap-text")
    except PluginError as exc:
        raise InputError("Ranking needs the clap-text plugin (pip install 'mka[clap]'), which is not installed.") from exc
    loader = getattr(cls, "load_scorer", None)
    if loader is None:
        raise InputError("The installed clap-text plugin cannot score audio against text (no load_scorer); update it.")
    return loader(path if looks_like_path else text, device=device)
