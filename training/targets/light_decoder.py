"""``mka train light-decoder --teacher MODEL``: distil a model's VAE decoder into a light decoder.

The student (:class:`~mka_core.models.light_decoder.LightDecoder`, a few upsampling conv
blocks) learns to map the teacher's *scaled* latents straight to the mel that the teacher's
VAE decoder makes from them. One step, per batch of mel crops from the manifest:

1. ``z``: the teacher VAE's posterior **sample** of the crop, scaled (``encode_latents``):
   the diffusion model is trained on posterior samples, so these are the latents the light
   decoder meets at generation time, with their spread;
2. target: the teacher VAE decoder's mel of ``z`` (frozen, no gradients); student: ``light(z)``;
3. loss: ``l1_weight * |light(z) - target|`` on the log-mel, plus ``multires_weight`` x the same
   L1 between the two mels average-pooled by each factor in ``multires_factors`` (2x2, 4x4),
   plus optionally ``real_weight`` x L1 against the input mel itself.

Why these terms: L1 on the log-mel is the VAE's own reconstruction distance, robust to the few
large errors in near-silent bins that an L2 would chase. The pooled terms weigh the coarse
spectral envelope and loudness contour - what a listener hears first and what a small
decoder drifts on - separately from the fine texture, the way a multi-resolution STFT loss
does for waveforms; they also let a short CPU run get the overall shape right early. The
teacher's mel, not the recording, is the target (``real_weight`` 0): the light decoder stands
in for the VAE decoder, so matching it keeps what the diffusion model was trained to produce.

The export is the teacher's pipeline folder plus the ``light_decoder/`` component;
``model.make_default`` also records ``"decoder": "light"`` as the folder's default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch
from pydantic import Field
from torch.nn import functional as F

from mka_core.config import StrictModel
from mka_core.errors import InputError
from training.recipe import Recipe
from training.targets.base import StepOutput, TrainTarget
from training.targets.common import detached_copy, frozen, load_pipeline_cpu, load_rows


class LightDecoderModelSection(StrictModel):
    teacher: str = Field("", description="the model whose VAE decoder is distilled (folder, installed name or 'default')")
    decoder: str = Field("default", description="light-decoder size preset: tiny, default or base")
    decoder_overrides: dict[str, Any] = Field(default_factory=dict, description="fields of LightDecoderConfig to change")
    l1_weight: float = Field(1.0, ge=0, description="L1 between the student's and the teacher decoder's log-mel")
    multires_weight: float = Field(0.5, ge=0, description="L1 of the two mels average-pooled by each factor below")
    multires_factors: tuple[int, ...] = Field((2, 4), description="pooling factors (both axes) of the coarse terms")
    real_weight: float = Field(0.0, ge=0, description="L1 against the input mel itself (0: the teacher's mel only)")
    sample_posterior: bool = Field(True, description="train on posterior samples (else the posterior mean)")
    make_default: bool = Field(False, description="record the light decoder as the exported folder's default decoder")


class LightDecoderRecipe(Recipe):
    target: str = "light-decoder"
    model: LightDecoderModelSection = LightDecoderModelSection()


def multires_l1(pred: torch.Tensor, target: torch.Tensor, factors: tuple[int, ...]) -> torch.Tensor:
    """Mean over ``factors`` of the L1 between ``pred`` and ``target`` average-pooled by ``f x f``."""
    terms = []
    for f in factors:
        if f <= 1 or pred.shape[-1] < f or pred.shape[-2] < f:
            continue
        terms.append((F.avg_pool2d(pred, f) - F.avg_pool2d(target, f)).abs().mean())
    return torch.stack(terms).mean() if terms else pred.new_zeros(())


def mel_distances(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mel L1 and log-spectral distance (dB, RMS over bins, mean over frames) between two log10 mels."""
    l1 = (pred - target).abs().mean()
    db = 20.0 * (pred - target)  # log10 magnitude -> dB
    lsd = db.pow(2).mean(dim=-2).sqrt().mean()
    return {"mel_l1": float(l1), "lsd_db": float(lsd)}


