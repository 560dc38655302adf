"""mka: any input to audio, after Make-An-Audio (Huang et al., ICML 2023).

The public API for users and plugin authors::

    from mka_core import Pipeline, GenerationRequest, Condition, Conditioner, EmbeddingSpace, Task, hookimpl
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Light imports only: `mka --version` must not pay for torch.
_LAZY = {
    "Pipeline": "mka_core.pipeline",
    "GenerationResult": "mka_core.pipeline",
    "GenerationRequest": "mka_core.request",
    "Condition": "mka_core.conditioning",
    "Conditioner": "mka_core.conditioning",
    "EmbeddingSpace": "mka_core.conditioning",
    "Task": "mka_core.tasks",
    "TaskRequest": "mka_core.tasks",
    "TaskOutput": "mka_core.tasks",
    "LatentAutoencoder": "mka_core.models.vae_contract",
    "VAEGeometry": "mka_core.models.vae_contract",
    "StrictModel": "mka_core.config",
    "MkaError": "mka_core.errors",
    "InputError": "mka_core.errors",
    "PluginError": "mka_core.errors",
    "hookimpl": "mka_core.plugins.hookspecs",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mka_core' has no attribute {name!r}")
