"""Generators of the rhythmic, struck classes: clock ticking, footsteps, knocking, drum hits.

Same contract as :mod:`training.data.synth.events_tonal`. Signatures: a clock is a strictly
periodic train of tiny, bright clicks (tick and a slightly different tock); footsteps are soft
low thuds each followed by a scuff, at a walking or running pace, all the way through; knocking
is a quick burst of 2-5 hollow wooden knocks, then silence, then another burst; drums are
pitched-down membrane strokes (kick, tom) and noisy snare/hi-hat strokes on a tempo grid.
"""

from __future__ import annotations

import numpy as np

from training.data.synth.dsp import (
    SAMPLE_RATE,
    bandpass,
    decay,
    highpass,
    lead_in,
    lowpass,
    overlap_add,
    white,
)
from training.data.synth.events_tonal import _level


def _modes(length: int, freqs: np.ndarray, taus: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum of exponentially decaying sinusoidal modes (a struck object); rows = strikes."""
    t = np.arange(length, dtype=np.float32) / SAMPLE_RATE
    freqs = np.atleast_2d(freqs).astype(np.float32)
    taus = np.atleast_2d(taus).astype(np.float32)
    weights = np.atleast_2d(weights).astype(np.float32)
    waves = np.sin(np.float32(2 * np.pi) * freqs[..., None] * t) * np.exp(-t / taus[..., None])
    return (weights[..., None] * waves).sum(axis=-2).astype(np.float32)


# --- clock ticking -----------------------------------------------------------------------------

def sample_clock_tick(rng: np.random.Generator) -> dict:
    rate = float(rng.choice([1.0, 2.0, 2.5, 3.0, 4.0], p=[0.35, 0.3, 0.1, 0.15, 0.1]) * rng.uniform(0.98, 1.02))
    ping = float(rng.uniform(1800.0, 5200.0))
    return {
        "rate_hz": rate, "ping_hz": ping, "tock_ratio": float(rng.uniform(0.7, 0.9)),
        "tock_gain": float(rng.uniform(0.5, 0.9)),
        "tags": {"rate": "slow" if rate < 1.5 else "fast" if rate > 2.8 else "",
                 "pitch": _level(ping, 1800.0, 5200.0, ("low", "mid", "high"))},
    }


def render_clock_tick(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    period = 1.0 / p["rate_hz"]
    onsets = np.arange(lead_in(rng, n, 0.02, period), n / SAMPLE_RATE - 0.01, period)
    count = len(onsets)
    length = int(0.03 * SAMPLE_RATE)
    tock = (np.arange(count) % 2).astype(np.float32)
    freqs = p["ping_hz"] * (1.0 - (1.0 - p["tock_ratio"]) * tock)
    modes = _modes(length, np.stack([freqs, freqs * 1.47], axis=1),
                   np.full((count, 2), 0.004), np.tile([1.0, 0.6], (count, 1)))
    click = white(rng, count * length).reshape(count, length) * decay(length, 0.0008)[None, :]
    gains = (1.0 - (1.0 - p["tock_gain"]) * tock)[:, None]
    grains = gains * (modes + 0.8 * click)
    out = overlap_add(n, (onsets * SAMPLE_RATE).astype(np.int64), grains.astype(np.float32))
    return highpass(out, 900.0, order=2)


# --- footsteps ---------------------------------------------------------------------------------

def sample_footsteps(rng: np.random.Generator) -> dict:
    pace = str(rng.choice(["walk", "run"], p=[0.75, 0.25]))
    rate = float(rng.uniform(1.5, 2.3) if pace == "walk" else rng.uniform(2.7, 3.6))
    surface = str(rng.choice(["hard", "wood", "gravel"]))
    weight = float(rng.uniform(0.0, 1.0))
    return {
        "pace": pace, "rate_hz": rate, "surface": surface, "weight": weight,
        "tags": {"pace": "slow" if rate < 1.75 else "fast" if pace == "walk" and rate > 2.05 else pace if pace == "run" else "",
                 "surface": surface, "weight": "heavy" if weight > 0.7 else "light" if weight < 0.3 else ""},
    }


def render_footsteps(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    period = 1.0 / p["rate_hz"]
    onsets = np.arange(lead_in(rng, n, 0.05, 0.4), n / SAMPLE_RATE - 0.05, period)
    onsets = onsets + rng.normal(0.0, 0.012, onsets.size)
    count = len(onsets)
    length = int(0.16 * SAMPLE_RATE)
    # Heel: a damped low thump; toe/scuff: a later, brighter burst of noise.
    thump_hz = (90.0 + 60.0 * (1.0 - p["weight"])) * rng.uniform(0.85, 1.15, count)
    thump = _modes(length, np.stack([thump_hz, thump_hz * 2.3], 1), np.full((count, 2), 0.018),
                   np.tile([1.0, 0.5], (count, 1)))
    noise = white(rng, count * length).reshape(count, length)
    heel_env = decay(length, 0.012, attack_seconds=0.002)
    toe_delay = int(rng.uniform(0.05, 0.08) * SAMPLE_RATE)
    toe_env = np.zeros(length, dtype=np.float32)
    toe_env[toe_delay:] = decay(length - toe_delay, 0.025 if p["surface"] != "gravel" else 0.05, 0.004)
    thump_gain = 1.5 + 1.5 * p["weight"]
    scuff = (0.7 if p["surface"] == "gravel" else 0.35) * noise * toe_env
    grains = thump_gain * thump + noise * heel_env * 0.6 + scuff
    left_right = np.where(np.arange(count) % 2 == 0, 1.0, rng.uniform(0.7, 0.9)).astype(np.float32)
    gains = (left_right * rng.uniform(0.85, 1.0, count)).astype(np.float32)[:, None]
    out = overlap_add(n, (onsets * SAMPLE_RATE).astype(np.int64), (gains * grains).astype(np.float32))
    if p["surface"] == "gravel":
        crunch = highpass(out, 1500.0, order=1) * 0.8
        return lowpass(out, 2500.0, order=1) + crunch
    cutoff = 1800.0 if p["surface"] == "wood" else 3500.0
    return lowpass(out, cutoff, order=2)


# --- knocking ----------------------------------------------------------------------------------

def sample_knocking(rng: np.random.Generator) -> dict:
    force = float(rng.uniform(0.0, 1.0))
    material = str(rng.choice(["wood", "metal"], p=[0.75, 0.25]))
    return {
        "material": material, "force": force, "knock_hz": float(rng.uniform(180.0, 420.0)),
        "per_burst": int(rng.integers(2, 6)), "rate_hz": float(rng.uniform(4.0, 8.0)),
        "pause_s": float(rng.uniform(0.9, 2.4)),
        "tags": {"force": "hard" if force > 0.66 else "gentle" if force < 0.33 else "", "material": material},
    }


def render_knocking(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    onsets, time = [], lead_in(rng, n, 0.05, 0.35)
    while True:  # at least one burst, however short the span
        count = max(2, p["per_burst"] + int(rng.integers(-1, 2)))
        for k in range(count):
            onsets.append(time + k / p["rate_hz"] * rng.uniform(0.95, 1.05))
        time = onsets[-1] + p["pause_s"] * rng.uniform(0.8, 1.3)
        if time >= n / SAMPLE_RATE - 0.15:
            break
    count = len(onsets)
    metal = p["material"] == "metal"
    length = int((0.25 if metal else 0.09) * SAMPLE_RATE)
    base = p["knock_hz"] * (2.2 if metal else 1.0) * rng.uniform(0.97, 1.03, count)
    ratios = np.array([1.0, 2.32, 3.87, 5.1])
    taus = np.array([0.05, 0.03, 0.02, 0.012]) * (3.5 if metal else 1.0)
    body = _modes(length, base[:, None] * ratios, np.tile(taus, (count, 1)), np.tile([1.0, 0.7, 0.45, 0.3], (count, 1)))
    click = white(rng, count * length).reshape(count, length) * decay(length, 0.0015)[None, :]
    strength = 0.5 + p["force"]
    grains = strength * (body + (0.6 + 0.8 * p["force"]) * click)
    gains = rng.uniform(0.8, 1.0, (count, 1)).astype(np.float32)
    return overlap_add(n, (np.asarray(onsets) * SAMPLE_RATE).astype(np.int64), (gains * grains).astype(np.float32))


# --- drum hits ---------------------------------------------------------------------------------

def sample_drums(rng: np.random.Generator) -> dict:
    style = str(rng.choice(["beat", "toms"], p=[0.65, 0.35]))
    tempo = float(rng.uniform(70.0, 160.0))
    return {
        "style": style, "tempo_bpm": tempo, "kick_hz": float(rng.uniform(45.0, 70.0)),
        "tom_hz": float(rng.uniform(90.0, 200.0)), "hats": bool(rng.uniform() < 0.7),
        "tags": {"tempo": "fast" if tempo > 130 else "slow" if tempo < 95 else "", "style": style},
    }


def _drum_grains(rng: np.random.Generator, voice: str, count: int, p: dict) -> np.ndarray:
    length = int(0.35 * SAMPLE_RATE)
    t = np.arange(length, dtype=np.float32) / SAMPLE_RATE
    if voice in ("kick", "tom"):
        base = (p["kick_hz"] if voice == "kick" else p["tom_hz"]) * rng.uniform(0.9, 1.15, (count, 1))
        sweep = 1.0 + (1.6 if voice == "kick" else 0.6) * np.exp(-t / 0.03)
        phase = np.cumsum(base.astype(np.float32) * sweep[None, :], axis=1) * np.float32(2 * np.pi / SAMPLE_RATE)
        tau = 0.12 if voice == "kick" else 0.2
        noise = white(rng, count * length).reshape(count, length) * decay(length, 0.004)[None, :]
        return (np.sin(phase) * decay(length, tau, 0.001)[None, :] + 0.3 * noise).astype(np.float32)
    noise = white(rng, count * length).reshape(count, length)
    if voice == "snare":
        tone = np.sin(np.float32(2 * np.pi * 190.0) * t) * decay(length, 0.05)
        return (0.7 * noise * decay(length, 0.07, 0.001)[None, :] + tone[None, :]).astype(np.float32)
    return (0.35 * noise * decay(length, 0.018)[None, :]).astype(np.float32)  # hi-hat


def render_drums(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    step = 60.0 / p["tempo_bpm"] / 2.0  # eighth notes
    start = lead_in(rng, n, 0.02, 0.3)
    grid = np.arange(start, n / SAMPLE_RATE - 0.05, step)
    slots = np.arange(grid.size)
    hits: dict[str, np.ndarray] = {}
    if p["style"] == "beat":
        bar = slots % 8
        hits["kick"] = grid[(bar == 0) | (bar == 4) | ((bar == 5) & (rng.uniform() < 0.5))]
        hits["snare"] = grid[(bar == 2) | (bar == 6)]
        if p["hats"]:
            hits["hat"] = grid
    else:
        chosen = grid[(slots % 2 == 0) | (rng.uniform(size=grid.size) < 0.3)]
        which = rng.uniform(size=chosen.size) < 0.3
        hits["kick"], hits["tom"] = chosen[which], chosen[~which]
    out = np.zeros(n, dtype=np.float32)
    for voice, times in hits.items():
        if times.size == 0:
            continue
        grains = _drum_grains(rng, voice, times.size, p) * rng.uniform(0.8, 1.0, (times.size, 1)).astype(np.float32)
        voice_out = overlap_add(n, (times * SAMPLE_RATE).astype(np.int64), grains)
        if voice == "snare":
            voice_out = bandpass(voice_out, 150.0, 6000.0, order=1)
        elif voice == "hat":
            voice_out = highpass(voice_out, 6000.0, order=2)
        out += voice_out
    return out
