"""`adapter`: any conditioner, plus a small trained projection into another model's space.

This is how a new modality drives an existing model without retraining its U-Net: ``mka
train conditioner NAME --set model.pipeline=MODEL`` wraps conditioner NAME (its encoder stays
frozen), and regresses the projection onto the embeddings that MODEL's own conditioner gives
for the paired inputs. The adapter then writes into MODEL's embedding space. Its null
condition is the teacher's, recorded at alignment time, so guidance behaves as in training.

Token layout: a sequence base feeding a sequence space keeps its tokens (each projected); into
a global space it is mean-pooled over real tokens first; a global base into a sequence space
gives one token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
from pydantic import Field
from torch import nn

from mka_core.conditioning import CONDITIONER_CONFIG, TRAINED_WEIGHTS, Condition, Conditioner, EmbeddingSpace, InputKind
from mka_core.config import StrictModel
from mka_core.errors import InputError
from mka_core.plugins.hookspecs import hookimpl

BASE_FOLDER = "base"


class AdapterOptions(StrictModel):
    base: str = Field(..., description="the wrapped conditioner's registered name")
    base_options: dict[str, Any] = Field(default_factory=dict, description="its options")
    space: EmbeddingSpace = Field(..., description="the space the adapter writes into (the teacher's)")
    base_dim: int = Field(..., ge=1, description="the wrapped conditioner's width")
    base_tokens: str = Field("sequence", description="the wrapped conditioner's token layout")
    hidden: int = Field(0, ge=0, description="hidden width of the projection (0: a single linear map)")


def _masked_mean(cond: Condition) -> torch.Tensor:
    weights = cond.mask.to(cond.embeds.dtype)[..., None]
    return (cond.embeds * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp_min(1.0)


class AdapterConditioner(Conditioner):
    name: ClassVar[str] = "adapter"
    input_kind: ClassVar[InputKind] = "text"  # replaced per instance by the base's kind
    Options: ClassVar[type[StrictModel]] = AdapterOptions
    summary: ClassVar[str] = "A conditioner plus a trained projection into another model's space (mka train conditioner)."
    space_summary: ClassVar[str] = "the space it was aligned into"

    def __init__(self, options: StrictModel | None = None, *, base: Conditioner | None = None, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        from mka_core.plugins import manager

        opts = self.options
        if base is None:
            cls = manager.get("conditioner", opts.base)
            base = cls(cls.Options(**opts.base_options))
        self.base = base
        self.input_kind = base.input_kind  # type: ignore[misc]
        self.base.requires_grad_(False)
        dim = opts.space.dim
        if opts.hidden:
            self.projection = nn.Sequential(nn.Linear(opts.base_dim, opts.hidden), nn.GELU(), nn.Linear(opts.hidden, dim))
        else:
            self.projection = nn.Sequential(nn.Linear(opts.base_dim, dim))
        # The teacher's null condition (set by the alignment run); zeros until then.
        self.register_buffer("null_embeds", torch.zeros(1, 1, dim))
        self.register_buffer("null_mask", torch.ones(1, 1, dtype=torch.bool))

    @property
    def space(self) -> EmbeddingSpace:
        return self.options.space

    @classmethod
    def space_from_options(cls, options: StrictModel) -> EmbeddingSpace | None:
        return options.space

    def set_null_condition(self, cond: Condition) -> None:
        cond = cond[:1]
        self.null_embeds = cond.embeds.detach().to(self.null_embeds.device, torch.float32).clone()
        self.null_mask = cond.mask.detach().to(self.null_mask.device).clone()

    def prepare(self, inputs: Sequence[Any]) -> Any:
        return self.base.prepare(inputs)

    def encode(self, prepared: Any) -> Condition:
        with torch.no_grad():
            cond = self.base.encode(prepared)
        embeds, mask = cond.embeds.to(self.projection[0].weight.dtype), cond.mask
        if self.space.tokens == "global" and embeds.shape[1] != 1:
            embeds = _masked_mean(Condition(embeds, mask))
            mask = torch.ones(embeds.shape[0], 1, dtype=torch.bool, device=embeds.device)
        return Condition(self.projection(embeds), mask)

    def null_condition(self, batch_size: int = 1) -> Condition:
        return Condition(self.null_embeds.expand(batch_size, -1, -1), self.null_mask.expand(batch_size, -1))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.projection.parameters())

    def state_to_save(self) -> dict[str, torch.Tensor]:
        state = {f"projection.{k}": v.detach().contiguous() for k, v in self.projection.state_dict().items()}
        state["null_embeds"] = self.null_embeds.detach().contiguous()
        state["null_mask"] = self.null_mask.detach().contiguous()
        return state

    def cache_key(self, raw_input: Any) -> str:
        return self.base.cache_key(raw_input)

    # -- persistence: the base conditioner lives in a subfolder --------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        from mka_core.weights import save_safetensors, write_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.base.save_pretrained(directory / BASE_FOLDER)
        write_json(directory / CONDITIONER_CONFIG, {"conditioner": self.name, "options": self.options.to_json_dict()})
        save_safetensors(self.state_to_save(), directory / TRAINED_WEIGHTS)

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides: Any) -> "AdapterConditioner":
        from mka_core.plugins import manager
        from mka_core.weights import read_json

        directory = Path(directory)
        saved = read_json(directory / CONDITIONER_CONFIG)
        if saved.get("conditioner") != cls.name:
            raise InputError(f"{directory} holds a '{saved.get('conditioner')}' conditioner, not an adapter.")
        options = cls.Options(**{**saved["options"], **overrides})
        base_cls = manager.get("conditioner", options.base)
        base = base_cls.from_pretrained(directory / BASE_FOLDER) if (directory / BASE_FOLDER).is_dir() else None
        adapter = cls(options, base=base)
        adapter._load_trained(directory / TRAINED_WEIGHTS)
        return adapter

    def _load_trained(self, path: Path) -> None:
        """The projection and the teacher's null condition from ``trained.safetensors``; a file that does
        not fit this adapter (another width, another hidden size, a damaged export) is one sentence."""
        from mka_core.errors import WeightsError
        from mka_core.weights import load_fitting_state, load_safetensors

        fix = "it was exported for another adapter - retrain it (mka train conditioner) or re-create the model folder"
        state = load_safetensors(path)
        null_embeds, null_mask = state.pop("null_embeds", None), state.pop("null_mask", None)
        if null_embeds is None or null_mask is None:
            raise WeightsError(f"{path} lacks the adapter's null condition ('null_embeds' and 'null_mask'); {fix}.")
        dim = self.options.space.dim
        if null_embeds.ndim != 3 or null_embeds.shape[0] != 1 or null_embeds.shape[2] != dim \
                or tuple(null_mask.shape) != tuple(null_embeds.shape[:2]):
            raise WeightsError(
                f"{path} does not fit the adapter: 'null_embeds' has shape {list(null_embeds.shape)} and 'null_mask' "
                f"{list(null_mask.shape)}, the adapter needs [1, T, {dim}] and [1, T]; {fix}."
            )
        missing = [k for k in self.state_dict() if k.startswith("projection.") and k not in state]
        if missing:
            raise WeightsError(f"{path} does not fit the adapter: missing tensor(s) {missing[:3]}; {fix}.")
        load_fitting_state(self, state, path, strict=False, what="the adapter", fix=fix)
        self.null_embeds = null_embeds.to(torch.float32)
        self.null_mask = null_mask.bool()


@hookimpl
def register_conditioners(register):
    register(AdapterConditioner)
