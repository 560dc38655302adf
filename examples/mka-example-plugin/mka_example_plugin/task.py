"""`continue`: keep the init audio as the beginning and generate what follows."""

from __future__ import annotations

import torch

from mka_core import InputError, Task, TaskOutput, TaskRequest


class ContinueTask(Task):
    name = "continue"
    summary = "Example plugin: continue an audio clip to the requested duration (latent blending)."
    condition = "optional"
    init_audio = "required"

    def check(self, pipeline, request: TaskRequest) -> None:
        if min(request.init_audio_lengths) >= request.num_samples:
            raise InputError("--duration must be longer than the init audio to have something to continue.")

    def run(self, pipeline, request: TaskRequest) -> TaskOutput:
        mel = pipeline.init_mel(request)  # the init audio's mel, exactly request.frames wide
        known = pipeline.encode_mel(mel)
        factor = pipeline.vae_factor
        # Latent columns fully inside the init audio are known; everything after is generated.
        mel_mask = torch.ones_like(mel)
        latent_mask = torch.ones_like(known)
        for i, length in enumerate(request.init_audio_lengths):
            kept_frames = length // pipeline.hop_length
            mel_mask[i, ..., :kept_frames] = 0
            latent_mask[i, ..., : kept_frames // factor] = 0
        latents = pipeline.sample(request, known_latents=known, known_mask=latent_mask)
        generated = pipeline.decode_latents(latents)
        out = mel_mask * generated + (1 - mel_mask) * mel
        return TaskOutput(mel=out, latents=latents)
