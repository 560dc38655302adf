"""Family B: the models of the hosted Make-An-Audio demos (AIGC-Audio/AudioGPT).

* ``t2a`` - ta40multi: the family-A architecture (BERT + projection text encoder, 320-channel
  U-Net) trained on the family-B mel;
* ``i2a`` - ta54: OpenCLIP ViT-H-14, one normalised global token that is both the
  cross-attention context and added to the time embedding; 256-channel U-Net with 32-channel
  heads. Trained on CLIP *text* embeddings of captions, run on image (or video) embeddings;
* ``inpaint`` - inpaint7: 9-channel U-Net ``[x_t | masked latent | mask]`` with legacy
  self-attention and ResBlock resampling, no condition; schedule 0.0015 -> 0.0205.

All three use the family-B front end (125-7600 Hz, dB scaled to [0, 1]; the VAE sees [-1, 1],
the vocoder the [0, 1] mel). Their vocoder (``vocoder/logs/bigv16k53w`` of the demos) is not in
the checkpoint: pass its folder with ``--vocoder``, or mka uses Griffin-Lim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mka_core.audio.mel import MelConfig
from mka_core.convert.accounting import Ledger
from mka_core.convert.checkpoint import load_checkpoint, sha256_of
from mka_core.convert.common import (
    Conversion,
    assemble_pipeline,
    count_tensors,
    ignore_extra_entries,
    reference_defaults,
)
from mka_core.convert.families import require_kind
from mka_core.convert.ldm import VAE_PREFIX, convert_diffusion_parts
from mka_core.convert.widths import fit_unet_config, fit_vae_config
from mka_core.diffusion.schedule import ScheduleConfig
from mka_core.errors import InputError, WeightsError

KINDS = ("t2a", "i2a", "inpaint")
CHECKPOINT_NAMES = {"t2a": "ta40multi", "i2a": "ta54", "inpaint": "inpaint7"}


def family_b_vae_config():
    from mka_core.models.vae import VAEConfig

    # Same tensors as family A; the config records the 848-frame training resolution.
    return VAEConfig(resolution=848, attn_resolutions=[106, 212])


def unet_config(kind: str):
    from mka_core.models.unet import InputGroup, UNetConfig

    if kind == "i2a":
        return UNetConfig(model_channels=256, num_head_channels=32, global_condition_to_time=True)
    if kind == "inpaint":
        groups = [InputGroup(name="x_t", channels=4), InputGroup(name="masked_latent", channels=4),
                  InputGroup(name="mask", channels=1)]
        return UNetConfig(in_channels=9, input_groups=groups, context_dim=None,
                          attention_type="legacy_attention_block", resblock_updown=True)
    return UNetConfig.preset("base")


def schedule_config(kind: str) -> ScheduleConfig:
    if kind == "inpaint":
        # The reference's "linear" schedule is linspace(sqrt(start), sqrt(end)) squared.
        return ScheduleConfig(beta_start=0.0015, beta_end=0.0205, beta_schedule="scaled_linear", loss="l1")
    return ScheduleConfig()


def generation_defaults(kind: str):
    # The demos' recorded settings: DDIM 100 steps; guidance 1.5 (text), 3 (image), none (inpainting).
    if kind == "inpaint":
        return reference_defaults(task="inpaint", sampler="ddim", steps=100, guidance=1.0, duration=10.0)
    return reference_defaults(task="t2a", sampler="ddim", steps=100, guidance=1.5 if kind == "t2a" else 3.0,
                              duration=10.0)


def family_b_vocoder(source: Any, mel: MelConfig) -> tuple[Any, str, list[Ledger], dict[str, Any]]:
    """BigVGAN from a read vocoder folder (taking the [0, 1] mel), or Griffin-Lim on the family-B front end."""
    if source is None:
        from mka_core.models.vocoders.griffinlim import GriffinLimConfig, GriffinLimVocoder

        note = ("Griffin-Lim (no --vocoder given; the demos' BigVGAN 'vocoder/logs/bigv16k53w' is not in the "
                "checkpoint - pass its folder for the reference sound)")
        return GriffinLimVocoder(GriffinLimConfig(mel=mel)), "griffin-lim", [], {"vocoder": note}
    from mka_core.convert.vocoder import build_bigvgan

    vocoder, ledger, info = build_bigvgan(source)
    return vocoder, "bigvgan", [ledger], {"vocoder": info}


def _ignore_shared_vae(state: dict[str, torch.Tensor], ledger: Ledger, source: str) -> None:
    """inpaint7 saves its VAE twice (cond_stage_model IS first_stage_model); the copies must agree."""
    prefix = "cond_stage_model."
    for key in [k for k in state if k.startswith(prefix)]:
        twin = VAE_PREFIX + key[len(prefix):]
        if twin not in state:
            raise WeightsError(f"{source}: '{key}' has no twin '{twin}'; the inpainting checkpoint is damaged.")
        if state[key].shape != state[twin].shape or not torch.equal(state[key], state[twin]):
            raise WeightsError(f"{source}: '{key}' differs from '{twin}', but the two must be one VAE; the file is damaged.")
        ledger.ignore(key, "shares first_stage_model (cond_stage_model is the same VAE, saved twice)")


def convert_maa_b(ckpt: str | Path, kind: str, *, staging: Path, vocoder: str | Path | None = None,
                  tokenizer: str | Path | None = None, clip: str | Path | None = None,
                  clip_model: str = "ViT-H-14", clip_pretrained: str = "laion2b_s32b_b79k",
                  clip_model_cfg: dict[str, Any] | None = None) -> Conversion:
    """Convert a family-B checkpoint of ``kind`` (t2a, i2a, inpaint) into a pipeline."""
    if kind not in KINDS:
        raise InputError(f"Unknown family-B kind '{kind}'; choose one of: {', '.join(KINDS)}.")
    # The cheap checks first: a missing tokenizer, or a missing or unsafe vocoder, is reported before the big load.
    if kind == "t2a":
        from mka_core.convert.text_encoder import resolve_tokenizer

        tokenizer = resolve_tokenizer(tokenizer)
    vocoder_source = None
    if vocoder is not None:
        from mka_core.convert.vocoder import read_bigvgan

        vocoder_source = read_bigvgan(vocoder, input_scale="db_unit")
    path = Path(ckpt).expanduser()
    loaded = load_checkpoint(path)
    source = str(path)
    state = loaded.state
    require_kind(state, kind, source)
    ledger = Ledger(f"{path.name} ({loaded.state_key or 'top level'})", state)
    ignore_extra_entries(loaded.extra, ledger)
    mel = MelConfig.preset("maa-b")
    ledgers = [ledger]
    info: dict[str, Any] = {"family": f"maa-b:{kind}", "checkpoint": {"path": str(path), "sha256": sha256_of(path)}}

    if kind == "inpaint":
        _ignore_shared_vae(state, ledger, source)
    parts = convert_diffusion_parts(state, ledger, unet_config=fit_unet_config(unet_config(kind), state),
                                    vae_config=fit_vae_config(family_b_vae_config(), state),
                                    schedule=schedule_config(kind), source=source)
    scratch: list[Path] = []
    if kind == "t2a":
        from mka_core.convert.text_encoder import convert_caption_encoder

        conditioner, text_info = convert_caption_encoder(state, ledger, tokenizer, source,
                                                         space_name="ta40multi-clap-text")
        cond_name, info["text_encoder"] = conditioner.name, text_info
    elif kind == "i2a":
        from mka_core.convert.openclip import convert_openclip
        from mka_core.plugins import manager

        # Through the registry, as any plugin is found: the core does not import mka_plugins.
        clip_cls = manager.get("conditioner", "clip-text")
        folder = staging / "openclip"
        extra, clip_info = convert_openclip(state, ledger, folder, source=source, model=clip_model,
                                            pretrained=clip_pretrained, model_cfg=clip_model_cfg,
                                            clip_dir=Path(clip).expanduser() if clip else None)
        ledgers += extra
        conditioner = clip_cls(clip_cls.Options(model=clip_model, pretrained=clip_pretrained, weights=str(folder)))
        cond_name, info["conditioner"] = conditioner.name, clip_info
        scratch.append(folder)
    else:
        from mka_core.plugins import manager

        conditioner = manager.get("conditioner", "unconditional")()
        cond_name = conditioner.name
    ledger.check_complete()
    voc, voc_name, voc_ledgers, voc_info = family_b_vocoder(vocoder_source, mel)
    ledgers += voc_ledgers
    for extra_ledger in ledgers:
        extra_ledger.check_complete()
    info.update(voc_info)
    if vocoder_source is not None:
        from mka_core.convert.vocoder import mel_mismatches

        info["warnings"] = mel_mismatches(vocoder_source.args, mel)
    info["notes"] = parts["notes"]
    defaults = generation_defaults(kind)
    pipe = assemble_pipeline(mel=mel, conditioner=conditioner, conditioner_name=cond_name, vae=parts["vae"],
                             unet=parts["unet"], vocoder=voc, vocoder_name=voc_name, schedule=parts["schedule"],
                             defaults=defaults, origin=f"convert:maa-b:{kind}:{path.name}")
    # The clip conditioner keeps one tower in memory; what was filled is the whole CLIP it saves.
    cond_count = info["conditioner"]["tensors"] if kind == "i2a" else count_tensors(conditioner)
    filled = {"unet": count_tensors(parts["unet"]), "vae": count_tensors(parts["vae"]),
              "conditioner": cond_count, "vocoder": count_tensors(voc)}
    info["settings"] = {"mel": mel.to_json_dict(), "defaults": defaults.to_json_dict()}
    return Conversion(pipeline=pipe, ledgers=ledgers, filled=filled, info=info, scratch=scratch)
