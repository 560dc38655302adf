"""``t2a``: generate audio from a condition (text, or an image/video in the same space).

Condition -> Gaussian noise (one CPU generator per sample) -> sampler over the U-Net with
classifier-free guidance -> VAE decode -> mel. The pipeline then vocodes the mel and crops the
waveform to the exact requested length.
"""

from __future__ import annotations

from mka_core.errors import InputError
from mka_core.plugins.hookspecs import hookimpl
from mka_core.tasks import Task, TaskOutput, TaskRequest


class TextToAudioTask(Task):
    name = "t2a"
    summary = "Generate audio from a condition (text, image or video in the model's space)."
    condition = "required"

    def check(self, pipeline, request: TaskRequest) -> None:
        if request.start_latents is not None:
            raise InputError("start_latents belong to the sdedit task (task='sdedit'); t2a always starts from noise.")
        check_plain_unet(pipeline, self.name)

    def run(self, pipeline, request: TaskRequest) -> TaskOutput:
        latents = pipeline.sample(request)
        return TaskOutput(mel=pipeline.decode_latents(latents), latents=latents)


def check_plain_unet(pipeline, task: str) -> None:
    """Tasks that feed only ``x_t`` cannot drive an inpainting U-Net (it wants more input channels)."""
    channels = pipeline.unet.config.in_channels
    latent = pipeline.vae.latent_channels
    if channels != latent:
        raise InputError(
            f"This model's U-Net takes {channels} input channels (an inpainting model); task '{task}' needs a "
            f"text-to-audio model with {latent}; use --task inpaint or another model."
        )


@hookimpl
def register_tasks(register):
    register(TextToAudioTask)
