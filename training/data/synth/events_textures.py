"""Generators of the noise-texture classes: rain, wind, applause, thunder.

Same contract as :mod:`training.data.synth.events_tonal`. Signatures: rain is a steady bright
hiss (most energy from 2 kHz up) sprinkled with tiny droplet clicks; wind is dark low-passed
noise that swells and fades in slow gusts, sometimes with a faint howl; applause is a dense
crackle of mid-band hand claps under a rise-and-fall crowd envelope; thunder is a deep rumble
below a few hundred hertz that starts suddenly (a bright crack when close, a muffled boom when
far) and rolls off over seconds.
"""

from __future__ import annotations

import numpy as np

from training.data.synth.dsp import (
    SAMPLE_RATE,
    bandpass,
    decay,
    fade,
    highpass,
    lead_in,
    lowpass,
    normalise,
    overlap_add,
    shaped_noise,
    slow_curve,
    white,
)

# --- rain --------------------------------------------------------------------------------------

def sample_rain(rng: np.random.Generator) -> dict:
    intensity = float(rng.uniform(0.0, 1.0))
    return {
        "intensity": intensity, "brightness_hz": float(rng.uniform(2500.0, 5000.0)),
        "drops_per_s": float(40.0 + 360.0 * intensity),
        "tags": {"intensity": "heavy" if intensity > 0.66 else "light" if intensity < 0.33 else ""},
    }


