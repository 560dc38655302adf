"""The JSON body of ``POST /api/jobs``: one generation request, checked before it is queued.

Every field mirrors a ``mka generate`` flag. Files are never named by path: image, video and
audio inputs are ``{"upload": ID}`` references to earlier uploads, and the inpainting mask is
a list of boxes (:class:`~mka_core.serve.mask_boxes.MaskBox`), so no request can make the
server read a file of its choosing.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from mka_core.config import StrictModel
from mka_core.errors import InputError
from mka_core.serve.mask_boxes import MaskBox


class UploadRef(StrictModel):
    """An input that is an earlier upload (image, video or audio)."""

    upload: str


class JobRequest(StrictModel):
    """What to generate. Left-out fields take the model's defaults, as in ``mka generate``."""

    task: str | None = Field(None, description="t2a, sdedit, inpaint or a plugin's task")
    cond: str | None = Field(None, description="conditioner name (default: the model's own)")
    inputs: list[str | UploadRef] = Field(default_factory=list, description="prompts, or {'upload': id} items")
    init_audio: str | None = Field(None, description="upload id of the init audio (sdedit, inpaint)")
    mask: list[MaskBox] | None = Field(None, description="inpainting boxes in seconds and mel bins")
    task_options: dict[str, Any] = Field(default_factory=dict)
    steps: int | None = Field(None, ge=1)
    sampler: str | None = None
    guidance: float | None = Field(None, ge=0, le=100)
    seed: int | Literal["random"] | None = None
    duration: float | None = None
    n: int = Field(1, ge=1)

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, value: Any) -> Any:
        if isinstance(value, int) and not 0 <= value < 2**62:
            raise ValueError("seed must be between 0 and 2^62, or \"random\"")
        return value

    @field_validator("guidance", "duration")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @property
    def fixed_seed(self) -> int | None:
        return None if self.seed in (None, "random") else int(self.seed)


def parse_job_request(body: bytes) -> JobRequest:
    """Bytes of a JSON object -> :class:`JobRequest`, or an InputError saying which field is wrong."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"The request body is not JSON ({exc.__class__.__name__}); send a JSON object.") from exc
    if not isinstance(data, dict):
        raise InputError("The request body must be a JSON object of generation settings.")
    try:
        return JobRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise InputError(f"Invalid request field '{where}': {message}.") from exc
