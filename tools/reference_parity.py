"""Compare a converted mka model with the reference Make-An-Audio code, stage by stage.

For users who hold the released weights and a checkout of the reference repository
(Text-to-Audio/Make-An-Audio). Both implementations get the same prompt, the same noise and
the same timesteps; the script prints the maximum relative difference ``max|a - b| / max|b|``
of: the text encoder's context, the U-Net's epsilon, the VAE decode, the vocoder waveform, and
a full DDIM run (100 steps, guidance 3) through decode and vocoder.

    python tools/reference_parity.py --ref-repo ~/src/Make-An-Audio --ckpt useful_ckpts/maa1_full.ckpt \\
        --vocoder useful_ckpts/bigvgan --mka-model ~/models/maa1 [--device cpu] [--prompt "a bird chirps"]

The reference side needs its own environment (omegaconf, pytorch-lightning, einops,
transformers with bert-base-uncased in the Hugging Face cache) and, because its text encoder's
constructor reads it, ``useful_ckpts/CLAP/CLAP_weights_2022.pth`` inside the checkout. The
reference's DDIM sampler moves its buffers to CUDA whenever CUDA exists; on a GPU machine run
with ``--device cuda`` (or hide the GPU with ``CUDA_VISIBLE_DEVICES=``). mka reads the checkpoint
with ``weights_only=True`` here too and hands the tensors to the reference model.
See docs/reference-parity.md for the expected figures.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch


def max_rel(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """``max |ours - theirs| / max |theirs|`` in float64 (shapes must match)."""
    ours, theirs = torch.as_tensor(ours).double().cpu(), torch.as_tensor(theirs).double().cpu()
    if ours.shape != theirs.shape:
        raise SystemExit(f"shape mismatch: mka {tuple(ours.shape)} vs reference {tuple(theirs.shape)}")
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp(min=1e-30))


def latent_width(seconds: float) -> int:
    """The reference's duration rule (gen_wav.dur_to_size): int(7.8 s), rounded up to a multiple of 4."""
    width = int(seconds * 7.8)
    return width if width % 4 == 0 else (width // 4 + 1) * 4


def load_reference(repo: Path, ckpt: Path, device: str):
    """The reference LatentDiffusion model with the checkpoint's tensors (read weights-only)."""
    sys.path.insert(0, str(repo))
    os.chdir(repo)  # the text encoder's constructor opens useful_ckpts/CLAP/... relative to the checkout
    from ldm.util import instantiate_from_config
    from omegaconf import OmegaConf

    config = OmegaConf.load(repo / "configs" / "text_to_audio" / "txt2audio_args.yaml")
    model = instantiate_from_config(config.model)
    state = torch.load(str(ckpt), map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(state, strict=False)  # as gen_wav.py does
    model = model.to(device)
    model.cond_stage_model.to(device)
    model.cond_stage_model.device = device
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref-repo", type=Path, required=True, help="checkout of Text-to-Audio/Make-An-Audio")
    parser.add_argument("--ckpt", type=Path, required=True, help="maa1_full.ckpt")
    parser.add_argument("--vocoder", type=Path, required=True, help="the BigVGAN folder (args.yml, best_netG.pt)")
    parser.add_argument("--mka-model", type=Path, required=True, help="the folder written by `mka convert maa1`")
    parser.add_argument("--prompt", default="a bird chirps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds; latent width as the reference rounds it")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    ckpt, vocoder_dir, mka_dir = args.ckpt.resolve(), args.vocoder.resolve(), args.mka_model.resolve()

    from mka_core.conditioning import Condition
    from mka_core.diffusion.guidance import GuidedDenoiser
    from mka_core.diffusion.samplers.ddim import DDIMSampler
    from mka_core.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(mka_dir, device=args.device, dtype="float32")
    model = load_reference(args.ref_repo.resolve(), ckpt, args.device)
    from ldm.models.diffusion.ddim import DDIMSampler as ReferenceDDIM
    from vocoder.bigvgan.models import VocoderBigVGAN

    reference_vocoder = VocoderBigVGAN(str(vocoder_dir), device=args.device)
    rows: list[tuple[str, float]] = []
    with torch.no_grad():
        # 1. text encoder context (prompt and the null prompt "")
        c_ref = model.get_learned_conditioning([args.prompt])
        uc_ref = model.get_learned_conditioning([""])
        c_ours = pipe.conditioner([args.prompt])
        uc_ours = pipe.conditioner.null_condition(1)
        rows.append(("text encoder context", max_rel(c_ours.embeds, c_ref)))
        rows.append(("null context ('')", max_rel(uc_ours.embeds, uc_ref)))

        # 2. U-Net epsilon at a few timesteps, same x and context
        width = latent_width(args.duration)
        g = torch.Generator().manual_seed(args.seed)
        x = torch.randn(1, 4, 10, width, generator=g).to(args.device)
        for t in (991, 501, 1):
            tt = torch.full((1,), t, device=args.device, dtype=torch.long)
            rows.append((f"U-Net eps, t={t}", max_rel(pipe.unet(x, tt, c_ref), model.apply_model(x, tt, c_ref))))

        # 3. VAE decode of the same (scaled) latents
        z = torch.randn(1, 4, 10, width, generator=g).to(args.device)
        mel_ref = model.decode_first_stage(z)
        rows.append(("VAE decode", max_rel(pipe.vae.decode_latents(z), mel_ref)))

        # 4. vocoder waveform of the same mel
        wav_ref = torch.as_tensor(reference_vocoder.vocode(mel_ref[0]))
        rows.append(("vocoder waveform", max_rel(pipe.vocoder(mel_ref[:, 0]).reshape(-1), wav_ref.reshape(-1))))

        # 5. DDIM, eta 0, guidance, from the same x_T, then decode and vocode
        x_T = torch.randn(1, 4, 10, width, generator=g).to(args.device)
        samples_ref, _ = ReferenceDDIM(model).sample(
            S=args.steps, conditioning=c_ref, batch_size=1, shape=[4, 10, width], verbose=False, eta=0.0,
            unconditional_guidance_scale=args.guidance, unconditional_conditioning=uc_ref, x_T=x_T)
        mask = torch.ones(1, c_ref.shape[1], dtype=torch.bool, device=args.device)
        denoiser = GuidedDenoiser(pipe._unet_fn(None), Condition(c_ref, mask), Condition(uc_ref, mask), args.guidance)
        samples = DDIMSampler(final_alpha="reference").sample(denoiser, x_T, schedule=pipe.schedule, steps=args.steps)
        rows.append((f"DDIM-{args.steps} latents (guidance {args.guidance:g})", max_rel(samples, samples_ref)))
        mel_end_ref = model.decode_first_stage(samples_ref)
        mel_end = pipe.vae.decode_latents(samples.to(args.device))
        rows.append(("  ... decoded mel", max_rel(mel_end, mel_end_ref)))
        wav_end_ref = torch.as_tensor(reference_vocoder.vocode(mel_end_ref[0]))
        rows.append(("  ... waveform", max_rel(pipe.vocoder(mel_end[:, 0]).reshape(-1), wav_end_ref.reshape(-1))))

    width_name = max(len(name) for name, _ in rows)
    print(f"{'stage':<{width_name}}  max relative difference (mka vs reference)")
    for name, value in rows:
        print(f"{name:<{width_name}}  {value:.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
