"""``mka train inpaint``: the inpainting fine-tune of a text-to-audio pipeline.

Starts from ``model.init`` (a text-to-audio pipeline): its U-Net gains input channels for the
masked audio's latent (4) and the mask (1), with zero weights, so step 0 computes exactly the
text-to-audio model. Each training sample gets a mask from the paper's generators - irregular
thin / medium / thick or frame-based with p = 30 / 50 / 70 % - drawn from the step's generator;
the masked mel (regenerated region set to silence) is encoded by the frozen VAE. The text
condition is kept (with guidance dropout), so the model inpaints following a prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from mka_core.errors import InputError
from training.targets.diffusion import DiffusionModelSection, DiffusionRecipe, DiffusionTarget


class InpaintModelSection(DiffusionModelSection):
    mask_kinds: tuple[str, ...] = Field(
        ("any",), description="training mask kinds: thin, medium, thick, frame30, frame50, frame70, irregular, frame, any")


class InpaintRecipe(DiffusionRecipe):
    target: str = "inpaint"
    model: InpaintModelSection = InpaintModelSection()


class InpaintTarget(DiffusionTarget):
    name = "inpaint"
    summary = "the inpainting fine-tune: zero-initialised mask + masked-latent inputs, the paper's mask generators"
    recipe_class = InpaintRecipe

    def setup(self) -> None:
        if not self.recipe.model.init:
            raise InputError("The inpaint fine-tune starts from a text-to-audio pipeline: set model.init=PIPELINE_FOLDER.")
        super().setup()

    def adapt_unet(self, unet):
        from mka_plugins.tasks.inpaint import make_inpainting_unet

        if unet.config.in_channels == unet.config.out_channels:
            return make_inpainting_unet(unet)
        return unet  # already an inpainting U-Net: continue its fine-tune

    def adapt_config(self, config):
        return config.model_copy(update={"defaults": config.defaults.model_copy(update={"task": "inpaint"})})

    def masks(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        from mka_plugins.tasks.mask_generators import random_training_mask

        mel = batch["mel"]
        kinds = self.recipe.model.mask_kinds
        out = []
        for _ in range(mel.shape[0]):
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            rng = np.random.default_rng(seed)
            kind = kinds[int(rng.integers(0, len(kinds)))]
            out.append(torch.from_numpy(random_training_mask(kind, mel.shape[-2], mel.shape[-1], rng)))
        return torch.stack(out)[:, None].float()

    @torch.no_grad()
    def extra_channels(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        from mka_plugins.tasks.inpaint import MASK, MASKED_LATENT, _extra_groups, latent_mask, masked_mel

        mel = batch["mel"].to(self.device)
        mask = self.masks(batch, generator).to(self.device)
        factor = self.vae.downsampling[1]  # mel frames per latent column, from the VAE contract
        parts = []
        for name, _ in _extra_groups(self.raw("unet").config, self.vae.latent_channels):
            if name == MASKED_LATENT:
                floor = float(self.mel_config.silence) if self.mel_config else -5.0
                parts.append(self.vae.encode_latents(masked_mel(mel, mask, floor), sample=False).float())
            elif name == MASK:
                parts.append(latent_mask(mask, factor) * 2 - 1)
        return torch.cat(parts, dim=1)

    def render_samples(self, out_dir: Path, step: int) -> None:
        from mka_core.atomic import atomic_write
        from mka_core.audio.io import save_audio
        from mka_core.spectrogram_image import mel_to_png_bytes

        data = self.valid_data or self.train_data
        rows = [row for row in data.rows[:2] if row.audio_path]
        if not rows:
            return
        pipe = self.build_pipeline()
        out_dir.mkdir(parents=True, exist_ok=True)
        for k, row in enumerate(rows):
            result = pipe([row.caption], init_audio=row.audio_path, mask="0.5-1.0", duration=2.0,
                          steps=self.recipe.model.sample_steps, seed=self.recipe.run.seed + k)
            save_audio(out_dir / f"sample-{k}.wav", result.waveforms[0].cpu(), result.sample_rate)
            with atomic_write(out_dir / f"sample-{k}.png") as handle:
                handle.write(mel_to_png_bytes(result.mels[0].squeeze().cpu()))
