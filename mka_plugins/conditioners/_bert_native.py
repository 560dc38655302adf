"""A BERT encoder and its uncased WordPiece tokenizer in plain torch and `tokenizers`, without transformers.

The `bert` conditioner uses this for local folders (the offline all-MiniLM-L6-v2 of the default
model, or a folder the user names) that hold ``config.json``, ``vocab.txt`` and
``model.safetensors``: importing transformers' modelling code costs more than a second of every
``mka generate``. The module mirrors transformers' ``BertModel`` without its pooler, and its
parameters carry the same names, so the checkpoint loads as is (strictly) and
:meth:`NativeBertModel.save_pretrained` writes a folder transformers reads back.

Anything this does not reproduce exactly (another activation, relative positions, a cased or
customised tokenizer, half-precision weights, extra heads in the checkpoint) raises
:class:`NativeBertUnsupported` before any tensor is read, and the caller uses transformers.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mka_plugins.conditioners._hf_text import damaged_weights_error

SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                  "mask_token": "[MASK]"}
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")
#: Checkpoint entries that are not parameters of the encoder: transformers' position-id and
#: token-type buffers (rebuilt here) and the pooler (not used by the conditioner).
IGNORED_PREFIXES = ("pooler.", "embeddings.position_ids", "embeddings.token_type_ids")
#: tokenizer_config.json keys that do not change input_ids / attention_mask for our calls.
HARMLESS_TOKENIZER_KEYS = {
    "name_or_path", "model_max_length", "max_len", "clean_up_tokenization_spaces", "special_tokens_map_file",
    "tokenizer_file", "backend", "init_inputs", "model_input_names", "do_basic_tokenize", "never_split",
    "added_tokens_decoder", "extra_special_tokens", "additional_special_tokens", "is_local", "padding_side",
    "truncation_side", "tokenizer_class", "do_lower_case", "strip_accents", "tokenize_chinese_chars",
    *SPECIAL_TOKENS,
}


class NativeBertUnsupported(Exception):
    """The folder needs transformers' BertModel / tokenizer; the message says why."""


