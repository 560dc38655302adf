"""``mka train vae``: the spectrogram autoencoder (AutoencoderKL) with its adversarial loss.

Two optimisers: ``main`` (encoder, decoder and the learned log-variance) and ``disc`` (the
discriminator, from ``model.disc_start`` on). ``scale_factor`` (1 / std of the latents of the
run's first batch) is measured with the trained weights when the model is exported, so the
diffusion model that follows sees unit-variance latents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Literal

import torch
from pydantic import Field
from torch import nn

from mka_core.errors import InputError
from training.data.dataset import MelCropDataset
from training.losses.discriminators import MultiWindowDiscriminator, PatchDiscriminator
from training.losses.vae_loss import adaptive_weight, hinge_d_loss, kl_loss, nll_loss, r1_penalty
from training.recipe import Recipe
from training.targets.base import StepOutput, TrainTarget
from training.targets.common import ConditionerSection, detached_copy, load_rows, load_vae


class VAEModelSection(ConditionerSection):
    vae: str = Field("tiny", description="VAE preset when starting from scratch")
    vae_overrides: dict[str, Any] = Field(default_factory=dict)
    init: str = Field("", description="a VAE or pipeline folder to fine-tune instead")
    freeze_encoder: bool = Field(
        False,
        description="with init: train the decoder only, so the latent space (and a diffusion model trained on it) stays valid",
    )
    pipeline: str = Field("", description="pipeline whose other components wrap the exported VAE (default: random, preset)")
    kl_weight: float = Field(1e-6, ge=0)
    logvar_init: float = 0.0
    disc: Literal["patch", "multi-window"] = "patch"
    disc_start: int = Field(50001, ge=0, description="step at which the adversarial loss switches on")
    disc_weight: float = Field(0.5, ge=0, description="scale of the adaptive generator weight")
    disc_width: int = Field(64, ge=1)
    disc_layers: int = Field(3, ge=1)
    disc_windows: tuple[int, ...] = Field((32, 64, 128), description="multi-window discriminator window lengths (frames)")
    r1_weight: float = Field(0.0, ge=0, description="R1 penalty weight (0 = off)")
    disc_lr_scale: float = Field(1.0, gt=0)


class VAERecipe(Recipe):
    target: str = "vae"
    model: VAEModelSection = VAEModelSection()


class LogVariance(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.logvar = nn.Parameter(torch.full((), float(value)))


class VAETarget(TrainTarget):
    name = "vae"
    summary = "the spectrogram VAE: L1 + learned log-variance, KL, hinge GAN (patch or multi-window), R1"
    recipe_class = VAERecipe
    ddp_find_unused = True  # the discriminator sits idle before disc_start

    def setup(self) -> None:
        from mka_core.models.vae import AutoencoderKL, VAEConfig

        model = self.recipe.model
        if model.freeze_encoder and not model.init:
            raise InputError(
                "model.freeze_encoder keeps a trained encoder fixed; give the VAE or pipeline folder to start from "
                "with --set model.init=FOLDER."
            )
        if model.init:
            vae = load_vae(model.init)
            # Loading leaves torch's global generator in a state that differs from process to
            # process; the discriminator below draws its initial weights from it.
            torch.manual_seed(self.recipe.run.seed)
        else:
            config = VAEConfig.preset(model.vae).model_dump()
            config.update(model.vae_overrides)
            torch.manual_seed(self.recipe.run.seed)
            vae = AutoencoderKL(VAEConfig.model_validate(config))
        if model.freeze_encoder:
            # Only what maps latents to mel learns (post_quant_conv + decoder): the encoder and
            # quant_conv keep the latents - and the scale factor - a diffusion model was trained on.
            # The trainer gives the optimiser only parameters that need a gradient.
            vae.encoder.requires_grad_(False)
            vae.quant_conv.requires_grad_(False)
        self.add_module("vae", vae, optimizer="main")
        self.add_module("logvar", LogVariance(model.logvar_init), optimizer="main")
        in_ch = vae.config.in_channels
        if model.disc == "patch":
            disc = PatchDiscriminator(in_ch, model.disc_width, model.disc_layers)
        else:
            disc = MultiWindowDiscriminator(in_ch, model.disc_width, model.disc_layers, model.disc_windows)
        self.add_module("disc", disc, optimizer="disc", lr_scale=model.disc_lr_scale)
        rows = load_rows(self.recipe.data.train, self.context, need_caption=False)
        self.train_data = MelCropDataset(rows, crop_frames=self.recipe.data.crop_frames, seed=self.recipe.run.seed)
        if self.recipe.data.valid:
            valid = load_rows(self.recipe.data.valid, self.context, need_caption=False, label="valid")
            self.valid_data = MelCropDataset(valid, crop_frames=self.recipe.data.crop_frames,
                                             seed=self.recipe.run.seed + 1, random_crop=False)

    def _disc(self, name_or_module, mel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        disc = name_or_module
        if isinstance(self.raw("disc"), MultiWindowDiscriminator):
            return disc(mel, generator=generator)
        return disc(mel)

    def training_step(self, batch: dict[str, Any], generator: torch.Generator) -> Iterator[StepOutput]:
        model = self.recipe.model
        mel = batch["mel"].to(self.device)
        # With a frozen encoder no graph is built through it (its parameters need no gradient).
        recon, posterior = self.net("vae")(mel, sample_posterior=True, generator=generator)
        nll, rec = nll_loss(mel, recon, self.raw("logvar").logvar)
        kl = kl_loss(posterior)
        loss = nll + model.kl_weight * kl
        logs = {"rec": rec.item(), "nll": nll.item(), "kl": kl.item()}
        adversarial = self.current_step >= model.disc_start
        if adversarial:
            disc_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            fake_logits = self._disc(self.raw("disc"), recon, torch.Generator().manual_seed(disc_seed))
            g_loss = -fake_logits.mean()
            last = self.raw("vae").decoder.conv_out.weight
            try:
                weight = adaptive_weight(nll, g_loss, last, model.disc_weight)
            except RuntimeError:  # no graph to the last layer (e.g. evaluation)
                weight = torch.tensor(0.0, device=self.device)
            loss = loss + weight * g_loss
            logs.update({"g": g_loss.item(), "d_weight": float(weight)})
        logs["loss"] = loss.item()
        yield StepOutput("main", loss, logs)
        if adversarial:
            real = mel.detach().requires_grad_(model.r1_weight > 0)
            disc_gen = torch.Generator().manual_seed(disc_seed)
            real_logits = self._disc(self.net("disc"), real, disc_gen)
            fake_logits = self._disc(self.net("disc"), recon.detach(), torch.Generator().manual_seed(disc_seed))
            d_loss = hinge_d_loss(real_logits, fake_logits)
            d_logs = {"d": d_loss.item()}
            if model.r1_weight > 0:
                r1 = r1_penalty(real_logits, real)
                d_loss = d_loss + model.r1_weight * r1
                d_logs["r1"] = r1.item()
            yield StepOutput("disc", d_loss, d_logs)

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, float]:
        mel = batch["mel"].to(self.device)
        recon, posterior = self.raw("vae")(mel, sample_posterior=False)
        return {"rec": (mel - recon).abs().mean().item(), "kl": kl_loss(posterior).item()}

    # -- outputs -------------------------------------------------------------------------------
    @torch.no_grad()
    def measured_scale_factor(self) -> float:
        vae = self.raw("vae")
        if self.recipe.model.freeze_encoder:
            return vae.scale_factor_value  # the latents are the starting VAE's, so is their scale
        mel = self.first_batch()["mel"].to(self.device)
        z = vae.encode(mel).sample(torch.Generator().manual_seed(self.recipe.run.seed))
        return float(1.0 / z.float().flatten().std())

    def build_pipeline(self):
        from mka_core.pipeline import Pipeline
        from mka_core.presets import build_pipeline

        vae = detached_copy(self.raw("vae"))
        vae.set_scale_factor(self.measured_scale_factor())
        if self.recipe.model.pipeline:
            base = Pipeline.from_pretrained(self.recipe.model.pipeline, device="cpu")
        else:
            options = dict(self.recipe.model.conditioner_options)
            base = build_pipeline(self.recipe.preset, self.recipe.model.conditioner, seed=self.recipe.run.seed,
                                  cond_options=options)
        config = base.config.model_copy(update={"origin": f"trained-vae:{self.context.run_dir.name}"})
        pipe = Pipeline(config, base.conditioner, vae, base.unet, base.vocoder, device=self.device)
        pipe._conditioner_dir = getattr(base, "_conditioner_dir", None)
        return pipe

    def export(self, out_dir: Path) -> Path:
        """A pipeline folder holding the trained VAE (its ``vae/`` is what diffusion training takes)."""
        return self.build_pipeline().save_pretrained(out_dir, overwrite=True)

    def render_samples(self, out_dir: Path, step: int) -> None:
        from mka_core.atomic import atomic_write
        from mka_core.spectrogram_image import mel_to_png_bytes

        data = self.valid_data or self.train_data
        out_dir.mkdir(parents=True, exist_ok=True)
        vae = self.raw("vae")
        for k in range(min(2, len(data))):
            mel = data[(k, k)]["mel"][None].to(self.device)
            recon, _ = vae(mel, sample_posterior=False)
            for tag, image in (("input", mel), ("recon", recon)):
                with atomic_write(out_dir / f"sample-{k}-{tag}.png") as handle:
                    handle.write(mel_to_png_bytes(image[0, 0].float().cpu()))
