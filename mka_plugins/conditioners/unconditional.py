"""`unconditional`: the conditioner of models that take no condition (the reference inpaint7).

Every pipeline names a conditioner; a model without cross-attention (``context_dim: null``)
names this one. It accepts no inputs and its null condition is one masked placeholder token,
which the pipeline does not pass to a context-free U-Net.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch

from mka_core.conditioning import Condition, Conditioner, EmbeddingSpace, InputKind
from mka_core.config import StrictModel
from mka_core.errors import InputError
from mka_core.plugins.hookspecs import hookimpl

SPACE = EmbeddingSpace(name="none", dim=1, tokens="global")


class UnconditionalOptions(StrictModel):
    """No options: there is nothing to encode."""


class UnconditionalConditioner(Conditioner):
    name: ClassVar[str] = "unconditional"
    input_kind: ClassVar[InputKind] = "text"
    Options: ClassVar[type[StrictModel]] = UnconditionalOptions
    summary: ClassVar[str] = "For models that take no condition (e.g. the reference inpainting model); accepts no inputs."
    space_summary: ClassVar[str] = "none (no condition)"

    def __init__(self, options: StrictModel | None = None, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        # Gives the module a device and dtype to follow (.to() moves it like any encoder).
        self.register_buffer("placeholder", torch.zeros(1, 1, 1), persistent=False)

    @property
    def space(self) -> EmbeddingSpace:
        return SPACE

    @classmethod
    def space_from_options(cls, options: StrictModel) -> EmbeddingSpace | None:
        return SPACE

    def prepare(self, inputs: Sequence[Any]) -> Any:
        if list(inputs):
            raise InputError("This model takes no condition; drop the prompt or input and give only the task's inputs.")
        return None

    def encode(self, prepared: Any) -> Condition:  # pragma: no cover - prepare refuses every input
        raise InputError("This model takes no condition.")

    def null_condition(self, batch_size: int = 1) -> Condition:
        embeds = self.placeholder.expand(batch_size, 1, 1).contiguous()
        return Condition(embeds, torch.zeros(batch_size, 1, dtype=torch.bool, device=embeds.device))

    @classmethod
    def build_random(cls, preset: str = "tiny", seed: int = 0, **options: Any) -> "UnconditionalConditioner":
        return cls(cls.Options(**options))


@hookimpl
def register_conditioners(register):
    register(UnconditionalConditioner)