def render_rain(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    centre = p["brightness_hz"]
    # The hiss: a broad hump around the brightness frequency that falls off steeply below it.
    hiss = shaped_noise(rng, n, lambda f: (f / centre) ** 3 / (1.0 + (f / centre) ** 4))
    count = int(p["drops_per_s"] * n / SAMPLE_RATE)
    length = int(0.004 * SAMPLE_RATE)
    clicks = white(rng, count * length).reshape(count, length) * decay(length, 0.0007)[None, :]
    gains = rng.uniform(0.2, 1.0, (count, 1)).astype(np.float32) ** 2
    starts = rng.integers(0, n, count)
    drops = highpass(overlap_add(n, starts, (gains * clicks).astype(np.float32)), 2500.0, order=2)
    swell = 1.0 + 0.15 * (slow_curve(rng, n, 0.5) - 0.5)
    mix = hiss + (0.6 - 0.3 * p["intensity"]) * normalise(drops)
    return fade((swell * mix).astype(np.float32), 0.3, 0.3)


# --- wind --------------------------------------------------------------------------------------

def sample_wind(rng: np.random.Generator) -> dict:
    strength = float(rng.uniform(0.0, 1.0))
    return {
        "strength": strength, "cutoff_hz": float(600.0 + 800.0 * strength * rng.uniform(0.7, 1.0)),
        "gust_rate": float(rng.uniform(0.35, 0.9)), "howl": float(rng.uniform(0.0, 0.35)) if strength > 0.5 else 0.0,
        "howl_hz": float(rng.uniform(350.0, 800.0)),
        "tags": {"strength": "strong" if strength > 0.66 else "gentle" if strength < 0.33 else "",
                 "howl": "howling" if strength > 0.5 else ""},
    }


def render_wind(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    cutoff = p["cutoff_hz"]
    body = shaped_noise(rng, n, lambda f: 1.0 / (1.0 + (f / cutoff) ** 2.5))
    # A brighter rush that only comes up at the peak of a gust.
    rush = shaped_noise(rng, n, lambda f: (f / (2.5 * cutoff)) / (1.0 + (f / (2.5 * cutoff)) ** 3))
    # Gusts: a slow envelope with deep swings; a strong wind never quite drops to calm.
    floor = 0.05 + 0.15 * p["strength"]
    gusts = floor + (1.0 - floor) * slow_curve(rng, n, p["gust_rate"]) ** 2
    out = gusts * body + 0.6 * gusts ** 3 * rush
    if p["howl"] > 0:
        whistle = bandpass(white(rng, n), p["howl_hz"] * 0.93, p["howl_hz"] * 1.07, order=2)
        out = out + p["howl"] * normalise(whistle) * gusts ** 2
    return fade(out.astype(np.float32), 0.5, 0.5)


# --- applause ----------------------------------------------------------------------------------

def sample_applause(rng: np.random.Generator) -> dict:
    crowd = float(rng.uniform(0.0, 1.0))
    return {
        "crowd": crowd, "claps_per_s": float(20.0 + 260.0 * crowd ** 1.5), "centre_hz": float(rng.uniform(900.0, 2000.0)),
        "shape": str(rng.choice(["swell", "steady", "fade"])),
        "tags": {"crowd": "large" if crowd > 0.6 else "small" if crowd < 0.25 else "",
                 "energy": "enthusiastic" if crowd > 0.8 else ""},
    }


def render_applause(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    count = int(p["claps_per_s"] * n / SAMPLE_RATE)
    length = int(0.012 * SAMPLE_RATE)
    claps = white(rng, count * length).reshape(count, length) * decay(length, 0.0022, 0.0005)[None, :]
    gains = rng.uniform(0.2, 1.0, (count, 1)).astype(np.float32) ** 2
    if p["crowd"] < 0.25:  # a few people: claps keep a rough common rhythm
        clap_rate = rng.uniform(3.5, 5.0)
        beats = np.arange(rng.uniform(0.0, 0.2), n / SAMPLE_RATE, 1.0 / clap_rate)
        starts = (rng.choice(beats, count) + rng.normal(0.0, 0.03, count)) * SAMPLE_RATE
        starts = np.clip(starts, 0, n - 1).astype(np.int64)
    else:
        starts = rng.integers(0, n, count)
    raw = overlap_add(n, starts, (gains * claps).astype(np.float32))
    out = bandpass(raw, p["centre_hz"] * 0.5, min(6000.0, p["centre_hz"] * 2.2), order=2)
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)
    envelope = {"swell": np.minimum(1.0, t / 0.25) * np.minimum(1.0, (1.0 - t) / 0.2 + 0.2),
                "steady": np.ones_like(t), "fade": 1.0 - 0.7 * t}[p["shape"]]
    envelope = envelope * (1.0 + 0.2 * (slow_curve(rng, n, 1.5) - 0.5))
    return fade((envelope * out).astype(np.float32), 0.15, 0.3)


# --- thunder -----------------------------------------------------------------------------------

def sample_thunder(rng: np.random.Generator) -> dict:
    distance = float(rng.uniform(0.0, 1.0))
    return {
        "distance": distance, "rumble_hz": float(rng.uniform(110.0, 220.0) * (1.2 - 0.5 * distance)),
        "decay_s": float(rng.uniform(1.2, 3.0)), "claps": int(rng.choice([1, 2], p=[0.6, 0.4])),
        "tags": {"distance": "distant" if distance > 0.6 else "close" if distance < 0.3 else "",
                 "intensity": "loud" if distance < 0.3 else ""},
    }


def render_thunder(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    seconds = n / SAMPLE_RATE
    first = lead_in(rng, n, 0.05, min(1.2, 0.3 * seconds))
    onsets = [first]
    if p["claps"] == 2 and seconds - first > 4.0:
        onsets.append(rng.uniform(first + 2.5, seconds - 1.5))
    rumble_hz = p["rumble_hz"]
    # Most energy below a couple of hundred hertz, with a gentle slope so the roar reaches ~1 kHz.
    rumble = shaped_noise(rng, n, lambda f: 1.0 / (1.0 + (f / rumble_hz) ** 2))
    envelope = np.zeros(n, dtype=np.float32)
    crack = np.zeros(n, dtype=np.float32)
    for k, onset in enumerate(onsets):
        start = int(onset * SAMPLE_RATE)
        remaining = n - start
        # The roll: several overlapping swells that fade out over the decay time.
        rolls = decay(remaining, p["decay_s"], attack_seconds=0.02 + 0.08 * p["distance"])
        # Rolling: the rumble flutters as echoes from near and far clouds arrive.
        rolls = rolls * (0.35 + 0.65 * slow_curve(rng, remaining, 6.0) ** 2)
        envelope[start:] += rolls * (1.0 if k == 0 else rng.uniform(0.5, 0.9))
        # Every clap starts with a burst: a bright crack when close, a muffled boom far away.
        length = min(remaining, int(0.35 * SAMPLE_RATE))
        crack[start:start + length] += white(rng, length) * decay(length, 0.06 + 0.1 * p["distance"], 0.002)
    gain = 1.5 * (1.0 - 0.5 * p["distance"])
    out = envelope * rumble + gain * lowpass(crack, 4000.0 - 3100.0 * p["distance"], order=2)
    return out.astype(np.float32)
