"""``sdedit``: personalization - re-imagine an init audio under a prompt (SDEdit).

The init audio's mel is encoded to latents (the VAE posterior mean, so no randomness there),
noised to step ``t0 * N`` of the diffusion and denoised from there with the condition and
guidance. ``strength`` is ``t0``:

* ``t0 -> 0`` keeps the input: the result is the VAE round trip of the init audio;
* ``t0 = 1`` starts from pure noise: plain generation, the input is forgotten;
* ``t0`` in ``[0.2, 0.5]`` is the useful range (the paper's): the structure of the input
  stays, its character follows the prompt.

The duration defaults to the init audio's length, so inputs shorter or longer than the
training clips (10 s) keep their length. Precomputed latents may be passed instead of audio
(``start_latents=`` in the Python API).
"""

from __future__ import annotations

from pydantic import Field

from mka_core.config import StrictModel
from mka_core.errors import InputError
from mka_core.plugins.hookspecs import hookimpl
from mka_core.tasks import Task, TaskOutput, TaskRequest
from mka_plugins.tasks.t2a import check_plain_unet

DEFAULT_STRENGTH = 0.5


class SDEditOptions(StrictModel):
    """Options of ``sdedit``."""

    strength: float = Field(
        DEFAULT_STRENGTH,
        gt=0.0,
        le=1.0,
        description=(
            "t0 in (0, 1]: how far into the diffusion the input is noised before denoising with the prompt. "
            "Near 0 keeps the input (VAE round trip), 1 is plain generation; 0.2-0.5 is the useful range."
        ),
    )


class SDEditTask(Task):
    name = "sdedit"
    summary = "Personalization (SDEdit): noise the init audio to t0 = strength and denoise it with the prompt."
    condition = "required"
    init_audio = "required"
    Options = SDEditOptions

    def check(self, pipeline, request: TaskRequest) -> None:
        check_plain_unet(pipeline, self.name)
        if request.init_audio is None and request.start_latents is None:
            raise InputError("Task 'sdedit' needs an init audio (--init FILE) or start_latents.")
        if request.start_latents is not None:
            expected = (request.batch_size, *pipeline.latent_shape(request.frames))
            if tuple(request.start_latents.shape) not in (expected, (1, *expected[1:])):
                raise InputError(
                    f"start_latents have shape {list(request.start_latents.shape)}; this request needs {list(expected)}."
                )

    def run(self, pipeline, request: TaskRequest) -> TaskOutput:
        strength = float(request.options.strength)
        if request.start_latents is not None:
            start = request.start_latents.float().to(pipeline.device)
            if start.shape[0] != request.batch_size:
                start = start.expand(request.batch_size, -1, -1, -1)
        else:
            start = pipeline.encode_mel(pipeline.init_mel(request))
        latents = pipeline.sample(request, strength=strength, start_latents=start)
        return TaskOutput(mel=pipeline.decode_latents(latents), latents=latents, metadata={"strength": strength})


@hookimpl
def register_tasks(register):
    register(SDEditTask)
