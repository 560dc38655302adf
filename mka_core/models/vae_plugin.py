"""Registers the built-in VAE through the plugin hook, like any third-party VAE."""

from __future__ import annotations

from mka_core.plugins.hookspecs import hookimpl


@hookimpl
def register_vaes(register):
    from mka_core.models.vae import AutoencoderKL

    register(AutoencoderKL)
