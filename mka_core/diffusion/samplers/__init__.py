"""Samplers behind one small interface; ``get_sampler(name, **options)``."""

from __future__ import annotations

from typing import Any

from mka_core.diffusion.samplers.base import Sampler
from mka_core.diffusion.samplers.ddim import DDIMSampler
from mka_core.diffusion.samplers.dpm_solver import DPMSolverPP2M
from mka_core.errors import InputError

SAMPLERS: dict[str, type[Sampler]] = {"ddim": DDIMSampler, "dpm++2m": DPMSolverPP2M}


def get_sampler(name: str, **options: Any) -> Sampler:
    key = (name or "").strip().lower()
    if key not in SAMPLERS:
        raise InputError(f"Unknown sampler '{name}'; choose one of: {', '.join(SAMPLERS)}.")
    try:
        return SAMPLERS[key](**options)
    except TypeError as exc:
        raise InputError(f"Invalid options for sampler '{key}': {exc}") from exc


__all__ = ["Sampler", "DDIMSampler", "DPMSolverPP2M", "SAMPLERS", "get_sampler"]
