"""Family A: ``maa1_full.ckpt`` + the BigVGAN folder of the GitHub release -> an mka pipeline.

Text-to-audio with the released text encoder (bert-base-uncased + per-token projection, the
clap-text conditioner's ``reference`` backend), the base VAE and U-Net, BigVGAN on the raw
log10 mel, and the reference inference settings (DDIM, 100 steps, guidance 3).
"""

from __future__ import annotations

from pathlib import Path

from mka_core.audio.mel import MelConfig
from mka_core.convert.checkpoint import load_checkpoint, sha256_of
from mka_core.convert.accounting import Ledger
from mka_core.convert.common import (
    Conversion,
    assemble_pipeline,
    count_tensors,
    ignore_extra_entries,
    reference_defaults,
)
from mka_core.convert.families import require_kind
from mka_core.convert.ldm import convert_diffusion_parts
from mka_core.convert.text_encoder import convert_caption_encoder, resolve_tokenizer
from mka_core.convert.vocoder import build_bigvgan, mel_mismatches, read_bigvgan
from mka_core.convert.widths import fit_unet_config, fit_vae_config
from mka_core.diffusion.schedule import ScheduleConfig


def generation_defaults():
    # gen_wav.py of the release: DDIM, 100 steps, guidance 3, 10 s.
    return reference_defaults(task="t2a", sampler="ddim", steps=100, guidance=3.0, duration=10.0)


def convert_maa1(ckpt: str | Path, vocoder: str | Path, *, staging: Path, tokenizer: str | Path | None = None) -> Conversion:
    """Convert ``maa1_full.ckpt`` and its vocoder folder (``args.yml`` + ``best_netG.pt``)."""
    from mka_core.models.unet import UNetConfig
    from mka_core.models.vae import VAEConfig

    # The cheap checks first: a missing or unsafe vocoder, or a missing tokenizer, is reported before the big load.
    tokenizer = resolve_tokenizer(tokenizer)
    vocoder_source = read_bigvgan(vocoder, input_scale="log10")
    path = Path(ckpt).expanduser()
    loaded = load_checkpoint(path)
    source = str(path)
    require_kind(loaded.state, "t2a", source)
    ledger = Ledger(f"{path.name} ({loaded.state_key or 'top level'})", loaded.state)
    ignore_extra_entries(loaded.extra, ledger)
    parts = convert_diffusion_parts(loaded.state, ledger, unet_config=fit_unet_config(UNetConfig.preset("base"), loaded.state),
                                    vae_config=fit_vae_config(VAEConfig.preset("base"), loaded.state),
                                    schedule=ScheduleConfig(), source=source)
    conditioner, text_info = convert_caption_encoder(loaded.state, ledger, tokenizer, source)
    ledger.check_complete()
    voc, voc_ledger, voc_info = build_bigvgan(vocoder_source)
    voc_ledger.check_complete()
    mel = MelConfig.preset("base")
    defaults = generation_defaults()
    pipe = assemble_pipeline(mel=mel, conditioner=conditioner, conditioner_name=conditioner.name, vae=parts["vae"],
                             unet=parts["unet"], vocoder=voc, vocoder_name="bigvgan", schedule=parts["schedule"],
                             defaults=defaults, origin=f"convert:maa1:{path.name}")
    warnings = mel_mismatches(vocoder_source.args, mel)
    info = {
        "family": "maa1",
        "warnings": warnings,
        "checkpoint": {"path": str(path), "sha256": sha256_of(path)},
        "text_encoder": text_info,
        "vocoder": voc_info,
        "notes": parts["notes"],
        "settings": {"mel": mel.to_json_dict(), "defaults": defaults.to_json_dict()},
    }
    filled = {"unet": count_tensors(parts["unet"]), "vae": count_tensors(parts["vae"]),
              "conditioner": count_tensors(conditioner), "vocoder": count_tensors(voc)}
    return Conversion(pipeline=pipe, ledgers=[ledger, voc_ledger], filled=filled, info=info)
