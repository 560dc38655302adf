"""Registers the built-in samplers through the plugin hook, like any third-party sampler."""

from __future__ import annotations

from mka_core.plugins.hookspecs import hookimpl


@hookimpl
def register_samplers(register):
    from mka_core.diffusion.samplers.consistency import ConsistencySampler
    from mka_core.diffusion.samplers.ddim import DDIMSampler
    from mka_core.diffusion.samplers.dpm_solver import DPMSolverPP2M

    register(DDIMSampler)
    register(DPMSolverPP2M)
    register(ConsistencySampler)
