"""`continue`: keep the init audio as the beginning and generate what follows.

It shows the three things a task talks back with (docs/plugins.md, "What a task receives"):
``request.options`` is an instance of ``ContinueOptions``; ``TaskOutput.metadata`` lands in
every output's metadata and sidecar; ``warnings.warn`` becomes one ``mka: warning:`` line.
"""

from __future__ import annotations

import warnings

import torch
from pydantic import Field

from mka_core import InputError, StrictModel, Task, TaskOutput, TaskRequest


class ContinueOptions(StrictModel):
    """``--task-option keep=SECONDS``: how much of the init audio to keep (default: all of it)."""

    keep: float | None = Field(None, gt=0, description="seconds of the init audio kept before the continuation")


class ContinueTask(Task):
    name = "continue"
    summary = "Example plugin: continue an audio clip to the requested duration (latent blending)."
    condition = "optional"
    init_audio = "required"
    Options = ContinueOptions

    def check(self, pipeline, request: TaskRequest) -> None:
        if min(self.kept_samples(pipeline, request)) >= request.num_samples:
            raise InputError("--duration must be longer than the init audio to have something to continue.")

    @staticmethod
    def kept_samples(pipeline, request: TaskRequest) -> list[int]:
        keep = request.options.keep  # an attribute of the validated options, never a dict lookup
        if keep is None:
            return list(request.init_audio_lengths)
        return [min(length, int(keep * pipeline.sample_rate)) for length in request.init_audio_lengths]

    def run(self, pipeline, request: TaskRequest) -> TaskOutput:
        kept = self.kept_samples(pipeline, request)
        if request.options.keep is not None and kept != [int(request.options.keep * pipeline.sample_rate)] * len(kept):
            # Not a fault: keep what there is, and say so once (`mka: warning: continue: ...` at the CLI).
            warnings.warn(f"continue: the init audio is shorter than keep={request.options.keep:g} s; "
                          "all of it is kept.", stacklevel=2)
        mel = pipeline.init_mel(request)  # the init audio's mel, exactly request.frames wide
        known = pipeline.encode_mel(mel)
        factor = pipeline.vae_factor
        # Latent columns fully inside the kept audio are known; everything after is generated.
        mel_mask = torch.ones_like(mel)
        latent_mask = torch.ones_like(known)
        for i, length in enumerate(kept):
            kept_frames = length // pipeline.hop_length
            mel_mask[i, ..., :kept_frames] = 0
            latent_mask[i, ..., : kept_frames // factor] = 0
        latents = pipeline.sample(request, known_latents=known, known_mask=latent_mask)
        generated = pipeline.decode_latents(latents)
        out = mel_mask * generated + (1 - mel_mask) * mel
        # Merged into every output's metadata (and sidecar): JSON values, names of our own.
        seconds = [round(length / pipeline.sample_rate, 4) for length in kept]
        return TaskOutput(mel=out, latents=latents, metadata={"continue_kept_seconds": seconds})
