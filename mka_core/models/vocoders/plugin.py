"""Registers the built-in vocoders through the plugin hook, like any third-party vocoder."""

from __future__ import annotations

from mka_core.plugins.hookspecs import hookimpl


@hookimpl
def register_vocoders(register):
    from mka_core.models.vocoders.bigvgan import BigVGANVocoder
    from mka_core.models.vocoders.griffinlim import GriffinLimVocoder
    from mka_core.models.vocoders.hifigan import HiFiGANVocoder

    register(BigVGANVocoder)
    register(HiFiGANVocoder)
    register(GriffinLimVocoder)