# -- configuration --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NativeBertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> NativeBertConfig:
        if raw.get("model_type") != "bert":
            raise NativeBertUnsupported(f"model_type is {raw.get('model_type')!r}, not 'bert'")
        if raw.get("hidden_act", "gelu") != "gelu":
            raise NativeBertUnsupported(f"hidden_act is {raw.get('hidden_act')!r}; only 'gelu' (erf) is built in")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise NativeBertUnsupported(f"position_embedding_type is {raw.get('position_embedding_type')!r}")
        if raw.get("is_decoder") or raw.get("add_cross_attention"):
            raise NativeBertUnsupported("a decoder / cross-attention BERT")
        try:
            config = cls(
                vocab_size=int(raw["vocab_size"]),
                hidden_size=int(raw["hidden_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=int(raw["num_attention_heads"]),
                intermediate_size=int(raw["intermediate_size"]),
                max_position_embeddings=int(raw["max_position_embeddings"]),
                type_vocab_size=int(raw.get("type_vocab_size", 2)),
                layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
                hidden_dropout_prob=float(raw.get("hidden_dropout_prob", 0.1)),
                attention_probs_dropout_prob=float(raw.get("attention_probs_dropout_prob", 0.1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NativeBertUnsupported(f"config.json lacks or mangles {exc}") from exc
        if config.hidden_size % config.num_attention_heads:
            raise NativeBertUnsupported("hidden_size is not a multiple of num_attention_heads")
        return config


# -- the encoder ----------------------------------------------------------------------------------------------
# Every parameter comes from the checkpoint (loaded strictly), so the layers skip their random
# initialisation: drawing 22 million normals, or building on the meta device (which imports
# torch's Python decompositions), would cost more than the load itself.


class Linear(nn.Linear):
    def reset_parameters(self) -> None:
        pass


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        pass


class LayerNorm(nn.LayerNorm):
    def reset_parameters(self) -> None:
        pass


class BertEmbeddings(nn.Module):
    def __init__(self, config: NativeBertConfig) -> None:
        super().__init__()
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = config.hidden_dropout_prob

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device)
        # The conditioner never passes token types: every token is of type 0, as in transformers.
        summed = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        summed = summed + self.position_embeddings(positions)
        return F.dropout(self.LayerNorm(summed), self.dropout, self.training)


class BertSelfAttention(nn.Module):
    def __init__(self, config: NativeBertConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.query = Linear(config.hidden_size, config.hidden_size)
        self.key = Linear(config.hidden_size, config.hidden_size)
        self.value = Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_probs_dropout_prob

    def forward(self, hidden: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = hidden.shape

        def split(x: torch.Tensor) -> torch.Tensor:  # (B, T, H*D) -> (B, H, T, D)
            return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            split(self.query(hidden)), split(self.key(hidden)), split(self.value(hidden)), attn_mask=keep,
            dropout_p=self.dropout if self.training else 0.0, scale=1.0 / math.sqrt(width // self.heads),
        )
        return attended.transpose(1, 2).reshape(batch, length, width)


class BertResidual(nn.Module):
    """dense, dropout, then LayerNorm of the sum with the block's input (transformers' *Output blocks)."""

    def __init__(self, width_in: int, config: NativeBertConfig) -> None:
        super().__init__()
        self.dense = Linear(width_in, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = config.hidden_dropout_prob

    def forward(self, hidden: torch.Tensor, block_input: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.dropout(self.dense(hidden), self.dropout, self.training) + block_input)


class BertAttention(nn.Module):
    def __init__(self, config: NativeBertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertResidual(config.hidden_size, config)

    def forward(self, hidden: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(hidden, keep), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, config: NativeBertConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.intermediate_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(hidden))  # the exact (erf) form: transformers' "gelu"


class BertLayer(nn.Module):
    def __init__(self, config: NativeBertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertResidual(config.intermediate_size, config)

    def forward(self, hidden: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        attended = self.attention(hidden, keep)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self, config: NativeBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor


class NativeBertModel(nn.Module):
    """transformers' ``BertModel(add_pooling_layer=False)``: same parameter names, same outputs.

    Built by :func:`load_native_bert`; constructed directly its parameters are uninitialised memory.
    Dropout follows the config in train mode, as transformers' does (the conditioner keeps it in eval).
    """

    def __init__(self, config: NativeBertConfig, raw_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.raw_config = dict(raw_config or {"model_type": "bert", "hidden_act": "gelu", **asdict(config)})
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> EncoderOutput:
        # Padding is hidden from every query as a key; a boolean mask where True means "attend".
        keep = None
        if attention_mask is not None and not bool(attention_mask.all()):
            keep = attention_mask.bool()[:, None, None, :]
        hidden = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            hidden = layer(hidden, keep)
        return EncoderOutput(hidden)

    def save_pretrained(self, directory: str | Path) -> None:
        """config.json and model.safetensors, readable by this module and by transformers' BertModel."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(self.raw_config, indent=2) + "\n", encoding="utf-8")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})


# -- the tokenizer --------------------------------------------------------------------------------------------


class NativeBertTokenizer:
    """BERT WordPiece from vocab.txt on the `tokenizers` library, with the small part of transformers'
    tokenizer call that the conditioner uses: ``tok(text)`` and
    ``tok(texts, padding="longest", truncation=True, max_length=n, return_tensors="pt")``."""

    def __init__(self, folder: Path, vocab: dict[str, int], lowercase: bool, strip_accents: bool | None,
                 chinese_chars: bool) -> None:
        from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, processors

        self.folder = folder
        missing = [t for t in SPECIAL_TOKENS.values() if t not in vocab]
        if missing:
            raise NativeBertUnsupported(f"vocab.txt lacks {', '.join(missing)}")
        backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                             max_input_chars_per_word=100))
        backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=chinese_chars,
                                                        strip_accents=strip_accents, lowercase=lowercase)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
        # Special tokens written in a prompt stay whole, as transformers registers them.
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS.values()])
        self.backend = backend
        self.pad_id = vocab["[PAD]"]

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __call__(self, texts: str | Sequence[str], padding: str | bool = False, truncation: bool = False,
                 max_length: int | None = None, return_tensors: str | None = None) -> dict[str, Any]:
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if truncation and max_length is not None:
            self.backend.enable_truncation(max_length)
        else:
            self.backend.no_truncation()
        if padding in ("longest", True) and not single:
            self.backend.enable_padding(pad_id=self.pad_id, pad_token="[PAD]", direction="right")
        elif padding not in (False, None, "do_not_pad"):
            raise ValueError(f"padding={padding!r} is not supported by the built-in BERT tokenizer")
        else:
            self.backend.no_padding()
        encodings = self.backend.encode_batch(batch)
        ids = [e.ids for e in encodings]
        mask = [e.attention_mask for e in encodings]
        if return_tensors == "pt":
            out = {"input_ids": torch.tensor(ids, dtype=torch.long),
                   "attention_mask": torch.tensor(mask, dtype=torch.long)}
        elif return_tensors is None:
            out = {"input_ids": ids[0] if single else ids, "attention_mask": mask[0] if single else mask}
        else:
            raise ValueError(f"return_tensors={return_tensors!r} is not supported by the built-in BERT tokenizer")
        return out

    def save_pretrained(self, directory: str | Path) -> None:
        """Copy the tokenizer files it was read from, so the saved folder tokenises the same way."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_FILES:
            source = self.folder / name
            if source.is_file() and source.resolve() != (directory / name).resolve():
                shutil.copyfile(source, directory / name)


# -- loading --------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NativeBertUnsupported(f"{path.name} is unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise NativeBertUnsupported(f"{path.name} is not a JSON object")
    return data


def _token_text(value: Any) -> Any:
    return value.get("content") if isinstance(value, dict) else value


def read_vocab(path: Path) -> dict[str, int]:
    """token -> index, one token a line (a repeated token keeps its last index, as transformers reads it)."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            vocab[line.rstrip("\n")] = index
    return vocab


def _tokenizer_settings(folder: Path, vocab: dict[str, int]) -> tuple[bool, bool | None, bool]:
    """(lowercase, strip_accents, handle Chinese characters), checked to be what transformers would build."""
    config = _read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    unknown = sorted(set(config) - HARMLESS_TOKENIZER_KEYS)
    if unknown:
        raise NativeBertUnsupported(f"tokenizer_config.json sets {', '.join(unknown)}")
    if config.get("tokenizer_class", "BertTokenizer") not in ("BertTokenizer", "BertTokenizerFast"):
        raise NativeBertUnsupported(f"tokenizer_class is {config.get('tokenizer_class')!r}")
    if config.get("do_basic_tokenize", True) is not True or config.get("never_split"):
        raise NativeBertUnsupported("a customised basic tokenizer (do_basic_tokenize / never_split)")
    if config.get("padding_side", "right") != "right" or config.get("truncation_side", "right") != "right":
        raise NativeBertUnsupported("left padding or truncation")
    if config.get("additional_special_tokens") or config.get("extra_special_tokens"):
        raise NativeBertUnsupported("extra special tokens")
    declared = dict(config)
    if (folder / "special_tokens_map.json").is_file():
        declared.update(_read_json(folder / "special_tokens_map.json"))
    for key, default in SPECIAL_TOKENS.items():
        if key in declared and _token_text(declared[key]) != default:
            raise NativeBertUnsupported(f"{key} is {declared[key]!r}, not {default!r}")
    if declared.get("additional_special_tokens"):
        raise NativeBertUnsupported("extra special tokens")
    added = config.get("added_tokens_decoder") or {}
    if any(_token_text(v) not in SPECIAL_TOKENS.values() for v in added.values()):
        raise NativeBertUnsupported("tokens added beyond BERT's special tokens")
    # Plain uncased BERT only (lower case, accents stripped, CJK characters split), as the
    # checkpoints this is for are tokenised; another setting is transformers' to honour.
    lowercase = config.get("do_lower_case", True)
    strip_accents = config.get("strip_accents")
    chinese = config.get("tokenize_chinese_chars", True)
    if lowercase is not True or strip_accents not in (None, True) or chinese is not True:
        raise NativeBertUnsupported("not an uncased BERT tokenizer (do_lower_case / strip_accents / "
                                    "tokenize_chinese_chars)")
    if (folder / "tokenizer.json").is_file():
        _check_tokenizer_json(_read_json(folder / "tokenizer.json"), vocab, lowercase, strip_accents, chinese)
    return lowercase, strip_accents, chinese


def _check_tokenizer_json(spec: dict[str, Any], vocab: dict[str, int], lowercase: Any, strip_accents: Any,
                          chinese: Any) -> None:
    """A tokenizer.json next to vocab.txt must describe the same tokenizer (transformers may read either)."""
    expected_normalizer = {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": chinese,
                           "strip_accents": strip_accents, "lowercase": lowercase}
    model = spec.get("model") or {}
    post = spec.get("post_processor") or {}
    checks = {
        "normalizer": spec.get("normalizer") == expected_normalizer,
        "pre_tokenizer": (spec.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer",
        "model": (model.get("type"), model.get("unk_token"), model.get("continuing_subword_prefix"),
                  model.get("max_input_chars_per_word")) == ("WordPiece", "[UNK]", "##", 100),
        "vocabulary": model.get("vocab") == vocab,
        "post_processor": post.get("type") == "TemplateProcessing"
        and [next(iter(p)) for p in post.get("single", [])] == ["SpecialToken", "Sequence", "SpecialToken"]
        and [p.get("SpecialToken", {}).get("id") for p in post.get("single", [])] == ["[CLS]", None, "[SEP]"],
        "added tokens": all(t.get("content") in SPECIAL_TOKENS.values() and vocab.get(t["content"]) == t.get("id")
                            for t in spec.get("added_tokens", [])),
    }
    differs = [name for name, ok in checks.items() if not ok]
    if differs:
        raise NativeBertUnsupported(f"tokenizer.json differs from vocab.txt's BERT tokenizer ({', '.join(differs)})")


def _checkpoint_layout(path: Path, expected: dict[str, torch.Size]) -> str:
    """The prefix ('' or 'bert.') under which the checkpoint holds exactly ``expected``; reads only the header."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            slices = {key: handle.get_slice(key) for key in list(handle.keys())}
            layout = {key: (tuple(s.get_shape()), s.get_dtype()) for key, s in slices.items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise damaged_weights_error("BERT", path.parent, exc) from exc
    prefix = "bert." if any(k.startswith("bert.") for k in layout) else ""
    # Without the prefix: a checkpoint key that does not carry it (a task head) stays unexpected.
    names = {key.removeprefix(prefix): key for key in layout}
    kept = {name: layout[key] for name, key in names.items()
            if key.startswith(prefix) and not name.startswith(IGNORED_PREFIXES)}
    missing = sorted(set(expected) - set(kept))
    unexpected = sorted(names[name] for name in set(kept) - set(expected))
    unexpected += sorted(key for key in layout if not key.startswith(prefix))
    if missing or unexpected:
        raise NativeBertUnsupported(f"the checkpoint's tensors differ from a BertModel's (missing {missing[:3]}, "
                                    f"unexpected {unexpected[:3]})")
    for name, (shape, dtype) in kept.items():
        if shape != tuple(expected[name]):
            raise NativeBertUnsupported(f"{name} has shape {list(shape)}, the config says {list(expected[name])}")
        if dtype != "F32":
            raise NativeBertUnsupported(f"{name} is stored as {dtype}, not float32")
    return prefix


def load_native_bert(folder: str | Path) -> tuple[NativeBertModel, NativeBertTokenizer]:
    """The encoder (eval mode) and tokenizer of a local BERT folder.

    Raises :class:`NativeBertUnsupported` (before reading any tensor) when the folder is not one
    this module reproduces exactly, and WeightsError when its weight file is damaged.
    """
    folder = Path(folder)
    for name in ("config.json", "vocab.txt", "model.safetensors"):
        if not (folder / name).is_file():
            raise NativeBertUnsupported(f"no {name}")
    raw_config = _read_json(folder / "config.json")
    config = NativeBertConfig.from_dict(raw_config)
    vocab = read_vocab(folder / "vocab.txt")
    if len(vocab) > config.vocab_size:
        raise NativeBertUnsupported(f"vocab.txt has {len(vocab)} tokens, the model {config.vocab_size}")
    lowercase, strip_accents, chinese = _tokenizer_settings(folder, vocab)
    tokenizer = NativeBertTokenizer(folder, vocab, lowercase, strip_accents, chinese)

    model = NativeBertModel(config, raw_config)  # uninitialised until the checkpoint is assigned below
    expected = {k: v.shape for k, v in model.state_dict().items()}
    prefix = _checkpoint_layout(folder / "model.safetensors", expected)

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        stored = load_file(str(folder / "model.safetensors"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise damaged_weights_error("BERT", folder, exc) from exc
    state = {k[len(prefix):]: v for k, v in stored.items()
             if k.startswith(prefix) and not k[len(prefix):].startswith(IGNORED_PREFIXES)}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval(), tokenizer
