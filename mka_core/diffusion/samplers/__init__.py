"""Samplers behind one small interface: ``get_sampler(name, **options).sample(...)``.

``ddim`` (eta, final_alpha) and ``dpm++2m`` (spacing); see :mod:`.base` for the shared
``sample`` signature (SDEdit starts, mask blending, per-sample generators, progress).
"""

from __future__ import annotations

from typing import Any

from mka_core.diffusion.samplers.base import Sampler
from mka_core.diffusion.samplers.ddim import DDIMSampler
from mka_core.diffusion.samplers.dpm_solver import DPMSolverPP2M
from mka_core.errors import InputError

SAMPLERS: dict[str, type[Sampler]] = {cls.name: cls for cls in (DDIMSampler, DPMSolverPP2M)}


def get_sampler(name: str, **options: Any) -> Sampler:
    """The sampler registered as ``name``, built with ``options`` (unknown options are an InputError)."""
    key = (name or "").strip().lower()
    if key not in SAMPLERS:
        raise InputError(f"Unknown sampler '{name}'; choose one of: {', '.join(SAMPLERS)}.")
    return SAMPLERS[key](**options)


__all__ = ["Sampler", "DDIMSampler", "DPMSolverPP2M", "SAMPLERS", "get_sampler"]
