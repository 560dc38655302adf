"""``panns-tags``: the PANNs Cnn14 AudioSet tagger's top tags, composed into captions with mka's templates.

For each clip the tagger (the ``panns-cnn14`` audio classifier, weights in
``$MKA_HOME/weights/panns-cnn14`` with AudioSet's ``class_labels_indices.csv`` for the names)
gives 527 sigmoid probabilities; the ``top_k`` (default 3) classes are the clip's tags, most
probable first. They are composed with the caption templates of dynamic reprogramming
(:data:`training.data.reprogram.TEMPLATES`): the first tag fills ``<text>``, the next ones the
event slots ``<e1>``, ``<e2>``; each tag reads "a <tag> sound" and ``<v>`` is "heard". Every
template whose slots the tags can fill gives one candidate (up to 12 with three tags), each
caption once; CLAP then picks among them (and the other experts' candidates).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from mka_core.errors import WeightsError
from training.data.distill import CaptionExpert

PHRASE_WORDS = {"q": ("a",), "a": ("",), "n": ("sound",)}
VERB = "heard"


def compose_captions(tags: list[str]) -> list[str]:
    """Captions of ``tags`` (most probable first) from the reprogramming templates."""
    from training.data.reprogram import TEMPLATES, event_phrase, fill_template, template_events

    rng = np.random.default_rng(0)  # one word per list: the phrases do not depend on it
    phrases = [event_phrase(tag.lower(), PHRASE_WORDS, rng) for tag in tags]
    out: list[str] = []
    for template in TEMPLATES:
        events = template_events(template)
        if not phrases or len(phrases) < 1 + events:
            continue
        caption = fill_template(template, phrases[0], phrases[1:1 + events], VERB)
        if caption not in out:
            out.append(caption)
    return out


class PannsTagsExpert(CaptionExpert):
    """Captions composed from the top AudioSet tags of PANNs Cnn14."""

    name: ClassVar[str] = "panns-tags"
    kind: ClassVar[str] = "captioner"
    summary: ClassVar[str] = "PANNs Cnn14's top AudioSet tags composed into captions with the reprogramming templates"
    sample_rate: ClassVar[int] = 16000

    def __init__(self, device: str | torch.device = "cpu", top_k: int = 3, weights: str | None = None) -> None:
        from pathlib import Path

        from mka_core.plugins import manager
        from mka_core.weights import mka_home

        folder = Path(weights).expanduser() if weights else mka_home() / "weights" / "panns-cnn14"
        cls = manager.get("audio-classifier", "panns-cnn14")
        from mka_plugins.classifiers.panns import LABELS_FILE, WEIGHTS_FILE

        missing = [f for f in (WEIGHTS_FILE, LABELS_FILE) if not (folder / f).is_file()]
        if missing:
            raise WeightsError(f"The panns-tags expert needs {' and '.join(missing)} in {folder}: run "
                               "`mka weights pull panns-cnn14 --allow-network`.")
        self.tagger = cls.load(folder, device=device)
        self.top_k = max(1, int(top_k))

    def tags(self, audio_batch: list[np.ndarray]) -> list[list[str]]:
        probabilities = self.tagger.embed([torch.as_tensor(np.asarray(w, dtype=np.float32)) for w in audio_batch]).probabilities
        k = min(self.top_k, probabilities.shape[1])
        return [[self.tagger.classes[i] for i in row.topk(k).indices.tolist()] for row in probabilities]

    def propose(self, audio_batch: list[np.ndarray]) -> list[list[str]]:
        if not audio_batch:
            return []
        return [compose_captions(tags) for tags in self.tags(audio_batch)]
