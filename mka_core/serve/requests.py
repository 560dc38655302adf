"""The JSON body of ``POST /api/jobs``: the server's shape of a :class:`~mka_core.request.GenerationRequest`.

Every setting is a :class:`~mka_core.request.RequestSettings` field, checked by the same rules
as ``mka generate``'s flags and the Python API (seed range, finite guidance, durations, steps,
candidates). What differs is how files arrive: never by path. Image, video and audio inputs are
``{"upload": ID}`` references to earlier uploads, the init audio is an upload id, and the
inpainting mask is a list of boxes (:class:`~mka_core.serve.mask_boxes.MaskBox`), and
``cond_options`` (which can name weight files) is refused, so no request can make the server
read a file of its choosing. :meth:`ModelRuntime.resolve
<mka_core.serve.runtime.ModelRuntime.resolve>` turns the uploads into the server's own paths
and the boxes into a mask text, and builds the GenerationRequest that runs and that every
output's sidecar records.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, ValidationError, field_validator

from mka_core.config import StrictModel
from mka_core.errors import InputError
from mka_core.request import RequestSettings
from mka_core.serve.mask_boxes import MaskBox


class UploadRef(StrictModel):
    """An input that is an earlier upload (image, video or audio)."""

    upload: str


class JobRequest(RequestSettings):
    """What to generate. Left-out fields take the model's defaults, as in ``mka generate``.

    ``seed`` may also be ``"random"`` (the same as leaving it out).
    """

    inputs: list[str | UploadRef] = Field(default_factory=list, description="prompts, or {'upload': id} items")
    init_audio: str | None = Field(None, description="upload id of the init audio (sdedit, inpaint)")
    mask: list[MaskBox] | None = Field(None, description="inpainting boxes in seconds and mel bins")

    @field_validator("cond_options")
    @classmethod
    def _no_conditioner_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Conditioner options can name weight files and folders; a client never chooses a path.
        if value:
            raise ValueError("is not accepted by the server (conditioner options can name files); "
                             "the options the model folder saved apply")
        return value

    @field_validator("init_audio")
    @classmethod
    def _upload_id(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be an upload id; leave it out for no init audio")
        return value

    @property
    def outputs(self) -> int:
        return max(1, len(self.inputs)) * self.n

    @property
    def fixed_seed(self) -> int | None:
        return self.seed


def parse_job_request(body: bytes) -> JobRequest:
    """Bytes of a JSON object -> :class:`JobRequest`, or an InputError saying which field is wrong."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"The request body is not JSON ({exc.__class__.__name__}); send a JSON object.") from exc
    if not isinstance(data, dict):
        raise InputError("The request body must be a JSON object of generation settings.")
    return job_request_from_dict(data)


def job_request_from_dict(data: dict[str, Any]) -> JobRequest:
    """A decoded JSON object -> :class:`JobRequest`, or an InputError with one sentence naming the field."""
    try:
        return JobRequest.model_validate(data)
    except ValidationError as exc:
        from mka_core.request import request_sentence

        raise InputError(request_sentence(exc)) from exc
