"""``clap-retrieval``: captions of the nearest clips of a captioned corpus, by LAION-CLAP audio embedding.

When ``mka data caption`` starts, every row of the corpus manifest (``--corpus``, else the
manifest being captioned) that has a caption and readable audio is embedded with LAION-CLAP's
audio branch (L2-normalised). For a clip, the candidates are the captions of the ``top_k``
(default 3) corpus clips with the highest cosine similarity, best first, each caption once. A
corpus clip whose embedding is the clip's own (cosine above 0.9999: the same audio) is skipped,
so a clip never retrieves its own caption when the corpus is the manifest itself.

The CLAP weights are ``--clap`` of ``mka data caption`` (default ``clap``: the pulled
``laion-clap-630k-audioset``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from mka_core.errors import InputError, WeightsError
from training.data.distill import CaptionExpert

SAME_CLIP = 0.9999
DEFAULT_CLAP = ("clap", "laion-clap", "laion")
EMBED_BATCH = 16


def load_clap(source, device: str | torch.device):
    """The clap-text plugin's LAION-CLAP scorer; the default weights, when missing, name the pull command.

    ``source`` may also be a scorer already loaded (``mka data caption`` shares the one that scores).
    """
    from mka_core.plugins import manager

    if hasattr(source, "embed_audio"):
        return source

    try:
        return manager.get("conditioner", "clap-text").load_scorer(source, device=device)
    except WeightsError as exc:
        if str(source) in DEFAULT_CLAP:
            raise WeightsError(f"{exc} To download them: mka weights pull laion-clap-630k-audioset --allow-network.") from None
        raise


class ClapRetrievalExpert(CaptionExpert):
    """Nearest captions of a captioned corpus in LAION-CLAP's audio embedding space."""

    name: ClassVar[str] = "clap-retrieval"
    kind: ClassVar[str] = "retriever"
    summary: ClassVar[str] = "captions of the nearest clips of a captioned corpus (LAION-CLAP audio embeddings)"
    sample_rate: ClassVar[int] = 16000

    def __init__(self, corpus: str | None = None, clap: Any = "clap", device: str | torch.device = "cpu",
                 top_k: int = 3) -> None:
        from mka_core.audio.io import load_audio
        from mka_core.errors import MkaError
        from training.data.manifest import read_manifest

        if corpus is None:
            raise InputError("The clap-retrieval expert needs a captioned corpus: pass --corpus MANIFEST to mka data caption.")
        if top_k < 1:
            raise InputError(f"clap-retrieval's top_k must be at least 1, got {top_k}.")
        self.top_k = int(top_k)
        self.scorer = load_clap(clap, device)
        rows = [row for row in read_manifest(corpus) if row.caption.strip()]
        waves, captions = [], []
        for row in rows:
            try:
                waves.append(load_audio(row.audio_path, self.sample_rate).numpy())
            except MkaError:
                continue  # unreadable corpus clips cannot be neighbours
            captions.append(" ".join(row.caption.split()))
        if not waves:
            raise InputError(f"The corpus {corpus} has no captioned rows with readable audio for clap-retrieval.")
        chunks = [self.scorer.embed_audio(waves[i:i + EMBED_BATCH], self.sample_rate).float().cpu()
                  for i in range(0, len(waves), EMBED_BATCH)]
        self.index = torch.cat(chunks)
        self.captions = captions

    def propose(self, audio_batch: list[np.ndarray]) -> list[list[str]]:
        if not audio_batch:
            return []
        queries = self.scorer.embed_audio(list(audio_batch), self.sample_rate).float().cpu()
        out = []
        for sims in queries @ self.index.T:
            picked: list[str] = []
            for j in torch.argsort(sims, descending=True).tolist():
                if float(sims[j]) > SAME_CLIP or self.captions[j] in picked:
                    continue
                picked.append(self.captions[j])
                if len(picked) == self.top_k:
                    break
            out.append(picked)
        return out
