"""Writing a generation's outputs: audio file, JSON sidecar and spectrogram, all of an output at once.

Shared by ``mka generate`` and ``mka serve`` (which sit above this package), so a file from
either replays with ``mka generate --replay``. Naming and atomic publishing are in
:mod:`mka_core.outputs.files`, the sidecar document in :mod:`mka_core.outputs.sidecar`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mka_core.errors import InputError
from mka_core.outputs.files import AUDIO_SUFFIXES, OutputFiles, slugify
from mka_core.outputs.sidecar import RecordedModel, RecordedRuntime, Sidecar, request_files, sidecar_json


@dataclass
class Destination:
    """``file`` is set for one output written to an explicit file name; else files go into ``folder``."""

    file: Path | None
    folder: Path


def encode_audio(waveform, sample_rate: int, suffix: str) -> bytes:
    """16-bit PCM WAV (or FLAC) bytes; deterministic, so a replay gives the same file."""
    import numpy as np
    import soundfile as sf

    data = np.clip(waveform.float().cpu().numpy(), -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, data, sample_rate, format="FLAC" if suffix == ".flac" else "WAV", subtype="PCM_16")
    return buffer.getvalue()


def runtime_of(pipe) -> RecordedRuntime:
    """Where the pipeline runs and in which precision (what ran, and what was asked when that differs)."""
    from mka_core.devices import dtype_name

    requested = getattr(pipe, "requested_dtype", pipe.dtype)
    return RecordedRuntime(device=str(pipe.device), dtype=dtype_name(pipe.dtype),
                           requested_dtype=dtype_name(requested) if requested != pipe.dtype else None)


def build_sidecar(pipe, model_dir: Path, result, row: int, file: Path, ranking=None,
                  files: dict[str, str] | None = None) -> Sidecar:
    """The sidecar of row ``row`` of ``result`` (written as ``file``)."""
    from mka_core import __version__
    from mka_core.model_lookup import index_hash

    meta = result.metadata[row]
    request = result.request
    if files is None:
        files = request_files(request, _file_inputs(pipe, request))
    num_samples = int(result.waveforms.shape[-1])
    return Sidecar(
        mka_version=__version__, file=file.name, index=meta["index"], input_index=meta["input_index"],
        candidate=meta["candidate"], seed=meta["seed"], input=meta.get("input"),
        model=RecordedModel(path=str(model_dir), index_sha256=index_hash(model_dir)), request=request,
        files=files, runtime=runtime_of(pipe), sample_rate=result.sample_rate, num_samples=num_samples,
        duration=num_samples / result.sample_rate,
        rank=ranking.ranks[row] if ranking else None, score=ranking.scores[row] if ranking else None,
        metadata={k: v for k, v in meta.items() if k not in ("mka_version",)},
    )


def _file_inputs(pipe, request) -> bool:
    """Whether the request's inputs are files (image or video conditioners)."""
    if not request.inputs or request.cond is None:
        return False
    try:
        from mka_core.plugins import manager

        cls = manager.get("conditioner", request.cond)
    except Exception:  # an unknown name was refused before generation; nothing to hash
        return False
    return getattr(cls, "input_kind", "text") != "text"


def write_outputs(pipe, model_dir: Path, result, destination: Destination, *, ranking=None,
                  only_index: int | None = None, spectrogram: bool = False) -> list[dict[str, Any]]:
    """Write each output of ``result`` with its sidecar (and spectrogram): all of an output appears at once, or none.

    ``only_index`` writes just the output with that flattened-batch index (``--replay``).
    Returns one row per written file: ``file``, ``input``, ``seed``, ``duration``, ``index``
    (in the request's flattened batch) and ``row`` (in ``result``).
    """
    rows = list(range(result.waveforms.shape[0]))
    indices = [meta["index"] for meta in result.metadata]
    if only_index is not None:
        if only_index not in indices:
            raise InputError(f"The sidecar's index {only_index} is outside its batch of {len(indices)} outputs.")
        rows = [indices.index(only_index)]
    elif ranking:
        rows = list(ranking.order)
    duration = result.waveforms.shape[-1] / result.sample_rate
    suffix = destination.file.suffix.lower() if destination.file is not None else ".wav"
    if suffix not in AUDIO_SUFFIXES:
        suffix = ".wav"
    recorded = request_files(result.request, _file_inputs(pipe, result.request))
    files = OutputFiles()
    written: list[dict[str, Any]] = []
    try:
        for row in rows:
            meta = result.metadata[row]
            audio = encode_audio(result.waveforms[row], result.sample_rate, suffix)
            image = None
            if spectrogram:
                from mka_core.spectrogram_image import mel_to_png_bytes

                frames = -(-result.waveforms.shape[-1] // pipe.hop_length)
                image = mel_to_png_bytes(result.mels[row, ..., :frames])

            def companions(path: Path, row: int = row, image: bytes | None = image) -> dict[str, bytes]:
                # The sidecar records the output's file name, so it is made for the name being taken.
                sidecar = build_sidecar(pipe, model_dir, result, row, path, ranking, recorded)
                made = {".json": sidecar_json(sidecar).encode("utf-8")}
                if image is not None:
                    made[".png"] = image
                return made

            if destination.file is not None:
                path = files.publish(destination.file, audio, companions(destination.file))
            else:
                slug = slugify(meta.get("input"), meta["task"])
                path = files.publish_unique(destination.folder, slug, meta["seed"], audio, companions)
            written.append({"file": str(path), "input": meta.get("input"), "seed": meta["seed"],
                            "duration": duration, "index": meta["index"], "row": row})
    finally:
        files.discard()
    return written
