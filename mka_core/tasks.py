"""The task contract: how a request runs the engine at inference.

A task receives a :class:`TaskRequest` (the condition and its null condition already
encoded, per-sample generators, the target length, the sampler) and returns the mel
spectrograms it produced. The pipeline then vocodes them and crops to the exact length.
Tasks reach the engine only through public :class:`~mka_core.pipeline.Pipeline` methods
(``sample``, ``encode_audio``, ``decode_latents``, ``latent_shape``...), the same ones a
third-party task uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

import torch

from mka_core.config import StrictModel
from mka_core.conditioning import Condition

if TYPE_CHECKING:  # pragma: no cover
    from mka_core.pipeline import Pipeline

Need = Literal["required", "optional", "unused"]


class NoOptions(StrictModel):
    """A task without options of its own."""


@dataclass
class TaskRequest:
    """Everything a task needs for one batch.

    ``condition`` / ``null_condition`` are ``None`` for unconditional tasks. ``frames`` is the
    mel length to produce (a multiple of the model's frame granularity); ``num_samples`` the
    exact waveform length the pipeline will crop to. ``init_audio`` is ``[B, N]`` at the
    pipeline's sample rate when the task takes one (cropped or zero-padded to ``num_samples``;
    the original lengths are in ``init_audio_lengths``); ``mask`` is ``[B, 1, n_mels, frames]`` with
    1 marking the region to regenerate.
    """

    batch_size: int
    frames: int
    num_samples: int
    generators: list[torch.Generator]
    sampler: str
    steps: int
    guidance: float
    condition: Condition | None = None
    null_condition: Condition | None = None
    init_audio: torch.Tensor | None = None
    #: Samples of each init audio before it was cropped or zero-padded to ``num_samples``.
    init_audio_lengths: list[int] | None = None
    mask: torch.Tensor | None = None
    start_latents: torch.Tensor | None = None
    options: StrictModel = field(default_factory=NoOptions)
    progress: Callable[[int, int], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskOutput:
    """A task's result: mels ``[B, 1, n_mels, frames]`` and the latents they came from."""

    mel: torch.Tensor
    latents: torch.Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class Task:
    """Base class of every task plugin."""

    #: Registered name, e.g. ``"sdedit"``.
    name: ClassVar[str]
    #: One line for ``mka plugins``.
    summary: ClassVar[str] = ""
    #: Whether the task takes a condition, an init audio, a mask.
    condition: ClassVar[Need] = "required"
    init_audio: ClassVar[Need] = "unused"
    mask: ClassVar[Need] = "unused"
    #: Task-specific options (e.g. strength), validated by pydantic.
    Options: ClassVar[type[StrictModel]] = NoOptions

    def check(self, pipeline: "Pipeline", request: TaskRequest) -> None:
        """Validate a request before any work is done (raise InputError with one sentence)."""

    def run(self, pipeline: "Pipeline", request: TaskRequest) -> TaskOutput:  # pragma: no cover - abstract
        raise NotImplementedError
