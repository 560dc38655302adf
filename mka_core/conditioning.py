"""The conditioner contract: embedding spaces, conditions and conditioners.

A *conditioner* turns raw inputs (text, an image, a video, a sound) into a
:class:`Condition` in a named :class:`EmbeddingSpace`. A diffusion model records the
space it was trained in; any conditioner writing into the same space can drive it.
That is how a model trained on CLIP *text* embeddings of captions generates from a
CLIP *image* or *video* embedding.

Conditioners run in two stages so data loading can happen in worker processes:

* :meth:`Conditioner.prepare` - CPU only: tokenising, decoding frames, image transforms.
* :meth:`Conditioner.encode` - on the model's device: the frozen encoder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import torch
from torch import nn

from mka_core.config import StrictModel
from mka_core.errors import SpaceMismatchError

InputKind = Literal["text", "image", "video", "audio"]


class EmbeddingSpace(StrictModel):
    """Where a conditioner writes: a name, a width and the token layout.

    ``name`` identifies the space (for example ``"openclip-vit-h-14/laion2b_s32b_b79k"``);
    two conditioners are interchangeable at inference exactly when their spaces are equal.
    ``tokens`` is ``"sequence"`` for one vector per token or ``"global"`` for one vector.
    """

    name: str
    dim: int
    tokens: Literal["sequence", "global"]

    def describe(self) -> str:
        return f"{self.name} ({self.dim}-d, {self.tokens})"


@dataclass
class Condition:
    """What every conditioner returns.

    ``embeds``: ``[B, T, D]`` float; ``mask``: ``[B, T]`` bool, True marks a real token.
    """

    embeds: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        if self.embeds.dim() != 3:
            raise ValueError(f"Condition.embeds must be [B, T, D], got shape {tuple(self.embeds.shape)}")
        if self.mask.shape != self.embeds.shape[:2]:
            raise ValueError(
                f"Condition.mask must be [B, T] = {tuple(self.embeds.shape[:2])}, got {tuple(self.mask.shape)}"
            )
        if self.mask.dtype != torch.bool:
            self.mask = self.mask.bool()

    @property
    def batch_size(self) -> int:
        return int(self.embeds.shape[0])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Condition":
        return Condition(self.embeds.to(device=device, dtype=dtype), self.mask.to(device=device))

    def repeat_interleave(self, n: int) -> "Condition":
        """Each sample repeated ``n`` times in a row (candidates per input)."""
        return Condition(self.embeds.repeat_interleave(n, dim=0), self.mask.repeat_interleave(n, dim=0))

    def expand(self, batch_size: int) -> "Condition":
        """A batch-1 condition broadcast to ``batch_size`` (used for null conditions)."""
        if self.batch_size == batch_size:
            return self
        if self.batch_size != 1:
            raise ValueError(f"cannot expand a condition of batch {self.batch_size} to {batch_size}")
        return Condition(
            self.embeds.expand(batch_size, -1, -1).contiguous(), self.mask.expand(batch_size, -1).contiguous()
        )

    def __getitem__(self, index: int | slice) -> "Condition":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Condition(self.embeds[index], self.mask[index])

    @staticmethod
    def cat(conditions: Sequence["Condition"]) -> "Condition":
        """Concatenate along the batch, padding token counts with masked zeros."""
        tokens = max(c.embeds.shape[1] for c in conditions)
        embeds, masks = [], []
        for c in conditions:
            pad = tokens - c.embeds.shape[1]
            embeds.append(torch.nn.functional.pad(c.embeds, (0, 0, 0, pad)))
            masks.append(torch.nn.functional.pad(c.mask, (0, pad), value=False))
        return Condition(torch.cat(embeds), torch.cat(masks))


class Conditioner(nn.Module):
    """Base class of every conditioner plugin.

    Subclasses set the class attributes and implement :meth:`prepare`, :meth:`encode`,
    :meth:`space` and :meth:`null_condition`. Encoders are frozen by default: only the
    parameters returned by :meth:`trainable_parameters` are ever given to an optimiser.

    Persistence: ``save_pretrained(dir)`` writes ``config.json`` (the options) and, when the
    conditioner holds weights that are not available elsewhere (tiny random models built for
    tests, trained adapters), ``model.safetensors``. ``from_pretrained(dir)`` reverses it. The
    pipeline calls these; subclasses adapt them through :meth:`save_extra` /
    :meth:`state_to_save` and :meth:`load_extra`.
    """

    #: Registered name, e.g. ``"clip-video"``.
    name: ClassVar[str]
    #: The kind of raw input: text, image, video or audio.
    input_kind: ClassVar[InputKind]
    #: Pydantic options model (unknown keys rejected).
    Options: ClassVar[type[StrictModel]]
    #: One line for ``mka plugins``.
    summary: ClassVar[str] = ""
    #: The space its default options write into, for listings (e.g. "openclip ViT-H-14, 1024, global").
    space_summary: ClassVar[str] = ""

    def __init__(self, options: StrictModel | None = None, **overrides: Any) -> None:
        super().__init__()
        from pydantic import ValidationError

        try:
            if options is None:
                options = self.Options(**overrides)
            elif overrides:
                options = self.Options.model_validate({**options.model_dump(), **overrides})
        except ValidationError as exc:  # a bad option is the user's to fix: name the plugin and the option
            from mka_core.plugins.faults import options_error

            raise options_error(type(self), exc, "conditioner") from exc
        self.options = options

    # -- the contract -------------------------------------------------------------------
    @property
    def space(self) -> EmbeddingSpace:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def space_from_options(cls, options: StrictModel) -> EmbeddingSpace | None:
        """The space these options would write into, without loading any weights.

        Lets the pipeline refuse a mismatched conditioner (and list the ones that fit) before
        loading a large encoder. Return None when it cannot be known without loading.
        """
        return None

    def prepare(self, inputs: Sequence[Any]) -> Any:  # pragma: no cover - abstract
        """CPU-side preparation of a batch of raw inputs (tokenise, decode, transform)."""
        raise NotImplementedError

    def encode(self, prepared: Any) -> Condition:  # pragma: no cover - abstract
        """Device-side encoding of what :meth:`prepare` returned."""
        raise NotImplementedError

    def null_condition(self, batch_size: int = 1) -> Condition:  # pragma: no cover - abstract
        """The condition used for classifier-free guidance (the encoding of "" for text)."""
        raise NotImplementedError

    @classmethod
    def build_random(cls, preset: str = "tiny", seed: int = 0, **options: Any) -> "Conditioner":
        """A randomly initialised encoder of the same architecture, from a local config.

        Used by ``mka new-model --preset tiny`` and by tests: it never downloads. The result's
        :meth:`save_weights` must write everything needed to rebuild it offline.
        """
        from mka_core.errors import PluginError

        raise PluginError(f"Conditioner '{cls.name}' has no random '{preset}' preset; pass its weights instead.")

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters a training run may update (an adapter or projection); none by default."""
        return []

    # -- conveniences ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for tensor in self.parameters():
            return tensor.dtype
        return torch.float32

    @torch.no_grad()
    def __call__(self, inputs: Sequence[Any]) -> Condition:  # type: ignore[override]
        """Prepare and encode in one go (inference path)."""
        return self.encode(self.prepare(list(inputs)))

    def forward(self, prepared: Any) -> Condition:
        """Differentiable path for training the trainable parameters."""
        return self.encode(prepared)

    def cache_key(self, raw_input: Any) -> str:
        """A stable key for the on-disk embedding cache (see :mod:`mka_core.embedding_cache`)."""
        if isinstance(raw_input, (str, Path)) and self.input_kind != "text":
            path = Path(raw_input)
            payload = path.read_bytes() if path.is_file() else str(raw_input).encode()
        else:
            payload = str(raw_input).encode("utf-8", "surrogatepass")
        opts = json.dumps(self.options.to_json_dict(), sort_keys=True).encode()
        return hashlib.sha256(self.name.encode() + b"\0" + opts + b"\0" + payload).hexdigest()

    # -- persistence -----------------------------------------------------------------------
    def save_weights(self, directory: Path) -> bool:
        """Write the encoder's own files (weights, tokenizer, model config) into ``directory``.

        Return True when the files written are enough to rebuild the encoder from that folder
        (the saved options then point their ``weights`` field at it); return False to keep
        referring to the original source (a hub id or the user's cache). The default writes
        nothing.
        """
        return False

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``conditioner.json`` (name and options), the encoder files and trained parameters."""
        from mka_core.weights import save_safetensors, write_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        wrote_weights = self.save_weights(directory)  # may record identity in the options first
        options = self.options.to_json_dict()
        if wrote_weights and "weights" in options:
            options["weights"] = "."
        write_json(directory / CONDITIONER_CONFIG, {"conditioner": self.name, "options": options})
        trained = self.state_to_save()
        if trained:
            save_safetensors(trained, directory / TRAINED_WEIGHTS)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides: Any) -> "Conditioner":
        """Rebuild a conditioner from a folder written by :meth:`save_pretrained`.

        The folder may have been written by *another* conditioner of the same space (a model
        trained with ``clip-text`` runs with ``clip-image``): options the class does not know are
        dropped, and a ``weights`` value of ``"."`` means this folder.
        """
        from mka_core.weights import load_fitting_state, load_safetensors, read_json

        directory = Path(directory)
        saved = read_json(directory / CONDITIONER_CONFIG)
        fields = cls.Options.model_fields
        options = {k: v for k, v in saved.get("options", {}).items() if k in fields}
        if options.get("weights") == ".":
            options["weights"] = str(directory)
        saved_options = dict(options)
        options.update(overrides)
        try:
            validated = cls.Options(**options)
        except ValueError as exc:  # pydantic's ValidationError: the caller's overrides or a damaged conditioner.json
            from mka_core.errors import WeightsError, validation_problems

            if overrides and _validates(cls, saved_options):
                from mka_core.plugins.faults import options_error

                raise options_error(cls, exc, "conditioner") from exc

            raise WeightsError(
                f"{directory / CONDITIONER_CONFIG} has invalid options for conditioner '{cls.name}' "
                f"({validation_problems(exc)}); fix the file or re-create the model folder."
            ) from exc
        conditioner = cls(validated)
        trained_path = directory / TRAINED_WEIGHTS
        if trained_path.exists() and saved.get("conditioner") == cls.name:
            load_fitting_state(conditioner, load_safetensors(trained_path), trained_path, strict=False,
                               what=f"conditioner '{cls.name}'",
                               fix="it was trained for another configuration - re-create the model folder or retrain")
        return conditioner

    def state_to_save(self) -> dict[str, torch.Tensor]:
        """Tensors stored in ``trained.safetensors``: the trainable parameters, by name."""
        trainable = {id(p) for p in self.trainable_parameters()}
        return {k: v.detach().contiguous() for k, v in self.named_parameters() if id(v) in trainable}


def _validates(cls: type[Conditioner], options: dict[str, Any]) -> bool:
    try:
        cls.Options(**options)
    except ValueError:
        return False
    return True


CONDITIONER_CONFIG = "conditioner.json"
TRAINED_WEIGHTS = "trained.safetensors"


def check_space(model_space: EmbeddingSpace, conditioner: Conditioner, candidates: Sequence[str] = ()) -> None:
    """Refuse a conditioner that writes into another space than the model was trained in."""
    if conditioner.space == model_space:
        return
    hint = f" Conditioners that fit: {', '.join(sorted(candidates))}." if candidates else ""
    raise SpaceMismatchError(
        f"The model was trained in the embedding space {model_space.describe()}, but conditioner "
        f"'{conditioner.name}' writes into {conditioner.space.describe()}.{hint}"
    )
