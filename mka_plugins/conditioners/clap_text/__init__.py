"""`clap-text`: the text encoder of the released Make-An-Audio model ("CLAP" in its code).

Backend ``reference`` reproduces it exactly: bert-base-uncased called with ``input_ids`` only
(no attention mask, so PAD tokens are attended; token types are zeros) on 77 tokens padded with
``max_length`` padding, then a per-token projection::

    e1  = linear1(x)                       768 -> 1024, no bias
    e2  = dropout(linear2(gelu(e1)))       1024 -> 1024, no bias, exact GELU (dropout inactive: frozen)
    out = layer_norm(e1 + e2)              eps 1e-5

Output ``[B, 77, 1024]``; the mask is all True because the model attends to every token. The
null condition is the encoding of ``""`` (``[CLS] [SEP] [PAD] x 75``), not zeros.

Module names follow the checkpoint: ``cond_stage_model.caption_encoder.base.*`` maps onto
``base.*`` and ``.projection.*`` onto ``projection.*``.

Backend ``laion`` is LAION-CLAP's text branch and projection (RoBERTa, pooled first token, MLP
to 512, L2-normalised): one global token ``[B, 1, 512]`` in the space ``laion-clap``, through the
``laion-clap`` package (``pip install 'mka[clap]'``), imported only when this backend is used.
See :mod:`.laion` for how it is built offline and :mod:`.scorer` for audio-text scoring
(``load_scorer``, used by ``mka generate --rank-with`` and ``mka data caption``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from mka_core import Condition, Conditioner, EmbeddingSpace, StrictModel, hookimpl
from mka_core.errors import InputError, WeightsError
from mka_core.weights import load_fitting_state, load_safetensors, save_safetensors
from mka_plugins.conditioners._hf_text import (
    check_tokenizer,
    load_pretrained,
    minilm_folder,
    require_transformers,
    resolve_text_weights,
    warn_if_truncated,
)

PROJECTION_FILE = "projection.safetensors"
BASE_DIR = "base"
#: The space of the released model.
RELEASED_SPACE = "maa1-clap-text"


#: The LAION-CLAP backend's defaults (kept in :mod:`.laion`, which imports nothing heavy at load).
LAION_SPACE = "laion-clap"
LAION_DEFAULT_WEIGHTS = "laion-clap-630k-audioset"
LAION_DIM = 512


class ClapTextOptions(StrictModel):
    backend: Literal["reference", "laion"] = Field(
        "reference",
        description=("reference: the released BERT + projection encoder (sequence of 77 x 1024). "
                     "laion: LAION-CLAP's text branch + projection (one global 512-d token, space 'laion-clap')."),
    )
    weights: str | None = Field(
        "bert-base-uncased",
        description=("reference: a folder written by this conditioner (base/ + projection.safetensors), or a BERT folder "
                     "/ hub id (the projection then starts random and is trainable). laion (default "
                     f"'{LAION_DEFAULT_WEIGHTS}'): a LAION-CLAP checkpoint (.pt), a folder holding one, an id in "
                     "$MKA_HOME/weights, or a folder written by this conditioner."),
    )
    tokenizer: str | None = Field(
        None,
        description=("laion only: folder (or $MKA_HOME/weights id) with the RoBERTa tokenizer (vocab.json + merges.txt, "
                     "or tokenizer.json); default: next to the checkpoint, then $MKA_HOME/weights/roberta-base."),
    )
    dim: int = Field(1024, ge=1, description="Output width: 1024 for the released projection; 512 (fixed) for laion.")
    max_length: int = Field(77, ge=2, le=512, description="Tokens per prompt, padded to exactly this length.")
    space_name: str | None = Field(
        None, description=f"Embedding space name; '{RELEASED_SPACE}' for converted released weights, '{LAION_SPACE}' for laion.",
    )

    @model_validator(mode="before")
    @classmethod
    def _laion_defaults(cls, data: Any) -> Any:
        # The field defaults describe the reference backend; laion has its own unless given.
        if isinstance(data, dict) and data.get("backend") == "laion":
            data = dict(data)
            data.setdefault("weights", LAION_DEFAULT_WEIGHTS)
            data.setdefault("dim", LAION_DIM)
        return data


class Projection(nn.Module):
    """The released per-token projection (names match the checkpoint)."""

    def __init__(self, d_in: int, d_out: int, p: float = 0.5) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.linear1(x)
        e2 = self.drop(self.linear2(nn.functional.gelu(e1)))
        return self.layer_norm(e1 + e2)


class ClapTextConditioner(Conditioner):
    name = "clap-text"
    input_kind = "text"
    Options = ClapTextOptions
    summary = ("The released Make-An-Audio text encoder (BERT + per-token projection, 77 tokens, no attention mask), "
               "or LAION-CLAP's text tower (backend=laion).")
    space_summary = f"{RELEASED_SPACE} (1024, sequence) with converted weights; {LAION_SPACE} (512, global) with backend=laion"

    def __init__(self, options: StrictModel | None = None, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        self._identity = "random"
        self._projection_trained = False
        if self.options.backend == "laion" and self.options.dim != LAION_DIM:
            raise InputError(f"clap-text backend=laion writes {LAION_DIM}-d embeddings; drop dim={self.options.dim}.")
        if self.options.weights is not None:
            if self.options.backend == "laion":
                self._load_laion(self.options.weights)
            else:
                self._load(self.options.weights)

    # -- building: reference backend ------------------------------------------------------------------
    def _attach(self, base: nn.Module, tokenizer: Any) -> None:
        self.base = base.eval()
        self.base.requires_grad_(False)
        self.tokenizer = tokenizer
        self.projection = Projection(int(base.config.hidden_size), self.options.dim).eval()

    def _load(self, weights: str) -> None:
        transformers = require_transformers()
        folder = Path(weights).expanduser()
        if (folder / BASE_DIR).is_dir():  # a folder written by save_weights
            base_dir = folder / BASE_DIR
            identity = folder.name
        else:
            base_dir, identity = resolve_text_weights(weights, ("config.json",), "BERT")
        source = str(base_dir) if base_dir is not None else weights
        kwargs = {"local_files_only": base_dir is not None}
        tokenizer = check_tokenizer(transformers.AutoTokenizer.from_pretrained(source, **kwargs), source)
        base = load_pretrained(transformers.BertModel.from_pretrained, source, "BERT", **kwargs)
        self._attach(base, tokenizer)
        if (folder / PROJECTION_FILE).is_file():
            load_fitting_state(self.projection, load_safetensors(folder / PROJECTION_FILE), folder / PROJECTION_FILE,
                               what="the clap-text projection",
                               fix="it was saved for another width - re-create the model folder")
            self._projection_trained = True
        self._identity = identity

    # -- building: laion backend ------------------------------------------------------------------------
    def _attach_laion(self, tower: nn.Module) -> None:
        from mka_plugins.conditioners.clap_text.laion import check_max_length

        check_max_length(self.options.max_length, tower.text_config)
        if tower.dim != self.options.dim:
            raise WeightsError(f"The LAION-CLAP weights project to {tower.dim} dimensions, not {self.options.dim}.")
        self.tower = tower
        self.tokenizer = tower.tokenizer
        self._identity = tower.identity
        self._projection_trained = True

    def _load_laion(self, weights: str) -> None:
        from mka_plugins.conditioners.clap_text.laion import load_text_tower

        self._attach_laion(load_text_tower(weights, self.options.tokenizer))

    @classmethod
    def from_reference_tensors(cls, bert: dict[str, torch.Tensor], projection: dict[str, torch.Tensor],
                               tokenizer_dir: str | Path, bert_config: dict[str, Any], **options: Any) -> ClapTextConditioner:
        """The released encoder from checkpoint tensors (``base.*`` / ``projection.*`` with the prefix stripped).

        Every tensor must fit: missing or unexpected keys raise (the converter reports them).
        """
        transformers = require_transformers()
        dim = int(projection["linear1.weight"].shape[0])
        conditioner = cls(cls.Options(weights=None, dim=dim, space_name=options.pop("space_name", RELEASED_SPACE), **options))
        tokenizer = transformers.BertTokenizer(vocab=str(Path(tokenizer_dir) / "vocab.txt"), do_lower_case=True)
        base = transformers.BertModel(transformers.BertConfig(**bert_config), add_pooling_layer="pooler.dense.weight" in bert)
        missing, unexpected = base.load_state_dict(bert, strict=False)
        if missing or unexpected:
            raise ValueError(f"BERT tensors do not fit: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        conditioner._attach(base, tokenizer)
        conditioner.projection.load_state_dict(projection, strict=True)
        conditioner._projection_trained = True
        conditioner._identity = "released"
        return conditioner

    @classmethod
    def build_random(cls, preset: str = "tiny", seed: int = 0, **options: Any) -> ClapTextConditioner:
        if preset != "tiny":
            return super().build_random(preset, seed, **options)
        options = {k: v for k, v in options.items() if k != "weights"}
        if options.get("backend") == "laion":
            from mka_plugins.conditioners.clap_text.laion import LaionTextTower

            conditioner = cls(cls.Options(weights=None, **options))
            conditioner._attach_laion(LaionTextTower.random_tiny(seed))
            return conditioner
        transformers = require_transformers()
        options = {"dim": 32, **options}
        conditioner = cls(cls.Options(weights=None, **options))
        folder = minilm_folder()
        if folder is not None:
            tokenizer = transformers.BertTokenizer(vocab=str(folder / "vocab.txt"), do_lower_case=True)
        else:
            from mka_plugins.conditioners.bert import _fallback_vocab

            tokenizer = transformers.BertTokenizer(vocab={t: i for i, t in enumerate(_fallback_vocab())}, do_lower_case=True)
        torch.manual_seed(seed)
        config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
        conditioner._attach(transformers.BertModel(config), tokenizer)
        conditioner._projection_trained = True
        conditioner._identity = f"random-tiny-{seed}"
        return conditioner

    @classmethod
    def load_scorer(cls, source: str | Path, device: torch.device | str = "cpu", **kwargs: Any):
        """A LAION-CLAP audio-text scorer (``scorer(waveforms [B, N], prompts) -> [B]`` cosine similarities)
        from a checkpoint path, a folder holding one, or an id in ``$MKA_HOME/weights`` (``clap`` = the
        default 630k-audioset weights). See :mod:`mka_plugins.conditioners.clap_text.scorer`."""
        from mka_plugins.conditioners.clap_text.scorer import load_scorer

        return load_scorer(source, device, **kwargs)

    def save_weights(self, directory: Path) -> bool:
        if self.options.space_name is None:
            self.options.space_name = self.space.name
        if self.options.backend == "laion":
            self.tower.save(directory)
            return True
        self.base.save_pretrained(directory / BASE_DIR)
        self.tokenizer.save_pretrained(directory / BASE_DIR)
        save_safetensors(self.projection.state_dict(), directory / PROJECTION_FILE)
        return True

    def trainable_parameters(self) -> list[nn.Parameter]:
        # A projection that did not come with the weights is what training should fit.
        if self.options.backend == "laion":
            return []
        return [] if self._projection_trained else list(self.projection.parameters())

    # -- the contract -------------------------------------------------------------------------------
    @property
    def space(self) -> EmbeddingSpace:
        if self.options.backend == "laion":
            return EmbeddingSpace(name=self.options.space_name or LAION_SPACE, dim=self.options.dim, tokens="global")
        return EmbeddingSpace(name=self.options.space_name or f"clap-text:{self._identity}", dim=self.options.dim,
                              tokens="sequence")

    @classmethod
    def space_from_options(cls, options: StrictModel) -> EmbeddingSpace | None:
        if options.backend == "laion":
            return EmbeddingSpace(name=options.space_name or LAION_SPACE, dim=options.dim, tokens="global")
        if options.space_name is None:
            return None
        return EmbeddingSpace(name=options.space_name, dim=options.dim, tokens="sequence")

    def prepare(self, inputs: Sequence[Any]) -> Any:
        texts = [str(t) for t in inputs]
        if self.options.backend == "laion":
            warn_if_truncated(texts, self.tower.token_counts(texts), self.options.max_length, self.name)
            return self.tower.tokenize(texts, self.options.max_length)
        lengths = [len(self.tokenizer(t)["input_ids"]) for t in texts]
        warn_if_truncated(texts, lengths, self.options.max_length, self.name)
        batch = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.options.max_length,
                               return_tensors="pt")
        return batch["input_ids"]

    def encode(self, prepared: Any) -> Condition:
        if self.options.backend == "laion":
            embeds = self.tower.embed(prepared)[:, None, :]
            return Condition(embeds, torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device))
        ids = prepared.to(self.device)
        # No attention mask, as the released model was trained: PAD tokens are attended.
        hidden = self.base(input_ids=ids).last_hidden_state
        embeds = self.projection(hidden)
        return Condition(embeds, torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device))

    def null_condition(self, batch_size: int = 1) -> Condition:
        return self.encode(self.prepare([""] * batch_size))


@hookimpl
def register_conditioners(register):
    register(ClapTextConditioner)
