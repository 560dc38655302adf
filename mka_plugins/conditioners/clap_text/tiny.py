"""Tiny random LAION-CLAP components, built offline in seconds (tests, ``mka new-model --preset tiny``).

The tokenizer is a real RoBERTa-style byte-level BPE trained on a few sentences (no RoBERTa
vocabulary ships with any package); the text branch is a 64-wide, one-layer RoBERTa; the
checkpoint writer adds the package's smallest audio tower (HTSAT-tiny) and saves everything in
the layout of the published checkpoints, so the real loading path is what tests exercise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mka_plugins.conditioners.clap_text.laion import AudioSpec, build_clap

#: Words the tiny tokenizer learns its merges from; any text still tokenises (byte level).
TINY_CORPUS = (
    "a dog barks twice while rain falls on a tin roof",
    "a bell rings and birds chirp in the morning",
    "an engine starts and a car drives away on a wet road",
    "people talk and laugh in a crowded room with music",
    "thunder rumbles far away and wind blows through the trees",
    "water flows in a stream and a frog croaks at night",
    "a man speaks then a woman sings a slow song",
    "footsteps on gravel a door slams and a baby cries",
)
TINY_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def tiny_tokenizer():
    """A real RoBERTa-style byte-level BPE tokenizer (about 300 tokens), trained in a few ms."""
    import tempfile

    import tokenizers

    from mka_plugins.conditioners._hf_text import require_transformers

    transformers = require_transformers()
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(TINY_CORPUS) * 4, vocab_size=320, min_frequency=1, special_tokens=list(TINY_SPECIALS),
                            show_progress=False)
    with tempfile.TemporaryDirectory() as folder:
        bpe.save_model(folder)
        return transformers.RobertaTokenizer(vocab=str(Path(folder) / "vocab.json"), merges=str(Path(folder) / "merges.txt"))


def tiny_text_config(vocab_size: int) -> dict[str, Any]:
    # initializer_range 0.2 (ten times RoBERTa's): at the usual 0.02 a one-layer random tower gives
    # every prompt nearly the same pooled embedding (cosine 0.99999); at 0.2 prompts differ (about 0.96).
    return {"vocab_size": int(vocab_size), "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1,
            "intermediate_size": 128, "max_position_embeddings": 80, "type_vocab_size": 1,
            "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "layer_norm_eps": 1e-5, "initializer_range": 0.2}


def write_tiny_checkpoint(folder: str | Path, seed: int = 0, *, file_name: str = "tiny-clap.pt") -> Path:
    """A random LAION-CLAP checkpoint in the package's layout (HTSAT-tiny audio, tiny RoBERTa).

    Writes ``{"state_dict": {"module.<key>": tensor}}`` as the package's training does, plus the
    tokenizer files next to it; returns the checkpoint's path. About 150 MB (HTSAT-tiny is the
    smallest audio tower the package builds), so build it in a temporary folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    model, _ = build_clap(tiny_text_config(len(tokenizer)), AudioSpec())
    path = folder / file_name
    from mka_core.atomic import atomic_write

    with atomic_write(path, "wb") as handle:
        torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, handle)
    tokenizer.save_pretrained(str(folder))
    return path
