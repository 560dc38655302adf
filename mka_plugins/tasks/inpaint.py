"""``inpaint``: regenerate a masked region of an init audio, keep the rest exactly.

Inputs: an init audio, a mask over its mel (``[n_mels, frames]``, **1 = regenerate**) and an
optional condition (without one, generation is unconditional). Two variants:

* ``finetuned`` (the paper's): a U-Net fine-tuned for inpainting sees, at every step,
  ``[x_t | masked latent | mask]``. The *masked latent* is the VAE encoding (posterior mean,
  scaled like every latent) of the input mel with the masked region set to silence - the
  log-mel floor, ``log10(1e-5) = -5``. (The reference zeroes the masked region of a mel
  normalised to [0, 1], where 0 is its minimum; mka's mels are raw log10 magnitudes, whose
  minimum is the floor.) The *mask* channel is the mel mask max-pooled to latent resolution
  (a latent cell is marked when any mel pixel under it is) and mapped to -1 (keep) / +1
  (regenerate), as the reference feeds it. The order and widths of these channels are read
  from the U-Net config's ``input_groups`` (``masked_latent``, ``mask``); a U-Net without groups
  but with ``2 * latent + 1`` input channels is taken to use the reference order.
* ``blend`` - **training-free inpainting by latent blending**: any text-to-audio model; at
  every sampler step the known region of the latents is replaced by the input's latents
  noised to that step. Cheaper to get, weaker at the seams than a fine-tuned model.

Without ``variant`` the task runs ``finetuned`` on a model with an inpainting U-Net and
``blend`` on any other (the embedded default, a ``mka new-model`` folder): the only variant such
a model can run, chosen with a Python warning (``mka: warning: inpaint: ...`` at the CLI) and
recorded in every output's metadata (``variant``, and ``variant_chosen``: ``automatic``,
``default`` or ``asked``). ``variant=finetuned`` on a model without one stays an error.

Both variants composite the result in mel space, ``out = mask * generated + (1 - mask) *
input``, so the unmasked region of the output mel *is* the input's mel.

:func:`make_inpainting_unet` / :func:`make_inpainting_pipeline` turn a text-to-audio model into
the starting point of the inpainting fine-tune: the U-Net gains the masked-latent and mask
input channels with zero weights, so it starts out computing exactly the text-to-audio model.
:func:`inpainting_channels` builds the extra channels; the fine-tuning trainer must use it too.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from mka_core.config import StrictModel
from mka_core.errors import InputError
from mka_core.plugins.hookspecs import hookimpl
from mka_core.tasks import Task, TaskOutput, TaskRequest

#: Input-group names of an inpainting U-Net, after ``x_t``.
MASKED_LATENT, MASK = "masked_latent", "mask"
#: The log-mel value of silence (log10 of the front end's 1e-5 magnitude floor).
DEFAULT_MEL_FLOOR = math.log10(1e-5)
#: The note given when the default variant falls back to ``blend`` (shown as ``mka: warning: ...`` by the CLI).
AUTO_BLEND_NOTE = ("inpaint: this model has no inpainting U-Net, so the training-free variant 'blend' "
                   "(latent blending) runs; a model fine-tuned with `mka train inpaint` runs 'finetuned'.")


class InpaintOptions(StrictModel):
    """Options of ``inpaint``."""

    variant: Literal["finetuned", "blend"] | None = Field(
        None,
        description=(
            "finetuned: a U-Net fine-tuned for inpainting (the default when the model has one); "
            "blend: training-free inpainting by latent blending, with any text-to-audio model "
            "(the default, with a warning, when the model has no inpainting U-Net)."
        ),
    )


class InpaintTask(Task):
    name = "inpaint"
    summary = "Regenerate the masked region of an init audio (fine-tuned model, or training-free latent blending)."
    condition = "optional"
    init_audio = "required"
    mask = "required"
    Options = InpaintOptions

    def check(self, pipeline, request: TaskRequest) -> None:
        if request.init_audio is None:
            raise InputError("Task 'inpaint' needs an init audio (--init FILE).")
        if request.mask is None:
            raise InputError("Task 'inpaint' needs a mask (--mask, e.g. 2.0-3.5 for the seconds to regenerate).")
        expected = (request.batch_size, 1, pipeline.config.mel.n_mels, request.frames)
        if tuple(request.mask.shape) != expected:
            raise InputError(f"The inpainting mask has shape {list(request.mask.shape)}; this request needs {list(expected)}.")
        resolve_variant(pipeline, request.options.variant)

    def run(self, pipeline, request: TaskRequest) -> TaskOutput:
        variant = resolve_variant(pipeline, request.options.variant)
        chosen = "asked" if request.options.variant is not None else "default"
        if request.options.variant is None and variant == "blend":
            # Only the training-free variant can run on this model: run it, and say so once per request.
            chosen = "automatic"
            warnings.warn(AUTO_BLEND_NOTE, stacklevel=2)
        mel = pipeline.init_mel(request)
        mask = request.mask.to(mel.device, torch.float32)
        small_mask = latent_mask(mask, pipeline.vae_factor)
        extra = inpainting_channels(pipeline, mel, mask) if has_inpainting_inputs(pipeline) else None
        if variant == "blend":
            known = pipeline.encode_mel(mel)
            latents = pipeline.sample(request, known_latents=known, known_mask=small_mask, extra_channels=extra)
        else:
            latents = pipeline.sample(request, extra_channels=extra)
        generated = pipeline.decode_latents(latents)
        out = mask * generated + (1 - mask) * mel
        return TaskOutput(mel=out, latents=latents, metadata={"variant": variant, "variant_chosen": chosen})


# -- the inpainting inputs -------------------------------------------------------------------------


def has_inpainting_inputs(pipeline) -> bool:
    """Whether the pipeline's U-Net takes the masked latent and the mask (a fine-tuned inpainting model)."""
    try:
        _extra_groups(pipeline.unet.config, pipeline.vae.latent_channels)
    except InputError:
        return False
    return True


