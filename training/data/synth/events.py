"""The sound-event classes of the synthetic corpus, in a fixed order.

``CLASSES`` is the list of class names (the labels written to manifests and classes.json);
``EVENT_CLASSES[name]`` holds the class's parameter sampler and renderer. The order is part of
the corpus format: adding a class appends to it and bumps ``SYNTH_VERSION``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mka_core.errors import InputError
from training.data.synth import events_percussive as percussive
from training.data.synth import events_textures as textures
from training.data.synth import events_tonal as tonal

Sampler = Callable[[np.random.Generator], dict]
Renderer = Callable[[np.random.Generator, int, dict], np.ndarray]


@dataclass(frozen=True)
class EventClass:
    name: str
    description: str
    sample: Sampler
    render: Renderer


_TABLE = [
    ("siren", "an emergency siren: a harmonic tone sweeping up and down (wail, yelp or two-tone)",
     tonal.sample_siren, tonal.render_siren),
    ("dog_bark", "a dog barking: short harsh bursts with a falling pitch, alone or in quick series",
     tonal.sample_dog_bark, tonal.render_dog_bark),
    ("bell", "a struck bell: inharmonic partials ringing out, struck every one to three seconds",
     tonal.sample_bell, tonal.render_bell),
    ("clock_tick", "a clock ticking: tiny bright clicks in a strict tick-tock rhythm",
     percussive.sample_clock_tick, percussive.render_clock_tick),
    ("rain", "rain: a steady bright hiss sprinkled with droplet clicks, light to heavy",
     textures.sample_rain, textures.render_rain),
    ("wind", "wind: dark rushing noise rising and falling in gusts, sometimes howling",
     textures.sample_wind, textures.render_wind),
    ("engine", "an engine humming: a steady stack of low harmonics, idling, steady or revving",
     tonal.sample_engine, tonal.render_engine),
    ("footsteps", "footsteps: thud-and-scuff steps at a walking or running pace on a hard, wooden or gravel floor",
     percussive.sample_footsteps, percussive.render_footsteps),
    ("birds", "birds chirping: fast high-pitched frequency sweeps in trills",
     tonal.sample_birds, tonal.render_birds),
    ("thunder", "thunder: a sudden deep rumble that rolls away over seconds, with a crack when close",
     textures.sample_thunder, textures.render_thunder),
    ("knocking", "knocking: bursts of two to five hollow knocks on a wooden or metal door",
     percussive.sample_knocking, percussive.render_knocking),
    ("whistle", "whistling: a nearly pure high tone, a whistled tune or rising-falling wolf whistles",
     tonal.sample_whistle, tonal.render_whistle),
    ("applause", "applause: a crackle of many hand claps from a small group or a large crowd",
     textures.sample_applause, textures.render_applause),
    ("dripping", "water dripping: sparse drops, each a short rising 'plip'",
     tonal.sample_dripping, tonal.render_dripping),
    ("alarm", "alarm beeps: a fixed-pitch electronic buzzer beeping in a strict rhythm",
     tonal.sample_alarm, tonal.render_alarm),
    ("drums", "drum hits: kick, snare and hi-hat in a beat, or loose tom hits",
     percussive.sample_drums, percussive.render_drums),
]

EVENT_CLASSES: dict[str, EventClass] = {name: EventClass(name, text, s, r) for name, text, s, r in _TABLE}
#: The class names in their fixed order.
CLASSES: list[str] = [name for name, *_ in _TABLE]


def event_class(name: str) -> EventClass:
    """The class called ``name``; an unknown name is an :class:`InputError` listing the valid ones."""
    try:
        return EVENT_CLASSES[name]
    except KeyError:
        raise InputError(f"Unknown sound class {name!r}; choose from {', '.join(CLASSES)}.") from None
