"""``mka train distill --teacher MODEL``: latent consistency distillation of any mka pipeline.

Latent consistency distillation (LCD; Luo et al. 2023, as AudioLCM applies it to audio): a
*student* U-Net learns the consistency function of the teacher's guided probability-flow ODE,
so that 1-4 steps of the ``consistency`` sampler replace 25-100 teacher steps.

One training step, per sample:

1. ``x0``: the clip's latent (frozen VAE); ``c``: its caption's condition (frozen conditioner);
   for an inpainting teacher also the paper's training mask and the masked clip's latent.
2. ``t`` uniform on the skipping-step grid ``k - 1, 2k - 1, ..., N - 1`` (``k = N //
   original_steps``), ``s = max(t - k, 0)``; ``w`` uniform in ``[guidance_min, guidance_max]``.
3. ``x_t`` = ``x0`` noised to ``t``; the student's output ``f(x_t, t, w)``.
4. The frozen teacher, guided with scale ``w`` (``eps_null + w (eps_cond - eps_null)`` in one
   batched forward), takes one solver step (``ddim`` or ``dpm-solver-2``) from ``t`` to ``s``.
5. The *target network* (an exponential moving average of the student, decay
   ``target_decay``) gives ``f(x_s, s, w)`` without gradients.
6. Loss: the distance (``huber`` or ``l2``) between the two outputs.

The student starts as a copy of the teacher with one extra, zero-initialised input: the
guidance scale ``w`` (``guidance_embed_dim``), so at step 0 it computes exactly the teacher, and
one student serves every scale in the trained range with one forward per step. The trainer's
EMA of the student (``ema_decay``) is what gets exported: an ordinary pipeline folder whose
recorded defaults are the ``consistency`` sampler at ``student_steps`` steps. See docs/distill.md.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator, Literal

import torch
from pydantic import Field, model_validator

from mka_core.config import StrictModel
from mka_core.diffusion.samplers.consistency import ORIGINAL_STEPS, SIGMA_DATA, TIMESTEP_SCALING, skipping_grid
from mka_core.errors import InputError
from training.recipe import Recipe
from training.targets.base import StepOutput
from training.targets.common import cpu_randn, frozen, load_pipeline_cpu, load_rows
from training.targets.consistency_ode import (ScheduleTables, consistency_distance, consistency_output,
                                              teacher_step, x0_from_eps)
from training.targets.diffusion import DiffusionTarget
from training.targets.inpaint import InpaintTarget


class DistillModelSection(StrictModel):
    teacher: str = Field("", description="the teacher: a pipeline folder, an installed model name, or 'default' "
                                         "(the embedded default model); required")
    solver: Literal["ddim", "dpm-solver-2"] = Field("ddim", description="the teacher's ODE solver for one skip step")
    original_steps: int = Field(ORIGINAL_STEPS, ge=2, description="size of the skipping-step grid (k = N // this)")
    guidance_min: float = Field(1.0, ge=0, description="lowest guidance scale w the student learns")
    guidance_max: float = Field(5.0, ge=0, description="highest guidance scale w the student learns")
    guidance_embed_dim: int = Field(256, ge=2, description="width of the student's sinusoidal w embedding")
    target_decay: float = Field(0.95, ge=0, lt=1, description="EMA decay of the target network (LCM's mu)")
    loss: Literal["huber", "l2"] = Field("huber", description="distance between student and target outputs")
    huber_c: float = Field(0.001, gt=0, description="c of the pseudo-Huber distance")
    timestep_scaling: float = Field(TIMESTEP_SCALING, gt=0, description="boundary-condition scalings: t scale")
    sigma_data: float = Field(SIGMA_DATA, gt=0, description="boundary-condition scalings: sigma_data")
    student_steps: int = Field(2, ge=1, description="consistency-sampler steps recorded as the student's default")
    guidance_dropout: float = Field(0.0, ge=0, le=1, description="probability of training on the null condition")
    mask_kinds: tuple[str, ...] = Field(("any",), description="training masks when the teacher is an inpainting U-Net")
    ema: bool = Field(True, description="export the EMA of the student (ema_decay) rather than its last weights")
    cache_embeddings: bool = True
    cache_latents: bool = False
    sample_steps: int = Field(2, ge=1, description="consistency-sampler steps of the rendered samples")
    defaults: dict[str, Any] = Field(default_factory=dict,
                                     description="more generation defaults for the exported student (guidance, duration...)")

    @model_validator(mode="after")
    def _check(self) -> "DistillModelSection":
        if self.guidance_min > self.guidance_max:
            raise ValueError(f"guidance_min ({self.guidance_min}) is above guidance_max ({self.guidance_max})")
        if self.student_steps > self.original_steps:
            raise ValueError(f"student_steps ({self.student_steps}) cannot exceed original_steps ({self.original_steps})")
        return self


class DistillRecipe(Recipe):
    target: str = "distill"
    ema_decay: float = Field(0.999, gt=0, lt=1, description="EMA of the student that gets exported")
    model: DistillModelSection = DistillModelSection()


def resolve_teacher(name: str) -> Path:
    """A folder, an installed model name, or ``default`` (the embedded default model)."""
    from mka_core.model_lookup import DEFAULT_MODEL_DIR, INDEX, resolve_model

    if not name:
        raise InputError("Give the model to distil: mka train distill --teacher MODEL (a pipeline folder, an installed "
                         "model name, or 'default').")
    if name == "default" and not Path(name).is_dir():
        return resolve_model(None) if (DEFAULT_MODEL_DIR / INDEX).is_file() else resolve_model(name)
    return resolve_model(name)


def make_student(teacher_unet, guidance_embed_dim: int):
    """A copy of the teacher's U-Net with a zero-initialised guidance input (equal to the teacher at first)."""
    from mka_core.models.unet import UNet, UNetConfig

    config = UNetConfig.model_validate({**teacher_unet.config.model_dump(), "guidance_embed_dim": guidance_embed_dim})
    student = UNet(config).to(next(teacher_unet.parameters()).device)
    missing, unexpected = student.load_state_dict(teacher_unet.state_dict(), strict=False)
    assert not unexpected and set(missing) == {"guidance_embed.weight"}, (missing, unexpected)
    return student