def resolve_variant(pipeline, variant: str | None) -> str:
    """The variant to run: the one asked for; by default ``finetuned`` when the model has an
    inpainting U-Net, else ``blend`` (the only variant such a model can run)."""
    if variant == "blend":
        return "blend"
    if has_inpainting_inputs(pipeline):
        return "finetuned"
    if variant is None:
        return "blend"
    channels, latent = pipeline.unet.config.in_channels, pipeline.vae.latent_channels
    raise InputError(
        f"This model's U-Net takes {channels} input channels, not an inpainting U-Net's {2 * latent + 1}, so it "
        "cannot run variant=finetuned; ask for variant=blend (training-free latent blending) or leave the variant "
        "unset, or fine-tune an inpainting model from it (mka train inpaint)."
    )


def _extra_groups(unet_config, latent_channels: int) -> list[tuple[str, int]]:
    """(name, channels) of the U-Net inputs after ``x_t``, checked against what this task can build."""
    groups = getattr(unet_config, "input_groups", None)
    if groups:
        names = [(g.name, g.channels) for g in groups]
        if names[0][0] != "x_t" or names[0][1] != latent_channels:
            raise InputError(f"The U-Net's first input group must be x_t with {latent_channels} channels, got {names[0]}.")
        extra = names[1:]
    elif unet_config.in_channels == 2 * latent_channels + 1:
        extra = [(MASKED_LATENT, latent_channels), (MASK, 1)]
    else:
        extra = []
    known = {MASKED_LATENT: latent_channels, MASK: 1}
    if not extra or any(known.get(name) != width for name, width in extra):
        raise InputError(
            f"The U-Net's extra inputs {extra or 'none'} are not the inpainting inputs "
            f"[({MASKED_LATENT!r}, {latent_channels}), ({MASK!r}, 1)]."
        )
    return extra


def mel_floor(pipeline) -> float:
    """The front end's value for silence (-5 for the log10 mel, -1 for family B's [-1, 1] mel)."""
    return float(pipeline.config.mel.silence)


def masked_mel(mel: torch.Tensor, mask: torch.Tensor, floor: float = DEFAULT_MEL_FLOOR) -> torch.Tensor:
    """The input mel with the region to regenerate replaced by silence (``floor``)."""
    return mel * (1 - mask) + floor * mask


def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """``[B, 1, n_mels, frames]`` mel mask -> ``[B, 1, n_mels/f, frames/f]``: a cell is marked if any pixel under it is."""
    return F.max_pool2d(mask.float(), kernel_size=factor, stride=factor)


def inpainting_channels(pipeline, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The U-Net's extra inputs ``[B, C_extra, h, w]`` in the order of its ``input_groups``."""
    groups = _extra_groups(pipeline.unet.config, pipeline.vae.latent_channels)
    mask = mask.to(mel.device, torch.float32)
    parts = []
    for name, _ in groups:
        if name == MASKED_LATENT:
            parts.append(pipeline.encode_mel(masked_mel(mel, mask, mel_floor(pipeline))))
        else:
            # -1 keep / +1 regenerate, the values the reference inpainting model was trained on.
            parts.append(latent_mask(mask, pipeline.vae_factor).to(pipeline.device) * 2 - 1)
    return torch.cat([p.to(pipeline.device, torch.float32) for p in parts], dim=1)


# -- from a text-to-audio model to the start of the fine-tune ---------------------------------------


def make_inpainting_unet(unet):
    """A copy of a text-to-audio U-Net with ``masked_latent`` and ``mask`` inputs whose weights are zero.

    At creation its output equals the original's for any masked latent and mask.
    """
    from mka_core.models.unet import expand_input_channels

    latent = unet.config.out_channels
    if unet.config.in_channels != latent:
        raise InputError(
            f"This U-Net already takes {unet.config.in_channels} input channels; start from a text-to-audio U-Net "
            f"with {latent}."
        )
    return expand_input_channels(unet, [(MASKED_LATENT, latent), (MASK, 1)])


def make_inpainting_pipeline(pipeline):
    """A pipeline sharing ``pipeline``'s conditioner, VAE and vocoder with an inpainting U-Net (zero-initialised).

    Its default task is ``inpaint``; save it with ``save_pretrained`` and fine-tune its U-Net.
    """
    from mka_core.pipeline import Pipeline

    unet = make_inpainting_unet(pipeline.unet)
    config = pipeline.config.model_copy(
        update={"defaults": pipeline.config.defaults.model_copy(update={"task": "inpaint"}),
                "origin": f"inpaint-init:{pipeline.config.origin}"}
    )
    new = Pipeline(config, pipeline.conditioner, pipeline.vae, unet, pipeline.vocoder,
                   device=pipeline.device, dtype=pipeline.dtype)
    new._conditioner_dir = getattr(pipeline, "_conditioner_dir", None)
    return new


@hookimpl
def register_tasks(register):
    register(InpaintTask)
