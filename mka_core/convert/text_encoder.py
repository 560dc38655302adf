"""The released text encoder (``cond_stage_model.caption_encoder``) -> clap-text, backend "reference".

``caption_encoder.base`` is a transformers ``BertModel`` (bert-base-uncased, with its pooler)
and ``caption_encoder.projection`` the per-token projection (``linear1`` 768->1024 and
``linear2`` 1024->1024 without bias, ``layer_norm``). The tokenizer is not in the checkpoint:
bert-base-uncased's files come from the user's folder (``--tokenizer``) or
``$MKA_HOME/weights/bert-base-uncased``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from mka_core.convert.accounting import Ledger
from mka_core.convert.common import check_tensors_fit, take
from mka_core.convert.widths import bert_config, projection_shapes
from mka_core.errors import WeightsError
from mka_core.weights import mka_home, network_allowed

PREFIX = "cond_stage_model.caption_encoder."
BERT_PREFIX = PREFIX + "base."
PROJECTION_PREFIX = PREFIX + "projection."
POSITION_IDS = BERT_PREFIX + "embeddings.position_ids"
TOKENIZER_ID = "bert-base-uncased"
TOKENIZER_FILES = ("vocab.txt",)
OPTIONAL_TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")

#: bert-base-uncased as the reference builds it (transformers' defaults for that model).
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2,
                 layer_norm_eps=1e-12, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def resolve_tokenizer(folder: str | Path | None) -> Path:
    """The folder holding bert-base-uncased's tokenizer files (offline: a clear sentence where to put them)."""
    candidates = [Path(folder).expanduser()] if folder is not None else []
    cache = mka_home() / "weights" / TOKENIZER_ID
    candidates.append(cache)
    for candidate in candidates:
        if candidate.is_dir() and all((candidate / n).is_file() for n in TOKENIZER_FILES):
            return candidate
    if folder is not None:
        raise WeightsError(
            f"The tokenizer folder {folder} lacks vocab.txt; put bert-base-uncased's tokenizer files (vocab.txt, "
            "tokenizer_config.json) there."
        )
    if network_allowed():
        return _download_tokenizer(cache)
    raise WeightsError(
        f"The bert-base-uncased tokenizer is not available offline: put its vocab.txt (and tokenizer_config.json) in "
        f"{cache}, pass --tokenizer DIR (from the Hugging Face model google-bert/bert-base-uncased), or run "
        "`mka weights pull bert-base-uncased --allow-network`."
    )


def _download_tokenizer(cache: Path) -> Path:  # pragma: no cover - needs network
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(TOKENIZER_ID)
    tokenizer.save_pretrained(cache)
    return cache


def load_tokenizer(folder: Path, vocab_size: int):
    """A BERT WordPiece tokenizer from ``folder``, checked against the checkpoint's vocabulary size."""
    import transformers

    tokenizer = transformers.BertTokenizer(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    if len(tokenizer) != vocab_size:
        raise WeightsError(
            f"The tokenizer in {folder} has {len(tokenizer)} tokens but the checkpoint's BERT has {vocab_size}; use "
            "bert-base-uncased's vocab.txt."
        )
    return tokenizer


def split_caption_encoder(state: Mapping[str, torch.Tensor], ledger: Ledger, source: str,
                          *, keep_pooler: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(BERT tensors, projection tensors) with the checkpoint-only entries explained away."""
    if POSITION_IDS in state:
        ids = state[POSITION_IDS]
        if not torch.equal(ids.flatten().long(), torch.arange(ids.numel())):
            raise WeightsError(f"{source}: {POSITION_IDS} is not 0, 1, 2, ...; the file is damaged.")
        ledger.ignore(POSITION_IDS, "BERT position_ids: a persistent buffer of transformers <= 4.30 (arange, checked); "
                                    "current BertModel recomputes it")
    if not keep_pooler:
        ledger.ignore_prefix(BERT_PREFIX + "pooler.", "BERT pooler: the reference uses the token sequence, not the pooled [CLS]")
    bert = take({k: v for k, v in state.items() if k != POSITION_IDS and (keep_pooler or ".pooler." not in k)},
                ledger, BERT_PREFIX, "conditioner:bert")
    projection = take(state, ledger, PROJECTION_PREFIX, "conditioner:projection")
    if not bert or not projection:
        raise WeightsError(f"{source} has no complete caption encoder ({BERT_PREFIX}*, {PROJECTION_PREFIX}*).")
    return bert, projection


def convert_caption_encoder(state: Mapping[str, torch.Tensor], ledger: Ledger, tokenizer: str | Path | None,
                            source: str, *, space_name: str = "maa1-clap-text") -> tuple[Any, dict[str, Any]]:
    """The clap-text conditioner (backend "reference") holding the checkpoint's BERT and projection.

    ``space_name`` names the embedding space: the projection is a frozen random initialisation
    saved with each checkpoint, so every released model has a space of its own.
    """
    from mka_core.plugins import manager

    folder = resolve_tokenizer(tokenizer)
    bert, projection = split_caption_encoder(state, ledger, source)
    config = bert_config(bert, BERT_BASE)
    check_bert(bert, source, config)
    vocab = int(bert["embeddings.word_embeddings.weight"].shape[0])
    load_tokenizer(folder, vocab)
    cls = manager.get("conditioner", "clap-text")
    expected_projection = projection_shapes(projection, config["hidden_size"])
    check_tensors_fit({k: torch.empty(v, device="meta") for k, v in expected_projection.items()}, projection,
                      "text projection", source)
    bert32 = {k: v.detach().float() for k, v in bert.items()}
    projection32 = {k: v.detach().float() for k, v in projection.items()}
    try:
        conditioner = cls.from_reference_tensors(bert32, projection32, folder, config, space_name=space_name)
    except ValueError as exc:
        raise WeightsError(f"{source}: the caption encoder does not fit clap-text's reference backend ({exc}).") from exc
    info = {"tokenizer": str(folder), "bert_tensors": len(bert), "projection_tensors": len(projection),
            "space": space_name}
    return conditioner.eval(), info


def expected_bert(config: Mapping[str, Any] = BERT_BASE) -> dict[str, torch.Tensor]:
    import transformers

    with torch.device("meta"):
        model = transformers.BertModel(transformers.BertConfig(**config), add_pooling_layer=False)
    return dict(model.state_dict())


def check_bert(bert: Mapping[str, torch.Tensor], source: str, config: Mapping[str, Any] = BERT_BASE) -> None:
    check_tensors_fit(expected_bert(config), bert, "BERT", source)