class DistillTarget(DiffusionTarget):
    name = "distill"
    summary = "latent consistency distillation of a pipeline into a few-step student (guidance folded in)"
    recipe_class = DistillRecipe
    needs_captions = True

    # -- building ------------------------------------------------------------------------------
    def setup(self) -> None:
        model = self.recipe.model
        folder = resolve_teacher(model.teacher)
        teacher = load_pipeline_cpu(str(folder))
        teacher_unet = teacher.unet
        if teacher_unet.config.guidance_embed_dim is not None:
            raise InputError(f"{folder} is already a consistency-distilled student; distil its teacher instead.")
        if model.solver == "dpm-solver-2" and teacher.config.schedule.num_train_steps // model.original_steps < 2:
            raise InputError("The dpm-solver-2 teacher solver needs skip steps of at least 2; lower model.original_steps.")
        self.teacher_dir = folder
        self.init_pipeline = teacher
        self.pipeline_config = teacher.config
        self.vocoder_name, self.vocoder = teacher.config.vocoder, teacher.vocoder
        student = make_student(teacher_unet, model.guidance_embed_dim)
        self.teacher = frozen(teacher_unet).to(self.device)
        self.conditioner = frozen(teacher.conditioner).to(self.device)
        self.vae = frozen(teacher.vae).to(self.device)
        self.add_module("unet", student, optimizer="main", ema=model.ema)
        # The target network: saved in checkpoints (persistent), never trained by the optimiser.
        self.add_module("target_unet", copy.deepcopy(student), optimizer=None, persistent=True)
        from mka_core.diffusion.schedule import NoiseSchedule

        self.schedule = NoiseSchedule(teacher.config.schedule)
        self.tables = ScheduleTables(self.schedule, self.device)
        n = self.schedule.num_train_steps
        self.grid = torch.tensor(skipping_grid(n, model.original_steps), dtype=torch.long)
        self.skip = n // model.original_steps
        self.mel_config = teacher.config.mel
        self.inpainting = teacher_unet.config.in_channels != teacher_unet.config.out_channels
        self.takes_context = teacher_unet.config.context_dim is not None
        self._null = None
        self.setup_caches()
        self.build_data()

    def build_data(self) -> None:
        from training.data.dataset import MelCropDataset

        recipe = self.recipe
        # A context-free teacher (e.g. the reference inpainting model) needs no captions.
        rows = load_rows(recipe.data.train, self.context, need_caption=self.takes_context)
        self.train_data = MelCropDataset(rows, crop_frames=recipe.data.crop_frames, seed=recipe.run.seed,
                                         mel_config=self.mel_config, random_crop=not recipe.model.cache_latents)
        if recipe.data.valid:
            valid_rows = load_rows(recipe.data.valid, self.context, need_caption=self.takes_context, label="valid")
            self.valid_data = MelCropDataset(valid_rows, crop_frames=recipe.data.crop_frames, seed=recipe.run.seed + 1,
                                             mel_config=self.mel_config, random_crop=False)

    # -- inpainting teachers: the fine-tune's masks and extra inputs ---------------------------
    masks = InpaintTarget.masks

    def extra_channels(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor | None:
        return InpaintTarget.extra_channels(self, batch, generator) if self.inpainting else None

    # -- one step ------------------------------------------------------------------------------
    def run_unet(self, unet, x: torch.Tensor, t: torch.Tensor, cond, extra: torch.Tensor | None,
                 guidance: torch.Tensor | None = None) -> torch.Tensor:
        if extra is not None:
            x = torch.cat([x, extra.to(x.dtype).repeat(x.shape[0] // extra.shape[0], 1, 1, 1)], dim=1)
        context, mask = (cond.embeds, cond.mask) if self.takes_context else (None, None)
        student = {} if guidance is None else {"guidance": guidance}
        return unet(x, t, context=context, context_mask=mask, **student).float()

    def guided_teacher(self, cond, null, extra: torch.Tensor | None, w: torch.Tensor):
        """``predict(x, t) -> (x0, eps)`` of the teacher guided with per-sample scales ``w``."""
        from mka_core.conditioning import Condition

        both = Condition.cat([null, cond]) if self.takes_context else None
        scale = w.view(-1, 1, 1, 1)

        def predict(x: torch.Tensor, t: torch.Tensor):
            if both is None:  # a context-free teacher: guidance changes nothing
                eps = self.run_unet(self.teacher, x, t, None, extra)
            else:
                eps_null, eps_cond = self.run_unet(self.teacher, torch.cat([x, x]), torch.cat([t, t]), both, extra).chunk(2)
                eps = eps_null + scale * (eps_cond - eps_null)
            return x0_from_eps(self.tables, x, eps, t), eps

        return predict

    def consistency_loss(self, batch: dict[str, Any], generator: torch.Generator, student) -> tuple[torch.Tensor, dict]:
        model = self.recipe.model
        x0 = self.latents(batch, generator)
        batch_size = x0.shape[0]
        null = self.null_condition(batch_size).to(self.device, torch.float32).expand(batch_size)
        cond = self.condition(batch["caption"], generator) if self.takes_context else null
        index = torch.randint(0, len(self.grid), (batch_size,), generator=generator)
        t = self.grid[index].to(self.device)
        s = (t - self.skip).clamp(min=0)
        w = (model.guidance_min + (model.guidance_max - model.guidance_min) * torch.rand(batch_size, generator=generator)).to(self.device)
        noise = cpu_randn(x0.shape, generator, self.device)
        extra = self.extra_channels(batch, generator)
        scalings = {"sigma_data": model.sigma_data, "timestep_scaling": model.timestep_scaling}

        x_t = self.schedule.add_noise(x0, noise, t)
        prediction = consistency_output(self.tables, x_t, self.run_unet(student, x_t, t, cond, extra, w), t, **scalings)
        with torch.no_grad():
            x_s = teacher_step(model.solver, self.guided_teacher(cond, null, extra, w), self.tables, x_t, t, s)
            target_eps = self.run_unet(self.raw("target_unet"), x_s, s, cond, extra, w)
            target = consistency_output(self.tables, x_s, target_eps, s, **scalings)
        loss = consistency_distance(prediction, target, model.loss, model.huber_c)
        return loss, {"loss": loss.item()}

    def training_step(self, batch: dict[str, Any], generator: torch.Generator) -> Iterator[StepOutput]:
        loss, logs = self.consistency_loss(batch, generator, self.net("unet"))
        yield StepOutput("main", loss, logs)

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, float]:
        return self.consistency_loss(batch, generator, self.raw("unet"))[1]

    @torch.no_grad()
    def after_optimizer_step(self, optimizer: str, step: int) -> None:
        """The target network follows the student: ``theta- <- mu theta- + (1 - mu) theta``."""
        target, student = self.raw("target_unet"), self.raw("unet")
        weight = 1.0 - self.recipe.model.target_decay
        for p_target, p_student in zip(target.parameters(), student.parameters()):
            p_target.lerp_(p_student.detach().to(p_target.dtype), weight)

    # -- outputs -------------------------------------------------------------------------------
    def adapt_config(self, config):
        """The student's recorded defaults: the consistency sampler at its step count, w in the trained range."""
        from mka_core.pipeline import GenerationDefaults

        model = self.recipe.model
        guidance = min(max(self.pipeline_config.defaults.guidance, model.guidance_min), model.guidance_max)
        student = {"sampler": "consistency", "steps": model.student_steps, "guidance": guidance,
                   "sampler_options": {"original_steps": model.original_steps, "timestep_scaling": model.timestep_scaling,
                                       "sigma_data": model.sigma_data}}
        merged = {**config.defaults.model_dump(), **student, **model.defaults}
        return config.model_copy(update={"defaults": GenerationDefaults.model_validate(merged),
                                         "origin": f"distilled:{self.context.run_dir.name}:{self.pipeline_config.origin}"})

    def render_samples(self, out_dir: Path, step: int) -> None:
        if not self.takes_context:
            return  # the shared renderers prompt with captions, which a context-free model does not take
        if self.inpainting:
            InpaintTarget.render_samples(self, out_dir, step)
        else:
            super().render_samples(out_dir, step)
