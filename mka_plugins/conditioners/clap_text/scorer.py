"""Audio-text similarity with a LAION-CLAP checkpoint: ranking candidates and distilling captions.

A :class:`ClapScorer` embeds audio with LAION-CLAP's audio branch (HTSAT, through the package's
own feature extraction: 48 kHz, 10 s windows, shorter clips repeated then zero-padded) and text
with its text branch, both L2-normalised, and scores a pair by their cosine similarity in
[-1, 1]. Calling it as ``scorer(waveforms [B, N], prompts)`` gives one score per pair, the
interface :mod:`mka_core.ranking` expects.

Determinism: the package picks random 10 s windows in clips longer than 10 s (and random chunks
for its fusion models) from numpy's global generator. The scorer seeds a private state for each
clip and restores the global one, so a clip gets the same score in any batch and run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mka_core.errors import InputError
from mka_plugins.conditioners.clap_text.laion import (
    audio_spec_from_state,
    build_clap,
    copy_tensors,
    import_laion,
    joint_dim_from_state,
    load_tokenizer,
    read_checkpoint,
    resolve_checkpoint,
    text_config_from_state,
)

#: mka's audio rate: what the pipeline's waveforms are unless told otherwise.
MKA_SAMPLE_RATE = 16000


@contextlib.contextmanager
def _private_numpy_seed(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class ClapScorer:
    """Cosine similarity of LAION-CLAP audio and text embeddings."""

    def __init__(self, clap: nn.Module, model_cfg: dict[str, Any], tokenizer: Any, *, fusion: bool = False,
                 sample_rate: int = MKA_SAMPLE_RATE, max_length: int = 77, source: str = "") -> None:
        self.clap = clap.eval()
        self.clap.requires_grad_(False)
        self.audio_cfg = dict(model_cfg["audio_cfg"])
        self.tokenizer = tokenizer
        self.fusion = fusion
        self.sample_rate = int(sample_rate)
        self.max_length = max_length
        self.source = source

    @property
    def device(self) -> torch.device:
        return next(self.clap.parameters()).device

    def to(self, device: torch.device | str) -> ClapScorer:
        self.clap.to(device)
        return self

    # -- embeddings ----------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """``[B, 512]`` L2-normalised text embeddings."""
        texts = [str(t) for t in texts]
        if not texts:
            return torch.zeros(0, int(self.clap.text_projection[2].out_features), device=self.device)
        batch = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt")
        inputs = {"input_ids": batch["input_ids"].to(self.device), "attention_mask": batch["attention_mask"].to(self.device)}
        return F.normalize(self.clap.encode_text(inputs, device=self.device), dim=-1)

    @torch.no_grad()
    def embed_audio(self, waveforms: torch.Tensor | Sequence[Any], sample_rate: int | None = None) -> torch.Tensor:
        """``[B, 512]`` L2-normalised audio embeddings of mono waveforms (a ``[B, N]`` tensor or a list
        of 1-D arrays of any lengths) at ``sample_rate`` (default: the scorer's, 16 kHz)."""
        from mka_core.audio.io import resample

        laion = import_laion()
        rate = int(sample_rate or self.sample_rate)
        clips = list(waveforms) if not isinstance(waveforms, torch.Tensor) or waveforms.dim() > 1 else [waveforms]
        if not clips:
            raise InputError("The CLAP scorer got no audio to embed.")
        features = []
        for clip in clips:
            wave = torch.as_tensor(np.asarray(clip.detach().cpu() if isinstance(clip, torch.Tensor) else clip),
                                   dtype=torch.float32).reshape(-1)
            if wave.numel() == 0:
                raise InputError("The CLAP scorer got an empty waveform; every clip needs at least one sample.")
            if not torch.isfinite(wave).all():
                raise InputError("The CLAP scorer got a waveform with NaN or Inf samples.")
            wave = resample(wave, rate, int(self.audio_cfg["sample_rate"]))
            # The package's models were trained on 16-bit audio; round through int16 as its own API does.
            wave = torch.from_numpy(laion.data.int16_to_float32(laion.data.float32_to_int16(wave.numpy())))
            with _private_numpy_seed(0):
                features.append(laion.data.get_audio_features(
                    {}, wave, int(self.audio_cfg["clip_samples"]), "fusion" if self.fusion else "rand_trunc",
                    "repeatpad", self.audio_cfg,
                ))
        return self.clap.get_audio_embedding(features)

    # -- scores ------------------------------------------------------------------------------------
    def __call__(self, waveforms: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """One cosine similarity per (waveform, prompt) pair, as a CPU float tensor ``[B]``."""
        if len(prompts) != (waveforms.shape[0] if waveforms.dim() > 1 else 1):
            raise InputError(f"The CLAP scorer got {waveforms.shape[0]} waveforms for {len(prompts)} prompts.")
        audio = self.embed_audio(waveforms)
        text = self.embed_text(prompts)
        return (audio * text).sum(-1).float().cpu()

    def score_candidates(self, waveforms: Sequence[Any], candidates: Sequence[Sequence[str]],
                         sample_rate: int | None = None) -> list[list[float]]:
        """For each clip, the similarity of each of its candidate captions (clip embedded once)."""
        if len(waveforms) != len(candidates):
            raise InputError(f"The CLAP scorer got {len(waveforms)} clips for {len(candidates)} candidate lists.")
        if not len(waveforms):
            return []
        audio = self.embed_audio(list(waveforms), sample_rate)
        flat = [str(c) for group in candidates for c in group]
        text = self.embed_text(flat) if flat else None
        out: list[list[float]] = []
        start = 0
        for i, group in enumerate(candidates):
            count = len(group)
            if count == 0:
                out.append([])
                continue
            sims = text[start:start + count] @ audio[i]
            out.append([float(s) for s in sims.float().cpu()])
            start += count
        return out


def load_scorer(source: str | Path, device: torch.device | str = "cpu", *, tokenizer: str | None = None,
                sample_rate: int = MKA_SAMPLE_RATE) -> ClapScorer:
    """A scorer from a LAION-CLAP checkpoint (path, folder, or id in ``$MKA_HOME/weights``; ``clap`` =
    the default 630k-audioset weights). Every tensor of the checkpoint must fit the model."""
    path = resolve_checkpoint(source)
    state = read_checkpoint(path)
    audio = audio_spec_from_state(state)
    clap, model_cfg = build_clap(text_config_from_state(state), audio, joint_dim_from_state(state))
    copy_tensors(clap, state, None, str(path))
    del state
    scorer = ClapScorer(clap, model_cfg, load_tokenizer(tokenizer, path.parent), fusion=audio.fusion,
                        sample_rate=sample_rate, source=str(path))
    return scorer.to(device)
