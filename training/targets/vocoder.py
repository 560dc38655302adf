"""``mka train vocoder``: HiFi-GAN V1 or BigVGAN on mka's mel front end.

HiFi-GAN: multi-period + multi-scale discriminators; BigVGAN: multi-period + multi-resolution.
Both: least-squares GAN, feature matching x2, mel L1 x45 (single resolution for HiFi-GAN,
three for BigVGAN). The generator trains with weight normalisation, which is folded away
when the vocoder is exported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Literal

import torch
from pydantic import Field

from training.losses.vocoder_discriminators import (
    MultiPeriodDiscriminator,
    MultiResolutionDiscriminator,
    MultiScaleDiscriminator,
)
from training.losses.vocoder_gan import (
    FEATURE_MATCHING_WEIGHT,
    MEL_RESOLUTIONS,
    MEL_WEIGHT,
    MultiResolutionMelLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from training.data.segments import WaveSegmentDataset
from training.recipe import Recipe
from training.targets.base import StepOutput, TrainTarget
from training.targets.common import ConditionerSection, detached_copy, load_rows


class VocoderModelSection(ConditionerSection):
    vocoder: Literal["hifigan", "bigvgan"] = "hifigan"
    vocoder_preset: str = Field("tiny", description="hifigan: v1 | v2 | tiny; bigvgan: base | tiny")
    init: str = Field("", description="a vocoder or pipeline folder to fine-tune")
    segment_frames: int = Field(32, ge=4, description="mel frames per training segment (32 = 8192 samples)")
    disc_channel_divisor: int = Field(1, ge=1, description="narrower discriminators (tiny runs)")
    fm_weight: float = FEATURE_MATCHING_WEIGHT
    mel_weight: float = MEL_WEIGHT
    pipeline: str = Field("", description="pipeline whose other components wrap the exported vocoder")


class VocoderRecipe(Recipe):
    target: str = "vocoder"
    model: VocoderModelSection = VocoderModelSection()


class VocoderTarget(TrainTarget):
    name = "vocoder"
    summary = "HiFi-GAN V1 (MPD + MSD) or BigVGAN (MPD + MRD): LSGAN, feature matching, mel L1"
    recipe_class = VocoderRecipe

    def setup(self) -> None:
        from mka_core.models.vocoders.weight_norm import apply_weight_norm
        from mka_core.presets import build_vocoder
        from training.targets.common import load_vocoder

        model = self.recipe.model
        torch.manual_seed(self.recipe.run.seed)
        if model.init:
            self.vocoder_name, generator = load_vocoder(model.init)
        else:
            self.vocoder_name, generator = model.vocoder, build_vocoder(model.vocoder, model.vocoder_preset)
        self.add_module("generator", apply_weight_norm(generator), optimizer="gen")
        divisor = model.disc_channel_divisor
        self.add_module("mpd", MultiPeriodDiscriminator(channel_divisor=divisor), optimizer="disc")
        if self.vocoder_name == "bigvgan":
            self.add_module("mrd", MultiResolutionDiscriminator(channel_divisor=divisor), optimizer="disc")
            resolutions = MEL_RESOLUTIONS
        else:
            self.add_module("msd", MultiScaleDiscriminator(channel_divisor=divisor), optimizer="disc")
            resolutions = ((1024, 256, 1024, 80),)
        self.mel_loss = MultiResolutionMelLoss(resolutions).to(self.device)
        rows = load_rows(self.recipe.data.train, self.context, need_caption=False, need_audio=True)
        self.train_data = WaveSegmentDataset(rows, segment_frames=model.segment_frames, seed=self.recipe.run.seed)
        if self.recipe.data.valid:
            valid = load_rows(self.recipe.data.valid, self.context, need_caption=False, need_audio=True, label="valid")
            self.valid_data = WaveSegmentDataset(valid, segment_frames=model.segment_frames,
                                                 seed=self.recipe.run.seed + 1, random_offset=False)

    def _disc_names(self) -> list[str]:
        return [name for name in ("mpd", "msd", "mrd") if name in self.slots]

    def training_step(self, batch: dict[str, Any], generator: torch.Generator) -> Iterator[StepOutput]:
        model = self.recipe.model
        wave = batch["wave"].to(self.device)
        mel = batch["mel"].to(self.device)
        fake = self.net("generator")(mel).reshape(wave.shape)
        mel_l1 = self.mel_loss(wave, fake)
        adv = fm = torch.zeros((), device=self.device)
        for name in self._disc_names():
            _, fake_logits, real_maps, fake_maps = self.raw(name)(wave, fake)
            adv = adv + generator_adversarial_loss(fake_logits)[0]
            fm = fm + feature_matching_loss(real_maps, fake_maps)
        g_loss = adv + model.fm_weight * fm + model.mel_weight * mel_l1
        yield StepOutput("gen", g_loss, {"g": g_loss.item(), "mel_l1": mel_l1.item(), "fm": fm.item(), "adv": adv.item()})
        d_loss = torch.zeros((), device=self.device)
        for name in self._disc_names():
            real_logits, fake_logits, _, _ = self.net(name)(wave, fake.detach())
            d_loss = d_loss + discriminator_loss(real_logits, fake_logits)[0]
        yield StepOutput("disc", d_loss, {"d": d_loss.item()})

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, float]:
        wave = batch["wave"].to(self.device)
        fake = self.raw("generator")(batch["mel"].to(self.device)).reshape(wave.shape)
        return {"mel_l1": self.mel_loss(wave, fake).item()}

    # -- outputs -------------------------------------------------------------------------------
    def exported_vocoder(self):
        from mka_core.models.vocoders.weight_norm import remove_weight_norm

        return remove_weight_norm(detached_copy(self.raw("generator")))

    def build_pipeline(self):
        from mka_core.pipeline import Pipeline
        from mka_core.presets import build_pipeline

        if self.recipe.model.pipeline:
            base = Pipeline.from_pretrained(self.recipe.model.pipeline, device="cpu")
        else:
            base = build_pipeline(self.recipe.preset, self.recipe.model.conditioner, seed=self.recipe.run.seed,
                                  cond_options=dict(self.recipe.model.conditioner_options))
        config = base.config.model_copy(update={"vocoder": self.vocoder_name,
                                                "origin": f"trained-vocoder:{self.context.run_dir.name}"})
        pipe = Pipeline(config, base.conditioner, base.vae, base.unet, self.exported_vocoder(), device=self.device)
        pipe._conditioner_dir = getattr(base, "_conditioner_dir", None)
        return pipe

    def export(self, out_dir: Path) -> Path:
        """A pipeline folder with the trained vocoder (its ``vocoder/`` can be dropped into any pipeline)."""
        return self.build_pipeline().save_pretrained(out_dir, overwrite=True)

    def render_samples(self, out_dir: Path, step: int) -> None:
        from mka_core.audio.io import save_audio

        data = self.valid_data or self.train_data
        out_dir.mkdir(parents=True, exist_ok=True)
        vocoder = self.raw("generator")
        for k in range(min(2, len(data))):
            item = data[(k, k)]
            wave = vocoder(item["mel"][None].to(self.device)).reshape(-1).float().cpu()
            save_audio(out_dir / f"sample-{k}.wav", wave, 16000)
            save_audio(out_dir / f"sample-{k}-real.wav", item["wave"], 16000)
