"""JSON sidecars: everything needed to make an output file again, bit for bit.

Every file ``mka generate`` (and ``mka serve``) writes gets ``<file>.json``::

    format          "mka-generation"
    format_version  2
    mka_version
    file            the audio file's name
    index           position of this output in the flattened batch (input j, candidate k: j * n + k)
    input_index, candidate, seed, input
    model           {path, index_sha256}
    request         the GenerationRequest as it ran, every default resolved (mka_core.request):
                    inputs, cond, cond_options, task, task_options, sampler, sampler_options,
                    steps, guidance, duration, seed (of index 0), n, init_audio, mask, output
    files           {path: sha256} of every file the request read (init audio, mask file,
                    image or video inputs)
    runtime         {device, dtype, requested_dtype}: where it ran and in which precision (dtype
                    is what ran: float32 when bfloat16 was requested on a CPU without it)
    sample_rate, num_samples, duration
    rank, score     only when candidates were ranked
    metadata        the output's generation metadata (task metadata merged in)

``mka generate --replay FILE.json`` re-runs ``request`` (the whole batch, so batch-dependent
numerics are identical) and writes output ``index`` only. The files in ``files`` are checked
against their recorded SHA-256 first.

Format version 1 (mka before the GenerationRequest) recorded ``request`` as ``{inputs, cond,
task, task_options, init: {path, sha256}, mask: text or {path, sha256}, duration, steps,
sampler, guidance, seed, n, device, dtype}``; :func:`read_sidecar` upgrades it to version 2
(same values, ``init`` -> ``init_audio`` and ``files``, ``device``/``dtype`` -> ``runtime``),
so old sidecars replay unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from mka_core.config import StrictModel
from mka_core.errors import InputError, validation_problems
from mka_core.request import GenerationRequest

FORMAT = "mka-generation"
FORMAT_VERSION = 2


class RecordedModel(StrictModel):
    path: str
    index_sha256: str | None = None


class RecordedRuntime(StrictModel):
    device: str = "cpu"
    #: The dtype that ran.
    dtype: str = "float32"
    #: What was asked for, when it differs from ``dtype``.
    requested_dtype: str | None = None


class Sidecar(BaseModel):
    """The sidecar document (newer minor fields are tolerated when reading)."""

    model_config = ConfigDict(extra="allow")

    format: Literal["mka-generation"] = FORMAT
    format_version: int = FORMAT_VERSION
    mka_version: str
    file: str
    index: int
    input_index: int
    candidate: int
    seed: int
    input: str | None = None
    model: RecordedModel
    request: GenerationRequest
    files: dict[str, str] = {}
    runtime: RecordedRuntime = RecordedRuntime()
    sample_rate: int
    num_samples: int
    duration: float
    rank: int | None = None
    score: float | None = None
    metadata: dict[str, Any] = {}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def request_files(request: GenerationRequest, file_inputs: bool) -> dict[str, str]:
    """``{absolute path: sha256}`` of the files ``request`` reads (``file_inputs``: its inputs are files)."""
    paths: list[str] = []
    if request.init_audio is not None:
        paths += request.init_audio if isinstance(request.init_audio, list) else [request.init_audio]
    if request.mask is not None and Path(request.mask).expanduser().is_file():
        paths.append(request.mask)
    if file_inputs:
        paths += [item for item in request.inputs if Path(item).expanduser().is_file()]
    recorded = {}
    for path in paths:
        resolved = Path(path).expanduser().resolve()
        if str(resolved) not in recorded:
            recorded[str(resolved)] = file_sha256(resolved)
    return recorded


def check_recorded_files(files: dict[str, str]) -> None:
    """Every file a sidecar's request read must still be there, unchanged."""
    for name, sha256 in files.items():
        path = Path(name)
        if not path.is_file():
            raise InputError(f"The file {path} used by this sidecar is gone; put it back to replay.")
        if file_sha256(path) != sha256:
            raise InputError(f"The file {path} changed since the sidecar was written, so the replay would differ.")


def sidecar_json(sidecar: Sidecar) -> str:
    return json.dumps(sidecar.model_dump(mode="json", exclude_none=False), indent=2, ensure_ascii=False) + "\n"


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A format-1 sidecar document in the format-2 shape (same request, same values)."""
    old = dict(data.get("request") or {})
    if not isinstance(data.get("request"), dict):
        return data
    files: dict[str, str] = {}
    init = old.pop("init", None)
    if isinstance(init, dict) and "path" in init:
        files[str(init["path"])] = str(init.get("sha256", ""))
        old["init_audio"] = str(init["path"])
    mask = old.get("mask")
    if isinstance(mask, dict) and "path" in mask:
        files[str(mask["path"])] = str(mask.get("sha256", ""))
        old["mask"] = str(mask["path"])
    runtime = {"device": old.pop("device", "cpu"), "dtype": old.pop("dtype", "float32")}
    return {**data, "format_version": FORMAT_VERSION, "request": old, "files": files, "runtime": runtime}


def read_sidecar(path: str | Path) -> Sidecar:
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"The sidecar {path} is a folder; give the <file>.json written next to an output.")
    if not path.is_file():
        raise InputError(f"The sidecar {path} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a JSON sidecar ({exc.__class__.__name__}).") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path} is not an mka generation sidecar (no \"format\": \"{FORMAT}\").")
    version = data.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"The sidecar {path} has an invalid format_version {version!r}.")
    if version > FORMAT_VERSION:
        raise InputError(f"{path} was written by a newer mka (sidecar format {version}); upgrade mka.")
    if version == 1:
        data = upgrade_v1(data)
    try:
        return Sidecar.model_validate(data)
    except ValidationError as exc:
        raise InputError(_invalid(path, exc)) from exc


def _invalid(path: Path, exc: ValidationError) -> str:
    return f"The sidecar {path} is invalid: {validation_problems(exc)}."
