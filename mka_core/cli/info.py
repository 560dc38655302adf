"""`mka info`: parameter counts and latent shapes of a preset."""

from __future__ import annotations

import argparse
import json

from mka_core.cli.command import Command

TRAINING_CLIP_SECONDS = 9.984  # 624 frames: the reference release's training crop


def describe_preset(preset: str, duration: float, context_dim: int) -> dict:
    from mka_core.audio.mel import MelConfig
    from mka_core.geometry import frames_for
    from mka_core.models.unet import UNetConfig
    from mka_core.models.vae import AutoencoderKL, VAEConfig
    from mka_core.presets import preset_parameter_counts, preset_spec

    spec = preset_spec(preset)
    mel = MelConfig()
    vae = AutoencoderKL.geometry(VAEConfig.preset(spec["vae"]))  # the VAE contract, no module built
    unet = UNetConfig.preset(spec["unet"])
    granularity = vae.frame_factor * unet.downsample_factor
    frames, samples = frames_for(duration, sample_rate=mel.sample_rate, hop_length=mel.hop_length, granularity=granularity)
    counts = preset_parameter_counts(preset, context_dim)
    return {
        "preset": preset,
        "vocoder": spec["vocoder"],
        "parameters": counts,
        "parameters_millions": {k: round(v / 1e6, 2) for k, v in counts.items()},
        "context_dim": context_dim,
        "duration": duration,
        "output_samples": samples,
        "mel_shape": [1, mel.n_mels, frames],
        "latent_shape": list(vae.latent_shape(mel.n_mels, frames)),
        "vae": {"name": AutoencoderKL.name, "latent_channels": vae.latent_channels,
                "downsampling": list(vae.downsampling)},
        "frame_granularity": granularity,
        "generated_seconds": frames * mel.hop_length / mel.sample_rate,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="base", help="base or tiny (default base)")
    parser.add_argument("--duration", type=float, default=TRAINING_CLIP_SECONDS,
                        help=f"seconds of audio for the shapes (default {TRAINING_CLIP_SECONDS}, the training clip)")
    parser.add_argument("--context-dim", type=int, default=1024, help="conditioner width the U-Net is sized for")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    info = describe_preset(args.preset, args.duration, args.context_dim)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"mka preset '{info['preset']}'")
    table.add_column("component")
    table.add_column("parameters", justify="right")
    for name, count in info["parameters"].items():
        table.add_row(name, f"{count / 1e6:.2f} M")
    console = Console()
    console.print(table)
    console.print(
        f"{info['duration']:g} s -> mel {tuple(info['mel_shape'])} -> latent {tuple(info['latent_shape'])} "
        f"(generated {info['generated_seconds']:.3f} s, cropped to {info['output_samples']} samples)"
    )
    return 0


COMMANDS = [Command("info", "Parameter counts per component and latent shapes of a preset.", add_arguments, run)]
