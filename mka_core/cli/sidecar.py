"""JSON sidecars: everything needed to make an output file again, bit for bit.

Every file ``mka generate`` writes gets ``<file>.json``::

    format, format_version, mka_version
    file            the audio file's name
    index           position of this output in the flattened batch (input j, candidate k: j * n + k)
    input_index, candidate, seed, input
    model           {path, index_sha256}
    request         the whole batch: inputs, cond, task, task_options, init {path, sha256},
                    mask (the range text, or {path, sha256} of a file), duration, steps, sampler,
                    guidance, seed (of index 0), n, device, dtype
    sample_rate, num_samples, duration
    rank, score     only when candidates were ranked

``mka generate --replay FILE.json`` re-runs ``request`` (the whole batch, so batch-dependent
numerics are identical) and writes output ``index`` only. Files the request read (init audio,
mask file) are checked against their recorded SHA-256 first.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from mka_core.config import StrictModel
from mka_core.errors import InputError

FORMAT = "mka-generation"
FORMAT_VERSION = 1


class RecordedFile(StrictModel):
    path: str
    sha256: str


class RecordedRequest(StrictModel):
    """One ``mka generate`` batch, with every default already resolved."""

    inputs: list[str]
    cond: str | None = None
    task: str
    task_options: dict[str, Any] = {}
    init: RecordedFile | None = None
    mask: str | RecordedFile | None = None
    duration: float
    steps: int
    sampler: str
    guidance: float
    seed: int
    n: int = 1
    device: str = "cpu"
    dtype: str = "float32"


class RecordedModel(StrictModel):
    path: str
    index_sha256: str | None = None


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
    request: RecordedRequest
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


def record_file(path: str | Path) -> RecordedFile:
    path = Path(path).expanduser().resolve()
    return RecordedFile(path=str(path), sha256=file_sha256(path))


def check_recorded_file(recorded: RecordedFile, what: str) -> str:
    """The recorded path, after checking the file is still the one that was used."""
    path = Path(recorded.path)
    if not path.is_file():
        raise InputError(f"The {what} {path} used by this sidecar is gone; put it back to replay.")
    if file_sha256(path) != recorded.sha256:
        raise InputError(f"The {what} {path} changed since the sidecar was written, so the replay would differ.")
    return str(path)


def sidecar_json(sidecar: Sidecar) -> str:
    return json.dumps(sidecar.model_dump(mode="json", exclude_none=False), indent=2, ensure_ascii=False) + "\n"


def read_sidecar(path: str | Path) -> Sidecar:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"The sidecar {path} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a JSON sidecar ({exc.__class__.__name__}).") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path} is not an mka generation sidecar (no \"format\": \"{FORMAT}\").")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{path} was written by a newer mka (sidecar format {data['format_version']}); upgrade mka.")
    try:
        return Sidecar.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InputError(f"The sidecar {path} is invalid at '{where}': {first.get('msg')}.") from exc
