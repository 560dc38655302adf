"""The parts every reference LatentDiffusion checkpoint shares: U-Net, VAE, scale factor, schedule.

mka's U-Net and VAE state-dict keys equal the reference's after the prefixes
``model.diffusion_model.`` and ``first_stage_model.`` are stripped, so these conversions are
prefix strips with a full key and shape check. The VAE's ``scale_factor`` is a 0-d buffer of
the VAE in mka; the reference keeps it at the top level (0-d, only with ``scale_by_std``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from mka_core.convert.accounting import Ledger
from mka_core.convert.common import build_filled, ignore_training_entries, schedule_from_buffers, take
from mka_core.diffusion.schedule import ScheduleConfig
from mka_core.errors import WeightsError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."


def convert_unet(state: Mapping[str, torch.Tensor], ledger: Ledger, config: Any, source: str):
    from mka_core.models.unet import UNet

    return build_filled(UNet, config, take(state, ledger, UNET_PREFIX, "unet"), "U-Net", source)


def convert_vae(state: Mapping[str, torch.Tensor], ledger: Ledger, config: Any, source: str) -> tuple[Any, str]:
    """The VAE with its scale factor; returns the model and where the factor came from."""
    from mka_core.models.vae import AutoencoderKL

    tensors = take(state, ledger, VAE_PREFIX, "vae")
    if "scale_factor" in state:
        factor = state["scale_factor"].detach().float()
        if factor.numel() != 1:
            raise WeightsError(f"{source}: scale_factor has shape {list(factor.shape)}, not a single number; the file is damaged.")
        value = float(factor.reshape(()))
        if not (math.isfinite(value) and value > 0):
            raise WeightsError(f"{source}: scale_factor is {value}, not a positive number; the file is damaged.")
        tensors["scale_factor"] = factor.reshape(())
        ledger.use("scale_factor", "vae:scale_factor")
        origin = f"checkpoint ({value:.6g})"
    else:
        # Without scale_by_std the reference's factor is the Python float 1.0, never saved.
        tensors["scale_factor"] = torch.tensor(1.0)
        origin = "1.0 (not in the checkpoint: the reference's default when scale_by_std is off)"
    return build_filled(AutoencoderKL, config, tensors, "VAE", source), origin


def convert_diffusion_parts(state: Mapping[str, torch.Tensor], ledger: Ledger, *, unet_config: Any, vae_config: Any,
                            schedule: ScheduleConfig, source: str) -> dict[str, Any]:
    """U-Net, VAE and schedule of one checkpoint, plus the explanation of its training-only keys."""
    ignore_training_entries(state, ledger)
    schedule_config, schedule_note = schedule_from_buffers(state, ledger, schedule, source)
    unet = convert_unet(state, ledger, unet_config, source)
    vae, scale_note = convert_vae(state, ledger, vae_config, source)
    return {"unet": unet, "vae": vae, "schedule": schedule_config,
            "notes": {"schedule": schedule_note, "scale_factor": scale_note}}
