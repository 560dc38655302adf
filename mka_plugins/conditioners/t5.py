"""`t5`: a frozen T5 encoder (T5-large by default, 1024 wide); sequence output, attention mask honoured."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from mka_core import Conditioner, StrictModel, hookimpl
from mka_plugins.conditioners._hf_text import (
    MaskedTextEncoder,
    check_tokenizer,
    load_pretrained,
    require_transformers,
    resolve_text_weights,
)

REQUIRED_FILES = ("config.json", "model.safetensors")  # + spiece.model or tokenizer.json, checked on load


class T5Options(StrictModel):
    weights: str | None = Field("t5-large", description="Hub id or local folder (config.json, model.safetensors, tokenizer files).")
    max_length: int = Field(128, ge=2, le=1024, description="Tokens per prompt (EOS included); longer prompts are truncated with a warning.")
    space_name: str | None = Field(None, description="Name of the embedding space; default 't5:<weights identity>'.")


class T5Conditioner(MaskedTextEncoder, Conditioner):
    name = "t5"
    input_kind = "text"
    Options = T5Options
    summary = "A frozen T5 encoder (t5-large by default), attention mask honoured."
    space_summary = "t5:<weights> (1024 for t5-large; sequence)"
    space_prefix = "t5"

    def __init__(self, options: StrictModel | None = None, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        self._identity = "random"
        if self.options.weights is not None:
            transformers = require_transformers()
            folder, identity = resolve_text_weights(self.options.weights, REQUIRED_FILES, "T5")
            source = str(folder) if folder is not None else self.options.weights
            kwargs = {"local_files_only": folder is not None}
            tokenizer = check_tokenizer(transformers.AutoTokenizer.from_pretrained(source, **kwargs), source)
            self._attach(load_pretrained(transformers.T5EncoderModel.from_pretrained, source, "T5", **kwargs), tokenizer,
                         identity)

    @classmethod
    def build_random(cls, preset: str = "tiny", seed: int = 0, **options: Any) -> "T5Conditioner":
        transformers = require_transformers()
        if preset != "tiny":
            return super().build_random(preset, seed, **options)
        conditioner = cls(cls.Options(weights=None, **{k: v for k, v in options.items() if k != "weights"}))
        tokenizer = transformers.ByT5Tokenizer()  # byte-level: needs no vocabulary files
        torch.manual_seed(seed)
        config = transformers.T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
        conditioner._attach(transformers.T5EncoderModel(config), tokenizer, f"random-tiny-{seed}")
        return conditioner


@hookimpl
def register_conditioners(register):
    register(T5Conditioner)
