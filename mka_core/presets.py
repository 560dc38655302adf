"""Pipeline presets: ``base`` (the paper's sizes) and ``tiny`` (tests, CPU experiments).

``build_pipeline`` makes a randomly initialised pipeline: the start of a training run, and
the way tests and plugin authors get a complete offline model.
"""

from __future__ import annotations

from typing import Any

import torch

from mka_core.errors import InputError

PRESETS: dict[str, dict[str, Any]] = {
    # The paper / reference release: VAE ch 128 [1,2,2,4], U-Net 320 [1,2], BigVGAN 16 kHz.
    "base": {"vae": "base", "unet": "base", "vocoder": "bigvgan", "vocoder_preset": "base"},
    # Same architectures, small widths; Griffin-Lim needs no trained weights.
    "tiny": {"vae": "tiny", "unet": "tiny", "vocoder": "griffin-lim", "vocoder_preset": "tiny"},
}


def preset_spec(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise InputError(f"Unknown preset '{name}'; choose one of: {', '.join(PRESETS)}.")
    return PRESETS[name]


def build_vocoder(name: str, preset: str | None = None):
    from mka_core.plugins import manager

    cls = manager.get("vocoder", name)
    config_cls = cls.config_class
    config = config_cls.preset(preset) if preset and hasattr(config_cls, "preset") else config_cls()
    return cls(config)


def build_core_models(preset: str, context_dim: int):
    """Randomly initialised VAE and U-Net of a preset, the U-Net sized to the context width."""
    from mka_core.models.unet import UNet, UNetConfig
    from mka_core.models.vae import AutoencoderKL, VAEConfig

    spec = preset_spec(preset)
    vae = AutoencoderKL(VAEConfig.preset(spec["vae"]))
    # The U-Net denoises the VAE's latents: its channels come from the VAE contract.
    channels = vae.latent_channels
    unet_config = UNetConfig.preset(spec["unet"]).model_copy(
        update={"context_dim": context_dim, "in_channels": channels, "out_channels": channels})
    unet = UNet(UNetConfig.model_validate(unet_config.model_dump()))
    return vae, unet


def build_pipeline(
    preset: str = "tiny",
    cond: str = "bert",
    *,
    seed: int = 0,
    cond_options: dict[str, Any] | None = None,
    vocoder: str | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "float32",
):
    """A randomly initialised pipeline of ``preset`` driven by conditioner ``cond``.

    With the ``tiny`` preset the conditioner is a tiny random encoder too (nothing is
    downloaded); with ``base`` it loads its pretrained weights (``cond_options`` may point
    ``weights`` at a local folder).
    """
    from mka_core.pipeline import Pipeline, PipelineConfig
    from mka_core.plugins import manager

    spec = preset_spec(preset)
    cls = manager.get("conditioner", cond)
    torch.manual_seed(seed)
    options = dict(cond_options or {})
    conditioner = build_conditioner(cls, options, random=preset == "tiny" and "weights" not in options, seed=seed)
    torch.manual_seed(seed)
    vae, unet = build_core_models(preset, conditioner.space.dim)
    vocoder_name = vocoder or spec["vocoder"]
    voc = build_vocoder(vocoder_name, spec["vocoder_preset"] if vocoder is None else None)
    config = PipelineConfig(conditioner=cond, space=conditioner.space, vocoder=vocoder_name, origin=f"random:{preset}")
    return Pipeline(config, conditioner, vae, unet, voc, device=device, dtype=dtype)


def build_conditioner(cls: Any, options: dict[str, Any], *, random: bool, seed: int = 0):
    """``cls.build_random("tiny", seed, **options)`` or ``cls(options)``; options the plugin's model
    rejects are reported as that plugin's (which option, which plugin, which distribution)."""
    from pydantic import ValidationError

    from mka_core.plugins.faults import options_error, validate_options

    if not random:
        return cls(validate_options(cls, options, "conditioner"))
    try:
        return cls.build_random("tiny", seed, **options)
    except ValidationError as exc:
        if exc.title == getattr(cls.Options, "__name__", None):
            raise options_error(cls, exc, "conditioner") from exc
        raise


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def preset_parameter_counts(preset: str, context_dim: int = 1024) -> dict[str, int]:
    """Parameter counts per component, computed on the meta device (no memory, no time)."""
    from mka_core.plugins import manager

    spec = preset_spec(preset)
    with torch.device("meta"):
        vae, unet = build_core_models(preset, context_dim)
        vocoder_cls = manager.get("vocoder", spec["vocoder"])
        # A weight-free vocoder (Griffin-Lim) has nothing to count and computes buffers at build.
        vocoder = count_parameters(build_vocoder(spec["vocoder"], spec["vocoder_preset"])) if vocoder_cls.has_weights else 0
    return {"vae": count_parameters(vae), "unet": count_parameters(unet), "vocoder": vocoder}
