"""Clips: one event or a composition of two, in a room, over background noise, at a loudness.

A :class:`ClipSpec` says *what* a clip holds (classes, composition mode, duration); a seed
fixes *how* (every parameter, every random sample). :func:`render_clip` turns the pair into a
waveform, and the corpus writes exactly that waveform, so any corpus clip can be re-made from
its manifest row (its ``labels``, ``mode``, ``duration`` and ``seed`` columns).

Compositions:

* ``single``: one class fills the clip;
* ``then``: the first class, then the second (split near the middle, with a short pause);
* ``while``: both at once, at similar levels;
* ``background``: the first class in front, the second 10-18 dB quieter behind it.

The seed is split into independent streams for the scene parameters, the audio and the
caption, so the caption's wording never changes the sound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from mka_core.errors import InputError
from training.data.synth.dsp import (
    SAMPLE_RATE,
    active_level,
    colour_gain,
    db,
    decay,
    fade,
    lowpass,
    noise_spectrum,
    shaped_noise,
    white,
)
from training.data.synth.events import CLASSES, event_class

MODES = ("single", "then", "while", "background")
MIN_SECONDS, MAX_SECONDS = 1.0, 30.0


@dataclass(frozen=True)
class ClipSpec:
    """What one clip holds: ``classes`` (one for ``single``, two distinct otherwise), the mode, seconds."""

    classes: tuple[str, ...]
    mode: str = "single"
    duration: float = 8.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if not self.classes:
            raise InputError("A clip needs at least one sound class; name one from the class list.")
        for name in self.classes:
            event_class(name)  # unknown names -> InputError
        if self.mode not in MODES:
            raise InputError(f"Unknown composition mode {self.mode!r}; choose from {', '.join(MODES)}.")
        wanted = 1 if self.mode == "single" else 2
        if len(self.classes) != wanted or len(set(self.classes)) != wanted:
            raise InputError(f"A {self.mode!r} clip needs {wanted} distinct class(es), got {list(self.classes)}.")
        if not (MIN_SECONDS <= float(self.duration) <= MAX_SECONDS):
            raise InputError(f"A clip lasts {MIN_SECONDS:g} to {MAX_SECONDS:g} seconds, got {self.duration}.")

    @property
    def samples(self) -> int:
        return round(float(self.duration) * SAMPLE_RATE)

    @classmethod
    def coerce(cls, spec: ClipSpec | str | dict | list | tuple) -> ClipSpec:
        """Accept a ClipSpec, a class name (``"bell"``), a labels string (``"bell;rain"``), a list
        of names, or a dict with ``classes`` (or ``class``/``labels``), ``mode`` and ``duration``.
        Two classes without a mode play at once (``while``)."""
        if isinstance(spec, ClipSpec):
            return spec
        if isinstance(spec, str):
            names = tuple(part.strip() for part in spec.split(";") if part.strip())
            return cls(names, "single" if len(names) == 1 else "while")
        if isinstance(spec, dict):
            keys = [key for key in ("classes", "class", "labels") if key in spec]
            unknown = set(spec) - {"classes", "class", "labels", "mode", "duration"}
            if unknown or len(keys) != 1:
                raise InputError("A clip spec dict takes 'classes' (a name or a list), and optionally 'mode' and "
                                 f"'duration'; got the keys {', '.join(sorted(spec)) or 'none'}.")
            classes = spec[keys[0]]
            if isinstance(classes, str):
                classes = tuple(part.strip() for part in classes.split(";") if part.strip())
            classes = tuple(classes)
            mode = spec.get("mode") or ("single" if len(classes) == 1 else "while")
            try:
                duration = float(spec.get("duration", 8.0))
            except (TypeError, ValueError):
                raise InputError(f"A clip's duration is a number of seconds, got {spec.get('duration')!r}.") from None
            return cls(classes, mode, duration)
        if isinstance(spec, (list, tuple)):
            return cls(tuple(spec), "single" if len(spec) == 1 else "while")
        raise InputError(f"A clip spec is a class name, a list of names, a dict or a ClipSpec, not {type(spec).__name__}.")


@dataclass
class Placement:
    """One event of a scene: its class, parameters, span in samples and level relative to the lead."""

    name: str
    params: dict
    start: int
    stop: int
    gain_db: float
    role: str  # "lead", "second" (then/while) or "background"


@dataclass
class Scene:
    """Every decision about a clip, drawn from the seed before any audio is made."""

    spec: ClipSpec
    events: list[Placement]
    room: dict
    noise: dict
    loudness_db: float
    tags: dict = field(default_factory=dict)


def streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent generators for (scene parameters, audio, caption) from one seed."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"A clip seed is a whole number of 0 or more, got {seed!r}.")
    children = np.random.SeedSequence(int(seed)).spawn(3)
    return tuple(np.random.default_rng(child) for child in children)  # type: ignore[return-value]


def sample_scene(spec: ClipSpec, rng: np.random.Generator) -> Scene:
    n = spec.samples
    lead, *rest = spec.classes
    lead_params = event_class(lead).sample(rng)
    events = [Placement(lead, lead_params, 0, n, 0.0, "lead")]
    if spec.mode == "then":
        split = int(n * rng.uniform(0.42, 0.58))
        pause = int(rng.uniform(0.1, 0.4) * min(1.0, spec.duration / 8.0) * SAMPLE_RATE)
        events[0].stop = split
        events.append(Placement(rest[0], event_class(rest[0]).sample(rng), min(n - 1, split + pause), n,
                                float(rng.uniform(-3.0, 3.0)), "second"))
    elif spec.mode == "while":
        events.append(Placement(rest[0], event_class(rest[0]).sample(rng), 0, n, float(rng.uniform(-4.0, 2.0)), "second"))
    elif spec.mode == "background":
        events.append(Placement(rest[0], event_class(rest[0]).sample(rng), 0, n, float(rng.uniform(-18.0, -10.0)),
                                "background"))
    room_kind = str(rng.choice(["dry", "room", "hall"], p=[0.45, 0.35, 0.2]))
    room = {"kind": room_kind, "rt60": 0.0, "wet": 0.0}
    if room_kind == "room":
        room.update(rt60=float(rng.uniform(0.2, 0.45)), wet=float(rng.uniform(0.12, 0.3)))
    elif room_kind == "hall":
        room.update(rt60=float(rng.uniform(0.8, 1.6)), wet=float(rng.uniform(0.25, 0.45)))
    noise = {"snr_db": float(rng.uniform(14.0, 45.0)), "colour": str(rng.choice(["white", "pink", "brown"]))}
    loudness = float(rng.uniform(-30.0, -12.0))
    tags = {"room": room_kind if room_kind != "dry" else "",
            "noise": "noisy" if noise["snr_db"] < 20.0 else "",
            "loudness": "loud" if loudness > -16.0 else "quiet" if loudness < -26.0 else ""}
    return Scene(spec, events, room, noise, loudness, tags)


def _room_response(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A synthetic impulse response: decaying noise whose highs die faster (air and walls absorb them)."""
    length = int(min(rt60, 1.2) * SAMPLE_RATE)
    tail = white(rng, length)
    bright = tail * decay(length, rt60 / 6.9 * 0.55)
    dark = lowpass(tail, 1500.0, order=1) * decay(length, rt60 / 6.9)
    response = bright + 2.0 * dark
    response[: int(0.005 * SAMPLE_RATE)] = 0.0  # pre-delay: the first reflection arrives a little late
    return response / np.float32(np.sqrt(np.sum(np.square(response, dtype=np.float64))) + 1e-9)