class LightDecoderTarget(TrainTarget):
    name = "light-decoder"
    summary = "a light conv decoder (latents straight to mel) distilled from a model's VAE decoder"
    recipe_class = LightDecoderRecipe

    def setup(self) -> None:
        from mka_core.models.light_decoder import LightDecoder
        from training.data.dataset import MelCropDataset
        from training.targets.distill import resolve_teacher

        model, recipe = self.recipe.model, self.recipe
        self.teacher_dir = resolve_teacher(model.teacher)
        self.teacher = load_pipeline_cpu(str(self.teacher_dir))
        self.vae = frozen(self.teacher.vae).to(self.device)
        factor = self.vae.downsampling[1]
        if recipe.data.crop_frames % factor:
            raise InputError(f"data.crop_frames ({recipe.data.crop_frames}) must be a multiple of the VAE's "
                             f"{factor}-frame latent columns.")
        torch.manual_seed(recipe.run.seed)
        student = LightDecoder.for_vae(self.vae, model.decoder, **model.decoder_overrides)
        # No EMA: a plain regression onto a fixed teacher converges without one, and the short
        # runs these recipes make would otherwise export weights close to the initial ones.
        self.add_module("light_decoder", student, optimizer="main")
        mel_config = self.teacher.config.mel
        rows = load_rows(recipe.data.train, self.context, need_caption=False)
        self.train_data = MelCropDataset(rows, crop_frames=recipe.data.crop_frames, seed=recipe.run.seed,
                                         mel_config=mel_config)
        if recipe.data.valid:
            valid = load_rows(recipe.data.valid, self.context, need_caption=False, label="valid")
            self.valid_data = MelCropDataset(valid, crop_frames=recipe.data.crop_frames, seed=recipe.run.seed + 1,
                                             mel_config=mel_config, random_crop=False)

    # -- one step ------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_pair(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(scaled latents, teacher decoder mel, input mel)`` of a batch."""
        mel = batch["mel"].to(self.device)
        posterior = self.vae.encode(mel)
        if self.recipe.model.sample_posterior:
            noise = torch.randn(posterior.mean.shape, generator=generator).to(self.device)
            z = posterior.mean + posterior.std * noise
        else:
            z = posterior.mean
        z = z.float() * self.vae.scale_factor_value
        target = self.vae.decode_latents(z).float()
        return z, target, mel

    def losses(self, pred: torch.Tensor, target: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, dict]:
        model = self.recipe.model
        l1 = (pred - target).abs().mean()
        coarse = multires_l1(pred, target, model.multires_factors)
        loss = model.l1_weight * l1 + model.multires_weight * coarse
        logs = {"l1": l1.item(), "multires": coarse.item()}
        if model.real_weight > 0:
            real = (pred - mel).abs().mean()
            loss = loss + model.real_weight * real
            logs["real_l1"] = real.item()
        logs["loss"] = loss.item()
        return loss, logs

    def training_step(self, batch: dict[str, Any], generator: torch.Generator) -> Iterator[StepOutput]:
        z, target, mel = self.teacher_pair(batch, generator)
        pred = self.net("light_decoder")(z).float()
        loss, logs = self.losses(pred, target, mel)
        yield StepOutput("main", loss, logs)

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, float]:
        z, target, mel = self.teacher_pair(batch, generator)
        pred = self.raw("light_decoder")(z).float()
        return {**self.losses(pred, target, mel)[1], **mel_distances(pred, target)}

    # -- outputs -------------------------------------------------------------------------------
    def build_pipeline(self):
        from mka_core.pipeline import Pipeline

        teacher = self.teacher
        light = detached_copy(self.raw("light_decoder")).cpu()
        update = {"decoder": "light"} if self.recipe.model.make_default else {}
        config = teacher.config.model_copy(update=update)
        pipe = Pipeline(config, teacher.conditioner, teacher.vae, teacher.unet, teacher.vocoder, device="cpu",
                        light_decoder=light)
        pipe._conditioner_dir = getattr(teacher, "_conditioner_dir", None)
        return pipe

    def export(self, out_dir: Path) -> Path:
        """The teacher's pipeline folder with the trained ``light_decoder/`` added."""
        return self.build_pipeline().save_pretrained(out_dir, overwrite=True)

    @torch.no_grad()
    def render_samples(self, out_dir: Path, step: int) -> None:
        """Mel PNGs of the teacher decoder and the light decoder on the same latents."""
        from mka_core.atomic import atomic_write
        from mka_core.spectrogram_image import mel_to_png_bytes

        data = self.valid_data or self.train_data
        out_dir.mkdir(parents=True, exist_ok=True)
        light = self.raw("light_decoder")
        for k in range(min(2, len(data))):
            batch = self.collate([data[(k, k)]])
            z, target, _ = self.teacher_pair(batch, torch.Generator().manual_seed(k))
            for tag, image in (("vae", target), ("light", light(z).float())):
                with atomic_write(out_dir / f"sample-{k}-{tag}.png") as handle:
                    handle.write(mel_to_png_bytes(image[0, 0].cpu()))
