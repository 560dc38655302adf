"""``mka train diffusion``: the latent diffusion U-Net under any (frozen) conditioner.

Loss: epsilon-MSE at uniform timesteps of the 1000-step schedule; the condition is replaced by
the null condition with probability ``model.guidance_dropout`` (0.1, the paper's value) so
the model learns classifier-free guidance; EMA weights are kept and exported. The VAE and
conditioner are frozen; their outputs can be cached on disk (``cache_embeddings``,
``cache_latents``) so they run once per caption / clip rather than every epoch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

import torch
from pydantic import Field

from mka_core.config import StrictModel
from mka_core.errors import InputError
from training.data.dataset import MelCropDataset
from training.recipe import Recipe
from training.targets.base import StepOutput, TrainTarget
from training.targets.common import (
    ConditionerSection,
    build_conditioner,
    cpu_randn,
    detached_copy,
    frozen,
    load_pipeline_cpu,
    load_rows,
    load_vae,
    load_vocoder,
    render_pipeline_samples,
)


class ReprogramSection(StrictModel):
    enabled: bool = Field(False, description="dynamic reprogramming (pseudo prompt enhancement), online")
    database: str = Field("", description="manifest of single-label clips ('' = the training manifest)")
    probabilities: tuple[float, float, float] = Field((0.4, 0.3, 0.3), description="P(N = 0, 1, 2 extra events)")


class DiffusionModelSection(ConditionerSection):
    init: str = Field("", description="a pipeline folder to continue from (its U-Net, VAE, conditioner, vocoder)")
    vae: str = Field("", description="VAE folder or pipeline folder (required unless init is set)")
    unet: str = Field("tiny", description="U-Net preset when starting from scratch")
    unet_overrides: dict[str, Any] = Field(default_factory=dict, description="U-Net config fields to change")
    vocoder: str = Field("griffin-lim", description="vocoder name (weight-free) or trained vocoder folder")
    guidance_dropout: float = Field(0.1, ge=0, le=1)
    ema: bool = True
    cache_embeddings: bool = True
    cache_latents: bool = False
    sample_steps: int = Field(25, ge=1, description="sampler steps for the rendered samples")
    defaults: dict[str, Any] = Field(default_factory=dict,
                                     description="generation defaults recorded in the exported model (steps, guidance, duration...)")
    reprogram: ReprogramSection = ReprogramSection()


class DiffusionRecipe(Recipe):
    target: str = "diffusion"
    ema_decay: float = Field(0.9999, gt=0, lt=1)
    model: DiffusionModelSection = DiffusionModelSection()


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of a state dict: the identity of a set of weights."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensors[name].shape)}\0".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def latent_cache_key(vae_fingerprint: str, name: str, mel: torch.Tensor) -> str:
    """The cached posterior's file name: the VAE's weights, the clip's name and the mel's exact
    content, so that a cache folder reused after retraining the VAE, or after rebuilding a corpus
    whose clips keep their names, recomputes instead of feeding stale latents."""
    content = hashlib.sha256(mel.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()
    return hashlib.sha256(f"{vae_fingerprint}\0{name}\0{tuple(mel.shape)}\0{content}".encode()).hexdigest()[:32]


class DiffusionTarget(TrainTarget):
    name = "diffusion"
    summary = "the latent diffusion U-Net (epsilon-MSE, guidance dropout, EMA) under a frozen conditioner"
    recipe_class = DiffusionRecipe
    needs_captions = True

    # -- building ------------------------------------------------------------------------------
    def setup(self) -> None:
        recipe, model = self.recipe, self.recipe.model
        self.init_pipeline = load_pipeline_cpu(model.init) if model.init else None
        if self.init_pipeline is not None:
            conditioner = self.init_pipeline.conditioner
            vae = self.init_pipeline.vae
            unet = self.init_pipeline.unet
            self.vocoder_name, self.vocoder = self.init_pipeline.config.vocoder, self.init_pipeline.vocoder
            self.pipeline_config = self.init_pipeline.config
            unet.requires_grad_(True)
        else:
            if not model.vae:
                raise InputError("The diffusion recipe needs model.vae (a trained VAE folder) or model.init (a pipeline).")
            conditioner = build_conditioner(model, recipe.run.seed)
            vae = load_vae(model.vae)
            unet = self.build_unet(conditioner.space.dim, vae.latent_channels)
            self.vocoder_name, self.vocoder = load_vocoder(model.vocoder)
            self.pipeline_config = None
        unet = self.adapt_unet(unet)
        self.conditioner = frozen(conditioner).to(self.device)
        self.vae = frozen(vae).to(self.device)
        self.add_module("unet", unet, optimizer="main", ema=model.ema)
        from mka_core.diffusion.schedule import NoiseSchedule

        self.schedule = NoiseSchedule(self.pipeline_config.schedule if self.pipeline_config else None)
        self.mel_config = self.pipeline_config.mel if self.pipeline_config else None
        self._null = None
        self.setup_caches()
        self.build_data()

    def setup_caches(self) -> None:
        """The on-disk caches of caption embeddings and VAE latents the recipe asks for."""
        recipe, model = self.recipe, self.recipe.model
        cache_root = Path(recipe.data.cache_dir) if recipe.data.cache_dir else self.context.run_dir / "cache"
        self.embedding_cache = None
        if model.cache_embeddings:
            from mka_core.embedding_cache import EmbeddingCache

            self.embedding_cache = EmbeddingCache(cache_root / "embeddings")
        self.latent_cache_dir = cache_root / "latents" if model.cache_latents else None
        # The cache folder may be shared by runs with different VAEs: their weights are in the key.
        self.vae_fingerprint = tensors_fingerprint(self.vae.state_dict()) if model.cache_latents else None

    def build_unet(self, context_dim: int, latent_channels: int):
        from mka_core.models.unet import UNet, UNetConfig

        config = UNetConfig.preset(self.recipe.model.unet).model_dump()
        # The U-Net denoises the VAE's latents: its channels come from the VAE contract.
        config.update({"context_dim": context_dim, "in_channels": latent_channels, "out_channels": latent_channels,
                       **self.recipe.model.unet_overrides})
        torch.manual_seed(self.recipe.run.seed)
        return UNet(UNetConfig.model_validate(config))

    def adapt_unet(self, unet):
        """Hook for subclasses (the inpainting fine-tune adds input channels)."""
        return unet

    def build_data(self) -> None:
        recipe = self.recipe
        rows = load_rows(recipe.data.train, self.context, need_caption=not recipe.model.reprogram.enabled)
        transform = self.reprogrammer(rows) if recipe.model.reprogram.enabled else None
        random_crop = not recipe.model.cache_latents
        self.train_data = MelCropDataset(rows, crop_frames=recipe.data.crop_frames, seed=recipe.run.seed,
                                         mel_config=self.mel_config, random_crop=random_crop, audio_transform=transform)
        if recipe.data.valid:
            valid_rows = load_rows(recipe.data.valid, self.context, need_caption=True, label="valid")
            self.valid_data = MelCropDataset(valid_rows, crop_frames=recipe.data.crop_frames, seed=recipe.run.seed + 1,
                                             mel_config=self.mel_config, random_crop=False)

    def reprogrammer(self, rows):
        from training.data.reprogram import reprogrammer_for_manifest

        section = self.recipe.model.reprogram
        database = section.database or self.recipe.data.train
        return reprogrammer_for_manifest(database, probabilities=section.probabilities, seed=self.recipe.run.seed)

    # -- one step ------------------------------------------------------------------------------
    def null_condition(self, batch: int):
        if self._null is None:
            self._null = self.conditioner.null_condition(1)
        return self._null

    def encode_captions(self, captions: list[str]):
        if self.embedding_cache is not None:
            from mka_core.embedding_cache import encode_with_cache

            return encode_with_cache(self.conditioner, captions, self.embedding_cache)
        return self.conditioner(captions)

    @torch.no_grad()
    def latents(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        mel = batch["mel"].to(self.device)
        if self.latent_cache_dir is None:
            moments = posterior_moments(self.vae, mel)
        else:
            moments = self._cached_moments(batch, mel)
        mean, logvar = moments.float().chunk(2, dim=1)
        std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
        z = mean + std * cpu_randn(mean.shape, generator, self.device)
        return z * self.vae.scale_factor_value

    def _cached_moments(self, batch: dict[str, Any], mel: torch.Tensor) -> torch.Tensor:
        from mka_core.weights import load_safetensors, save_safetensors

        out = []
        for i, name in enumerate(batch["name"]):
            key = latent_cache_key(self.vae_fingerprint, name, mel[i])
            path = self.latent_cache_dir / f"{key}.safetensors"
            cached = None
            if path.is_file():
                try:
                    cached = load_safetensors(path)["moments"].to(self.device)
                except Exception:
                    cached = None
            if cached is None:
                cached = posterior_moments(self.vae, mel[i:i + 1])[0].float()
                save_safetensors({"moments": cached.cpu()}, path)
            out.append(cached)
        return torch.stack(out)

    def condition(self, captions: list[str], generator: torch.Generator):
        from mka_core.diffusion.guidance import guidance_dropout

        with torch.no_grad():
            cond = self.encode_captions(list(captions)).to(self.device, torch.float32)
        return guidance_dropout(cond, self.null_condition(len(captions)), self.recipe.model.guidance_dropout, generator)

    def extra_channels(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor | None:
        return None

    def loss(self, batch: dict[str, Any], generator: torch.Generator, unet) -> torch.Tensor:
        x0 = self.latents(batch, generator)
        cond = self.condition(batch["caption"], generator)
        t = self.schedule.sample_timesteps(x0.shape[0], generator, self.device)
        noise = cpu_randn(x0.shape, generator, self.device)
        extra = self.extra_channels(batch, generator)

        def unet_fn(x_t, steps, c):
            if extra is not None:
                x_t = torch.cat([x_t, extra.to(x_t.dtype)], dim=1)
            return unet(x_t, steps, context=c.embeds, context_mask=c.mask)

        return self.schedule.diffusion_loss(unet_fn, x0, cond, t, noise)

    def training_step(self, batch: dict[str, Any], generator: torch.Generator) -> Iterator[StepOutput]:
        loss = self.loss(batch, generator, self.net("unet"))
        yield StepOutput("main", loss, {"loss": loss.item()})

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, float]:
        return {"loss": self.loss(batch, generator, self.raw("unet")).item()}

    # -- outputs -------------------------------------------------------------------------------
    def build_pipeline(self):
        from mka_core.pipeline import Pipeline, PipelineConfig

        unet = detached_copy(self.raw("unet"))
        if self.pipeline_config is not None:
            config = self.pipeline_config.model_copy(update={"origin": f"trained:{self.context.run_dir.name}"})
        else:
            config = PipelineConfig(conditioner=self.conditioner.name, space=self.conditioner.space,
                                    vocoder=self.vocoder_name, origin=f"trained:{self.context.run_dir.name}")
        if self.recipe.model.defaults:
            from mka_core.pipeline import GenerationDefaults

            merged = {**config.defaults.model_dump(), **self.recipe.model.defaults}
            config = config.model_copy(update={"defaults": GenerationDefaults.model_validate(merged)})
        config = self.adapt_config(config)
        pipe = Pipeline(config, detached_copy(self.conditioner), detached_copy(self.vae), unet,
                        detached_copy(self.vocoder), device=self.device)
        if self.init_pipeline is not None:
            pipe._conditioner_dir = getattr(self.init_pipeline, "_conditioner_dir", None)
        return pipe

    def adapt_config(self, config):
        return config

    def export(self, out_dir: Path) -> Path:
        return self.build_pipeline().save_pretrained(out_dir, overwrite=True)

    def render_samples(self, out_dir: Path, step: int) -> None:
        data = self.valid_data or self.train_data
        captions = []
        for row in data.rows[:3]:
            if row.caption:
                captions.append(row.caption)
        if not captions:
            return
        seconds = min(5.0, self.recipe.data.crop_frames * 256 / 16000)
        render_pipeline_samples(self.build_pipeline(), captions, out_dir, seconds=seconds,
                                steps=self.recipe.model.sample_steps, seed=self.recipe.run.seed)


def posterior_moments(vae, mel: torch.Tensor) -> torch.Tensor:
    """The VAE posterior's mean and log-variance stacked on the channel axis (what the latent cache stores),
    through the VAE contract's ``encode``, so any registered VAE trains a U-Net."""
    posterior = vae.encode(mel)
    return torch.cat([posterior.mean, posterior.logvar], dim=1)
