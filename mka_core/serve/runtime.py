"""The one model the server keeps in memory: describing it, checking requests, running jobs.

A job's JSON body (:class:`~mka_core.serve.requests.JobRequest`) is resolved here into a
:class:`~mka_core.request.GenerationRequest` (uploads become the server's own paths, mask boxes
a mask text). Generation goes through :func:`mka_core.generate.generate`, the flow
``mka generate`` and the Python API run, and outputs are written by
:func:`mka_core.outputs.writer.write_outputs` (atomic WAV, JSON sidecar, spectrogram PNG), the
writer ``mka generate`` uses, so a file downloaded from the page replays with
``mka generate --replay`` like any other. Nothing here imports the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mka_core.errors import InputError
from mka_core.request import GenerationRequest, OutputNaming, request_from_dict
from mka_core.serve.limits import Limits
from mka_core.serve.mask_boxes import boxes_to_mask_spec
from mka_core.serve.requests import JobRequest, UploadRef
from mka_core.serve.uploads import Upload, UploadStore

Progress = Callable[[int, int], None]


@dataclass
class ResolvedJob:
    """A checked request with every upload id turned into the server's own path."""

    request: JobRequest
    #: The request that runs (and that every output's sidecar records).
    generation: GenerationRequest
    task: str
    cond: str
    input_kind: str
    inputs: list[str]
    input_labels: list[str]
    init: Upload | None = None
    mask_spec: str | None = None
    #: Steps, sampler and guidance with the model's defaults filled in (for the history).
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the history shows about the request."""
        req = self.request
        return {"task": self.task, "cond": self.cond, "input_kind": self.input_kind, "inputs": self.input_labels,
                "init_audio": self.init.label if self.init else None, "mask": self.mask_spec,
                "task_options": dict(req.task_options), "steps": req.steps, "sampler": req.sampler,
                "guidance": req.guidance, "seed": req.fixed_seed, "duration": req.duration, "n": req.n,
                **self.settings}


@dataclass
class JobOutput:
    """One generated file and its companions, all inside the job's folder."""

    index: int
    seed: int
    input_index: int
    candidate: int
    input_label: str | None
    duration: float
    audio: Path
    sidecar: Path
    spectrogram: Path
    mel: Path


@dataclass
class JobResult:
    outputs: list[JobOutput]
    #: Per input: the frames the conditioner picked from it (video conditioners with ``frames_of``).
    frames: list[list[Path]] = field(default_factory=list)