def _room_and_noise(scene: Scene, mix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add the room's reverberation and the background noise in one pass in the frequency domain.

    With a unit-energy impulse response the reverberant part has about the dry part's power, so
    ``wet`` is its level relative to the dry sound. The noise is set against the dry sound's
    active level (reverberation barely moves it).
    """
    n = mix.size
    level = active_level(mix)
    noise_gain = level * db(-scene.noise["snr_db"])
    if scene.room["kind"] == "dry":
        return mix + shaped_noise(rng, n, colour_gain(scene.noise["colour"])) * np.float32(noise_gain)
    response = _room_response(rng, scene.room["rt60"])
    size = scipy.fft.next_fast_len(n + response.size - 1, real=True)
    spectrum = scipy.fft.rfft(mix, n=size)
    spectrum *= 1.0 + np.float32(scene.room["wet"]) * scipy.fft.rfft(response, n=size)
    spectrum += noise_spectrum(rng, size, colour_gain(scene.noise["colour"]), noise_gain)
    return scipy.fft.irfft(spectrum, n=size)[:n].astype(np.float32)


def render_scene(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    n = scene.spec.samples
    mix = np.zeros(n, dtype=np.float32)
    for event in scene.events:
        length = event.stop - event.start
        if length <= 0:
            continue
        wave = event_class(event.name).render(rng, length, event.params)
        if scene.spec.mode == "then":
            wave = fade(wave, 0.0 if event.role == "lead" else 0.03, 0.15 if event.role == "lead" else 0.05)
        level = active_level(wave)
        if level > 1e-8:
            mix[event.start:event.stop] += wave * np.float32(db(event.gain_db) / level)
    mix = _room_and_noise(scene, mix, rng)
    mix *= np.float32(db(scene.loudness_db) / max(active_level(mix), 1e-9))
    peak = float(np.max(np.abs(mix)))
    if peak > 0.97:  # a loud, peaky clip is turned down rather than clipped
        mix *= np.float32(0.97 / peak)
    return mix.astype(np.float32)


def render_clip(spec: ClipSpec | str | dict | list | tuple, seed: int) -> np.ndarray:
    """The waveform (float32, mono, 16 kHz, in [-1, 1]) of ``spec`` drawn with ``seed``.

    ``spec`` may be a class name (``"bell"``: a single 8 s clip), a list of names, a dict
    (``{"classes": ["bell", "rain"], "mode": "background", "duration": 6}``) or a
    :class:`ClipSpec`. The same spec and seed always give the same samples.
    """
    spec = ClipSpec.coerce(spec)
    scene_rng, audio_rng, _ = streams(seed)
    return render_scene(sample_scene(spec, scene_rng), audio_rng)


__all__ = ["CLASSES", "MODES", "ClipSpec", "Scene", "render_clip", "render_scene", "sample_scene", "streams"]
