"""Registers the built-in training targets through the same hook a plugin uses."""

from __future__ import annotations

import importlib

from mka_core.plugins.hookspecs import hookimpl

# module -> class name; each module holds one target.
BUILTIN_TARGETS = {
    "training.targets.vae": "VAETarget",
    "training.targets.diffusion": "DiffusionTarget",
    "training.targets.inpaint": "InpaintTarget",
    "training.targets.vocoder": "VocoderTarget",
    "training.targets.conditioner": "ConditionerTarget",
    "training.targets.distill": "DistillTarget",
    "training.targets.light_decoder": "LightDecoderTarget",
}


@hookimpl
def register_trainers(register):
    for module_name, class_name in BUILTIN_TARGETS.items():
        register(getattr(importlib.import_module(module_name), class_name))
