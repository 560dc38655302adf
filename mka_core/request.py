"""One generation request: the single, validated description of what to generate.

``mka generate`` builds a :class:`GenerationRequest` from its flags, the JSON sidecar records
the request as it ran and ``--replay`` reads it back, the web server's JSON API validates the
same fields (:mod:`mka_core.serve.requests` adapts uploads and mask boxes to it), and the
Python API takes one (``pipe(request)``; keyword arguments build one).

Every value is checked here, once, with the same rule wherever it came from:

* ``seed``: an integer with ``0 <= seed`` and ``seed + outputs <= 2**63`` (output ``i`` of the
  flattened batch uses ``seed + i``, and every one of those must fit a signed 64-bit integer);
  ``None`` (or ``"random"``) picks one at run time, which the sidecar records;
* ``guidance``: a finite number from 0 to 100;
* ``duration``: a finite number of seconds from 0.1 to 120 (a model may allow less);
* ``steps``: an integer from 1 to 1000;
* ``n``: an integer from 1, with at most 256 outputs (inputs x n) per request.

A request that breaks a rule raises :class:`~mka_core.errors.InputError` with one sentence
(:func:`request_from_dict`, :func:`build_request`) or pydantic's ``ValidationError`` when the
model is constructed directly.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from mka_core.config import StrictModel
from mka_core.errors import InputError, validation_sentence
from mka_core.geometry import MAX_DURATION, MIN_DURATION

#: Seeds must satisfy ``0 <= seed`` and ``seed + outputs <= SEED_LIMIT``.
SEED_LIMIT = 2**63
#: Outputs (inputs x candidates) in one request.
MAX_BATCH = 256
MAX_STEPS = 1000
MAX_GUIDANCE = 100.0


def check_seed(seed: int, outputs: int = 1) -> int:
    """The seed rule, for callers that learn the batch size late (a precomputed condition)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"The seed must be a whole number, got {seed!r}.")
    if seed < 0 or seed + max(1, outputs) > SEED_LIMIT:
        raise InputError(seed_range_sentence(seed, outputs))
    return seed


def seed_range_sentence(seed: int, outputs: int) -> str:
    shown = f"{seed}" if len(str(seed)) <= 24 else f"{str(seed)[:21]}..."
    return (f"The seed {shown} is out of range: seeds are whole numbers from 0 to 2^63 - {max(1, outputs)} for "
            f"a request of {max(1, outputs)} output(s) (output i uses seed + i); pick a smaller seed.")


class OutputNaming(StrictModel):
    """Where outputs are written and what goes with them (used by :mod:`mka_core.outputs`, not by generation).

    ``out`` is a file (one output) or a folder (``<slug>_<seed>.wav`` inside); ``None`` is the
    current folder. ``spectrogram`` adds ``<file>.png``.
    """

    out: str | None = None
    spectrogram: bool = False


