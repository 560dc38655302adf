"""Samplers behind one small interface: ``get_sampler(name, **options).sample(...)``.

Samplers are plugins: each is registered through the ``register_samplers`` hook (the built-in
``ddim``, ``dpm++2m`` and ``consistency`` too, see :mod:`.plugin`) and looked up by name in the
plugin registry, so a pip-installed distribution can add one. See :mod:`.base` for the shared
``sample`` signature (SDEdit starts, mask blending, per-sample generators, progress).
"""

from __future__ import annotations

from typing import Any

from mka_core.diffusion.samplers.base import Sampler
from mka_core.diffusion.samplers.consistency import ConsistencySampler
from mka_core.diffusion.samplers.ddim import DDIMSampler
from mka_core.diffusion.samplers.dpm_solver import DPMSolverPP2M
from mka_core.errors import InputError, PluginError


def sampler_names() -> list[str]:
    """The names of the installed samplers, sorted."""
    from mka_core.plugins import manager

    return manager.names("sampler")


def sampler_class(name: str) -> type[Sampler]:
    """The installed sampler class called ``name`` (case and surrounding spaces ignored)."""
    from mka_core.plugins import manager

    key = (name or "").strip().lower()
    registry = manager.registry()
    if key not in registry.items["sampler"] and ("sampler", key) not in registry.collisions:
        raise InputError(f"Unknown sampler '{name}'; choose one of: {', '.join(sampler_names()) or 'none'}.")
    registration = registry.get("sampler", key)  # a name two plugins claim is a PluginError naming both
    cls = registration.obj
    if not (isinstance(cls, type) and issubclass(cls, Sampler)):
        raise PluginError(f"The sampler '{key}' from '{registration.distribution}' is not a Sampler subclass; "
                          "fix or uninstall that distribution.")
    return cls


def get_sampler(name: str, **options: Any) -> Sampler:
    """The sampler registered as ``name``, built with ``options`` (unknown options are an InputError)."""
    return sampler_class(name)(**options)


__all__ = ["Sampler", "DDIMSampler", "DPMSolverPP2M", "ConsistencySampler", "get_sampler", "sampler_class",
           "sampler_names"]