class ModelRuntime:
    """Owns the pipeline; only the job worker thread runs generation on it."""

    def __init__(self, pipe, model_dir: Path, limits: Limits) -> None:
        self.pipe = pipe
        self.model_dir = Path(model_dir)
        self.limits = limits
        # Pipeline.conditioner_for builds each other conditioner (clip-image for a clip-text model) once.
        self.fitting = set(pipe.fitting_conditioners())

    # -- describing ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The model, the installed conditioners and tasks, samplers, defaults and geometry."""
        from mka_core import __version__
        from mka_core.diffusion.samplers import sampler_names
        from mka_core.plugins import manager

        config = self.pipe.config
        conditioners = [
            {"name": r.name, "input_kind": getattr(r.obj, "input_kind", "text"), "summary": getattr(r.obj, "summary", ""),
             "distribution": r.distribution, "version": r.version, "fits": r.name in self.fitting,
             "own": r.name == config.conditioner, "shows_frames": callable(getattr(r.obj, "frames_of", None))}
            for r in sorted(manager.registrations("conditioner"), key=lambda r: r.name)
        ]
        tasks = [
            {"name": r.name, "summary": getattr(r.obj, "summary", ""), "condition": r.obj.condition,
             "init_audio": r.obj.init_audio, "mask": r.obj.mask, "options": option_fields(r.obj.Options),
             "distribution": r.distribution, "version": r.version}
            for r in sorted(manager.registrations("task"), key=lambda r: r.name)
        ]
        return {
            "mka_version": __version__,
            "model": {"name": self.model_dir.name, **self.pipe.describe()},
            "defaults": {k: v for k, v in config.defaults.model_dump(mode="json").items() if k != "sampler_options"},
            "geometry": {"sample_rate": self.pipe.sample_rate, "hop_length": self.pipe.hop_length,
                         "n_mels": config.mel.n_mels, "frame_granularity": self.pipe.frame_granularity,
                         "max_duration": config.max_duration},
            "conditioners": conditioners,
            "tasks": tasks,
            "samplers": sampler_names(),
        }

    # -- audio uploads ---------------------------------------------------------------------------
    def analyse_audio(self, upload: Upload) -> dict[str, Any]:
        """Duration and mel of an uploaded init audio, exactly as inpainting will see it.

        Writes ``<id>.mel.png`` (shown on the page, one column per frame) and ``<id>.mel.npy``
        next to the upload.
        """
        import soundfile as sf
        import torch

        from mka_core.audio.io import load_audio
        from mka_core.spectrogram_image import mel_to_png_bytes

        seconds = sf.info(str(upload.path)).duration
        limit = self.pipe.config.max_duration
        if seconds > limit:
            raise InputError(f"The audio is {seconds:.1f} s long; this model takes at most {limit:g} s.")
        wave = load_audio(upload.path, self.pipe.sample_rate)
        num_samples = int(wave.numel())
        duration = num_samples / self.pipe.sample_rate
        if duration < 0.1:
            raise InputError(f"The audio is {duration * 1000:.0f} ms long; upload at least 0.1 s.")
        frames, _ = self.pipe.frames_for(duration)
        hop = self.pipe.hop_length
        # As Pipeline.init_mel does: pad with silence to the model's frame count, then crop the
        # frames that belong to the audio itself (the same columns the output shows).
        padded = torch.nn.functional.pad(wave, (0, max(0, frames * hop - num_samples)))[: frames * hop]
        shown = -(-num_samples // hop)
        mel = self.pipe.mel(padded[None])[0, 0, :, :shown].float().cpu()
        png = upload.path.with_suffix(".mel.png")
        png.write_bytes(mel_to_png_bytes(mel))
        np.save(upload.path.with_suffix(".mel.npy"), mel.numpy())
        return {"duration": duration, "sample_rate": self.pipe.sample_rate, "num_samples": num_samples,
                "frames": shown, "n_mels": int(mel.shape[0]), "hop_length": hop}

    # -- checking ----------------------------------------------------------------------------------
    def resolve(self, request: JobRequest, uploads: UploadStore) -> ResolvedJob:
        """Check everything that can be checked without running the model; raise InputError."""
        from mka_core.generate import check_sampler, default_task, task_options
        from mka_core.pipeline import get_task
        from mka_core.plugins import manager

        limits, defaults = self.limits, self.pipe.config.defaults
        cond = request.cond or self.pipe.config.conditioner
        cls = manager.get("conditioner", cond)
        if cond not in self.fitting:
            raise InputError(f"Conditioner '{cond}' does not write into this model's embedding space; "
                             f"use one of: {', '.join(sorted(self.fitting))}.")
        kind = getattr(cls, "input_kind", "text")
        if len(request.inputs) > limits.inputs:
            raise InputError(f"{len(request.inputs)} inputs is more than the limit of {limits.inputs} per request.")
        if request.n > limits.candidates:
            raise InputError(f"{request.n} candidates is more than the limit of {limits.candidates} per input.")
        if request.steps is not None and request.steps > limits.steps:
            raise InputError(f"{request.steps} steps is more than the limit of {limits.steps}.")
        sampler = request.sampler or defaults.sampler
        check_sampler(sampler, request.sampler_options or (defaults.sampler_options if sampler == defaults.sampler
                                                            else {}))
        if request.duration is not None:
            self.pipe.check_duration(request.duration)
        probe = GenerationRequest(task=request.task, task_options=request.task_options)
        task_name = default_task(self.pipe, probe, request.init_audio is not None, request.mask is not None)
        task = get_task(task_name)
        task_options(task, task_name, request.task_options)
        inputs, labels = self._inputs(request, kind, cond, uploads)
        if task.condition == "required" and not inputs:
            what = "a prompt" if kind == "text" else f"an uploaded {kind}"
            raise InputError(f"Task '{task_name}' needs a condition: give {what}.")
        init = None
        if request.init_audio is not None:
            if task.init_audio == "unused":
                raise InputError(f"Task '{task_name}' takes no init audio; leave init_audio out.")
            init = uploads.get(request.init_audio, "audio")
        elif task.init_audio == "required":
            raise InputError(f"Task '{task_name}' needs an init audio: upload or record one.")
        mask_spec = None
        if request.mask is not None:
            if task.mask == "unused":
                raise InputError(f"Task '{task_name}' takes no mask; leave mask out.")
            if init is None:
                raise InputError("A mask needs an init audio to lie on; upload or record one.")
            if len(request.mask) > limits.mask_boxes:
                raise InputError(f"The mask has {len(request.mask)} boxes, more than the limit of {limits.mask_boxes}.")
            duration = request.duration if request.duration is not None else init.info["duration"]
            mask_spec = boxes_to_mask_spec(request.mask, n_mels=self.pipe.config.mel.n_mels,
                                           sample_rate=self.pipe.sample_rate, duration=duration)
        elif task.mask == "required":
            raise InputError(f"Task '{task_name}' needs a mask: drag over the spectrogram to mark the region to regenerate.")
        settings = request.model_dump(exclude={"inputs", "init_audio", "mask"})
        generation = request_from_dict({
            **settings, "task": task_name, "cond": cond, "inputs": inputs,
            "init_audio": str(init.path) if init else None, "mask": mask_spec,
            "output": OutputNaming(spectrogram=True).model_dump(),
        })
        shown = {"steps": request.steps or defaults.steps, "sampler": sampler,
                 "guidance": defaults.guidance if request.guidance is None else request.guidance}
        return ResolvedJob(request, generation, task_name, cond, kind, inputs, labels, init, mask_spec, shown)

    def _inputs(self, request: JobRequest, kind: str, cond: str, uploads: UploadStore) -> tuple[list[str], list[str]]:
        inputs, labels = [], []
        for number, item in enumerate(request.inputs, start=1):
            if kind == "text":
                if not isinstance(item, str):
                    raise InputError(f"Conditioner '{cond}' takes text; input {number} is an upload.")
                if not item.strip():
                    raise InputError(f"Prompt {number} is empty; write something or leave it out.")
                if len(item) > self.limits.prompt_chars:
                    raise InputError(f"Prompt {number} has {len(item)} characters, more than the limit of "
                                     f"{self.limits.prompt_chars}.")
                inputs.append(item.strip())
                labels.append(item.strip())
            else:
                if not isinstance(item, UploadRef):
                    raise InputError(f"Conditioner '{cond}' takes {kind} uploads; input {number} is text.")
                upload = uploads.get(item.upload, kind)
                inputs.append(str(upload.path))
                labels.append(upload.label)
        return inputs, labels

    # -- running -----------------------------------------------------------------------------------
    def run(self, job: ResolvedJob, folder: Path, progress: Progress) -> JobResult:
        """Generate, then write every output (audio, sidecar, spectrogram, mel) into ``folder``."""
        from mka_core.generate import generate
        from mka_core.outputs.writer import Destination, write_outputs

        pipe = self.pipe
        request = job.generation.with_changes(output=OutputNaming(out=str(folder), spectrogram=True).model_dump())
        frames = self._picked_frames(job, folder)
        result = generate(pipe, request, progress=progress)
        written = write_outputs(pipe, self.model_dir, result, Destination(None, folder), spectrogram=True)
        outputs = []
        shown = -(-result.waveforms.shape[-1] // pipe.hop_length)
        for row in written:
            index, audio = row["index"], Path(row["file"])
            meta = result.metadata[row["row"]]
            mel_path = Path(f"{audio}.mel.npy")
            np.save(mel_path, result.mels[row["row"], 0, :, :shown].numpy())
            label = job.input_labels[meta["input_index"]] if job.input_labels else None
            outputs.append(JobOutput(index=index, seed=meta["seed"], input_index=meta["input_index"],
                                     candidate=meta["candidate"], input_label=label, duration=row["duration"],
                                     audio=audio, sidecar=Path(f"{audio}.json"), spectrogram=Path(f"{audio}.png"),
                                     mel=mel_path))
        return JobResult(outputs=outputs, frames=frames)

    def _picked_frames(self, job: ResolvedJob, folder: Path) -> list[list[Path]]:
        """The frames a video conditioner picks from each input (its ``frames_of``), as PNGs."""
        if job.input_kind != "video" or not job.inputs:
            return []
        conditioner = self.pipe.conditioner_for(job.cond)
        frames_of = getattr(conditioner, "frames_of", None)
        if not callable(frames_of):
            return []
        from PIL import Image

        picked = []
        for j, path in enumerate(job.inputs):
            files = []
            for k, frame in enumerate(frames_of(path)):
                file = folder / f"input{j}_frame{k}.png"
                Image.fromarray(np.ascontiguousarray(frame)).save(file)
                files.append(file)
            picked.append(files)
        return picked


def option_fields(options_class) -> list[dict[str, Any]]:
    """A task's options as simple form fields: name, kind (number, integer, choice, boolean, text), bounds."""
    schema = options_class.model_json_schema()
    fields = []
    for name, prop in schema.get("properties", {}).items():
        variants = prop.get("anyOf", [prop])
        nullable = any(v.get("type") == "null" for v in variants)
        main = next((v for v in variants if v.get("type") != "null"), {})
        entry: dict[str, Any] = {"name": name, "label": prop.get("title", name), "description": prop.get("description", ""),
                                 "default": prop.get("default"), "nullable": nullable}
        if "enum" in main:
            entry.update(kind="choice", choices=list(main["enum"]))
        elif main.get("type") in ("number", "integer"):
            entry.update(kind=main["type"])
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                if key in main:
                    entry[key] = main[key]
        elif main.get("type") == "boolean":
            entry.update(kind="boolean")
        else:
            entry.update(kind="text")
        fields.append(entry)
    return fields