class RequestSettings(StrictModel):
    """The values every request shape shares, each checked by one rule (see the module docstring).

    :class:`GenerationRequest` adds its inputs, init audio, mask and output naming; the web
    server's JSON body (:class:`mka_core.serve.requests.JobRequest`) adds uploads and mask boxes
    and becomes a GenerationRequest on the server.
    """

    cond: str | None = Field(None, description="conditioner name (default: the model's own)")
    cond_options: dict[str, Any] = Field(default_factory=dict,
                                         description="options of --cond's conditioner over the ones the model saved")
    task: str | None = Field(None, description="t2a, sdedit, inpaint or a plugin's task (default: the model's)")
    task_options: dict[str, Any] = Field(default_factory=dict, description="the task's options, e.g. strength")
    sampler: str | None = Field(None, description="sampler name (default: the model's)")
    sampler_options: dict[str, Any] = Field(default_factory=dict, description="the sampler's options")
    steps: int | None = Field(None, description=f"sampler steps, 1-{MAX_STEPS}")
    guidance: float | None = Field(None, description=f"classifier-free guidance scale, 0-{MAX_GUIDANCE:g}")
    duration: float | None = Field(None, description=f"seconds, {MIN_DURATION:g}-{MAX_DURATION:g}")
    seed: int | None = Field(None, description="seed of output 0; output i uses seed + i (None: random)")
    n: int = Field(1, description="candidates per input")

    # -- one rule per value --------------------------------------------------------------------
    @field_validator("seed", mode="before")
    @classmethod
    def _seed_value(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "random":
            return None
        if isinstance(value, bool):
            raise ValueError("must be a whole number, not true/false")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"must be a whole number, got {value!r}")
            return int(value)
        return value

    @field_validator("guidance")
    @classmethod
    def _guidance_range(cls, value: float | None) -> float | None:
        if value is None:
            return value
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number from 0 to {MAX_GUIDANCE:g}, got {value}")
        if not 0 <= value <= MAX_GUIDANCE:
            raise ValueError(f"must be between 0 and {MAX_GUIDANCE:g}, got {value:g}")
        return value

    @field_validator("duration")
    @classmethod
    def _duration_range(cls, value: float | None) -> float | None:
        if value is None:
            return value
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number of seconds, got {value}")
        if not MIN_DURATION <= value <= MAX_DURATION:
            raise ValueError(f"{value:g} s is outside the supported range {MIN_DURATION:g}-{MAX_DURATION:g} s")
        return value

    @field_validator("steps")
    @classmethod
    def _steps_range(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_STEPS:
            raise ValueError(f"must be between 1 and {MAX_STEPS}, got {value}")
        return value

    @field_validator("n")
    @classmethod
    def _n_range(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1 (candidates per input), got {value}")
        return value

    @field_validator("cond", "task", "sampler")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty; leave it out for the model's default")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _batch(self) -> "RequestSettings":
        outputs = self.outputs
        if outputs > MAX_BATCH:
            raise ValueError(f"{outputs} outputs in one request is more than the limit of {MAX_BATCH}; "
                             "split the request")
        if self.seed is not None and (self.seed < 0 or self.seed + outputs > SEED_LIMIT):
            raise ValueError(seed_range_sentence(self.seed, outputs).rstrip("."))
        return self

    @property
    def outputs(self) -> int:  # pragma: no cover - each request shape counts its own
        return self.n


class GenerationRequest(RequestSettings):
    """What to generate. Fields left ``None`` take the model's defaults when the request runs."""

    inputs: list[str] = Field(default_factory=list,
                              description="inputs of the conditioner: prompts, or image/video file paths")
    init_audio: str | list[str] | None = Field(None, description="init audio file (one, or one per input)")
    mask: str | None = Field(None, description="inpainting mask: ranges like '2.0-3.5@300-2000', or a .npy/.png")
    output: OutputNaming = Field(default_factory=OutputNaming)

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, value: list[str]) -> list[str]:
        for number, item in enumerate(value, start=1):
            if not item.strip():
                raise ValueError(f"input {number} is empty; write something or leave it out")
        return value

    @property
    def outputs(self) -> int:
        """Outputs of the flattened batch: ``max(1, inputs) x n`` (one init audio per input counts too)."""
        count = len(self.inputs)
        if not count and isinstance(self.init_audio, list):
            count = len(self.init_audio)
        return max(1, count) * self.n

    def with_changes(self, **changes: Any) -> "GenerationRequest":
        """A validated copy with ``changes`` applied (``model_copy`` would skip validation)."""
        return request_from_dict({**self.model_dump(), **changes})


def request_sentence(exc: ValidationError) -> str:
    """A request's validation error as one sentence naming the field."""
    extra = [".".join(str(p) for p in e.get("loc", ())) for e in exc.errors() if e.get("type") == "extra_forbidden"]
    if extra:  # a misspelled or made-up field: name it, and the fields there are
        return (f"Invalid generation request: {', '.join(repr(e) for e in extra)} is an extra field, not one a "
                "request has; check its spelling (docs/generate.md lists the fields).")
    return validation_sentence(exc, "generation request")


def request_from_dict(data: dict[str, Any]) -> GenerationRequest:
    """Validate ``data`` as a :class:`GenerationRequest`; an :class:`InputError` with one sentence if it is not."""
    try:
        return GenerationRequest.model_validate(data)
    except ValidationError as exc:
        raise InputError(request_sentence(exc)) from exc


def build_request(**fields: Any) -> GenerationRequest:
    """Keyword arguments -> :class:`GenerationRequest` (``None`` values are left out)."""
    return request_from_dict({key: value for key, value in fields.items() if value is not None})


__all__ = ["GenerationRequest", "RequestSettings", "OutputNaming", "SEED_LIMIT", "MAX_BATCH", "check_seed", "build_request",
           "request_from_dict", "request_sentence"]
