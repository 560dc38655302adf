"""Generators of the pitched event classes: siren, whistle, alarm, engine, bell, birds, dripping, bark.

Each class is a pair ``sample_<name>(rng) -> params`` and ``render_<name>(rng, n, params) ->
waveform``. ``params`` is JSON-friendly: numbers that drive the synthesis plus ``tags``, the
words a caption may use (pitch, rate, size...). The tags are derived from the numbers, so a
caption saying "high-pitched" always comes with a high pitch. Renderers return float32 of
exactly ``n`` samples at an arbitrary level; the scene normalises loudness.

Every class keeps one signature that survives all its variations (what a mel-spectrogram
classifier keys on): the siren is a continuous harmonic tone whose pitch sweeps; the whistle a
nearly pure tone in notes and glides; the alarm fixed-pitch square-wave beeps in a strict
rhythm; the engine a steady stack of low harmonics; the bell struck inharmonic partials with a
long decay; birds fast high frequency sweeps in trills; drips sparse rising "plip" chirps in
the low kHz; barks short, loud, harmonic-plus-noise bursts with a falling pitch.
"""

from __future__ import annotations

import numpy as np

from training.data.synth.dsp import (
    SAMPLE_RATE,
    bandpass,
    decay,
    fade,
    gate,
    harmonic_tone,
    highpass,
    lead_in,
    lowpass,
    moving_average,
    overlap_add,
    slow_curve,
    white,
)


def _level(value: float, low: float, high: float, names: tuple[str, str, str]) -> str:
    """Name a value by where it falls in [low, high]: the lower, middle or upper third."""
    position = (value - low) / (high - low)
    return names[0] if position < 1 / 3 else names[2] if position > 2 / 3 else names[1]


def _starts(rng: np.random.Generator, n: int, first: tuple[float, float], gap: tuple[float, float],
            jitter: float = 0.0) -> np.ndarray:
    """Onsets in samples: the first within ``first`` seconds, then ``gap`` apart (+- jitter)."""
    onsets = [lead_in(rng, n, *first)]
    step = rng.uniform(*gap)
    seconds = n / SAMPLE_RATE
    while True:
        nxt = onsets[-1] + step * (1.0 + rng.uniform(-jitter, jitter))
        if nxt >= seconds - 0.05:
            break
        onsets.append(nxt)
    return (np.asarray(onsets) * SAMPLE_RATE).astype(np.int64)


# --- siren -------------------------------------------------------------------------------------

def sample_siren(rng: np.random.Generator) -> dict:
    style = str(rng.choice(["wail", "yelp", "hilo"], p=[0.45, 0.25, 0.3]))
    base = float(rng.uniform(450.0, 1000.0))
    period = {"wail": rng.uniform(1.8, 4.5), "yelp": rng.uniform(0.25, 0.5), "hilo": rng.uniform(0.8, 2.0)}[style]
    return {
        "style": style, "base_hz": base, "ratio": float(rng.uniform(1.35, 1.9)), "period_s": float(period),
        "brightness": float(rng.uniform(0.35, 0.8)),
        "tags": {"pitch": _level(base, 450.0, 1000.0, ("low", "mid", "high")), "style": style},
    }


def render_siren(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    cycle = (t / p["period_s"] + rng.uniform()) % 1.0
    if p["style"] == "hilo":
        # Two alternating tones with a short glide between them.
        shape = np.clip((np.abs(cycle - 0.5) * 2.0 - 0.47) * 16.0 + 0.5, 0.0, 1.0)
    else:
        # Wail and yelp are the same smooth up-and-down sweep, slow or fast; no jumps, so no clicks.
        shape = 0.5 - 0.5 * np.cos(2.0 * np.pi * cycle)
    freq = p["base_hz"] * (1.0 + (p["ratio"] - 1.0) * shape)
    amps = [p["brightness"] ** k for k in range(6)]
    return fade(harmonic_tone(freq.astype(np.float32), amps), 0.15, 0.2)


# --- whistle -----------------------------------------------------------------------------------

def sample_whistle(rng: np.random.Generator) -> dict:
    style = str(rng.choice(["tune", "glide"], p=[0.7, 0.3]))
    centre = float(rng.uniform(900.0, 2300.0))
    return {
        "style": style, "centre_hz": centre, "note_s": float(rng.uniform(0.14, 0.45)),
        "vibrato": float(rng.uniform(0.0, 0.025)), "breath": float(rng.uniform(0.02, 0.12)),
        "tags": {"pitch": _level(centre, 900.0, 2300.0, ("low", "mid", "high")), "style": style},
    }


def render_whistle(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    seconds = n / SAMPLE_RATE
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    if p["style"] == "tune":
        # A melody on a pentatonic scale around the centre pitch, phrases separated by breaths.
        steps = np.array([0, 2, 4, 7, 9, 12, -3, -5])
        count = int(seconds / p["note_s"]) + 2
        pitches = p["centre_hz"] * 2.0 ** (rng.choice(steps, count) / 12.0)
        index = np.minimum((t / p["note_s"]).astype(np.int64), count - 1)
        # Glide between notes: smooth the step curve with a ~30 ms moving average.
        track = moving_average(pitches[index], 480)
        track[:240], track[-240:] = track[240], track[-241]
        phrase = int(rng.integers(4, 9)) * p["note_s"]
        breath_gap = rng.uniform(0.25, 0.6)
        on = ((t % (phrase + breath_gap)) < phrase).astype(np.float32)
        env = moving_average(on, 320)
    else:
        # "Wolf whistles": a rising glide then a falling one, repeated.
        length = rng.uniform(0.9, 1.5)
        starts = _starts(rng, n, (0.1, 0.4), (length + 0.5, length + 1.8))
        track = np.full(n, p["centre_hz"], dtype=np.float32)
        env = np.zeros(n, dtype=np.float32)
        grain_t = np.arange(int(length * SAMPLE_RATE), dtype=np.float32) / SAMPLE_RATE
        rise = np.clip(grain_t / (0.35 * length), 0, 1)
        fall = np.clip((grain_t - 0.5 * length) / (0.5 * length), 0, 1)
        shape = p["centre_hz"] * (0.7 + 0.7 * rise - 0.8 * fall ** 1.5)
        window = np.sin(np.pi * np.clip(grain_t / length, 0, 1)) ** 0.5
        for start in starts:
            stop = min(n, start + grain_t.size)
            track[start:stop] = shape[: stop - start]
            env[start:stop] = np.maximum(env[start:stop], window[: stop - start])
    vibrato = 1.0 + p["vibrato"] * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t)
    tone = harmonic_tone((track * vibrato).astype(np.float32), [1.0, 0.08])
    breath = bandpass(white(rng, n), 0.8 * p["centre_hz"], 1.6 * p["centre_hz"], order=1)
    return (env * (tone + p["breath"] * 3.0 * breath)).astype(np.float32)


# --- alarm beeps -------------------------------------------------------------------------------

def sample_alarm(rng: np.random.Generator) -> dict:
    style = str(rng.choice(["steady", "groups", "two_tone"], p=[0.45, 0.35, 0.2]))
    # Up to 2.4 kHz so the square wave keeps its third harmonic: a buzzer, not a whistle.
    freq = float(rng.uniform(900.0, 2400.0))
    period = float(rng.uniform(0.18, 1.0))
    return {
        "style": style, "freq_hz": freq, "period_s": period, "duty": float(rng.uniform(0.3, 0.55)),
        "tags": {"pitch": _level(freq, 900.0, 2400.0, ("low", "mid", "high")),
                 "rate": "fast" if period < 0.35 else "slow" if period > 0.7 else "", "style": style},
    }


def render_alarm(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    period, seconds = p["period_s"], n / SAMPLE_RATE
    onsets = np.arange(lead_in(rng, n, 0.05, 0.3), seconds, period)
    if p["style"] == "groups":  # beep-beep-beep, pause (like a smoke detector)
        group = int(rng.integers(3, 5))
        onsets = np.concatenate([np.arange(start, start + group * period, period)
                                 for start in np.arange(onsets[0], seconds, (group + 2) * period)])
        onsets = onsets[onsets < seconds]
    starts = (onsets * SAMPLE_RATE).astype(np.int64)
    lengths = np.full(starts.shape, int(p["duty"] * period * SAMPLE_RATE))
    env = gate(n, starts, lengths, ramp_seconds=0.003)
    freq = np.full(n, p["freq_hz"], dtype=np.float32)
    if p["style"] == "two_tone":
        alternate = np.zeros(n, dtype=np.float32)
        for k, start in enumerate(starts):
            if k % 2:
                alternate[start:start + lengths[k] + int(0.01 * SAMPLE_RATE)] = 1.0
        freq *= 1.0 + 0.26 * alternate
    square = [1.0, 0.0, 1 / 3, 0.0, 1 / 5, 0.0, 1 / 7]  # odd harmonics: an electronic buzzer
    return (env * harmonic_tone(freq, square)).astype(np.float32)


# --- engine ------------------------------------------------------------------------------------

def sample_engine(rng: np.random.Generator) -> dict:
    style = str(rng.choice(["idle", "rev", "steady"], p=[0.35, 0.25, 0.4]))
    base = float(rng.uniform(55.0, 140.0))
    return {
        "style": style, "base_hz": base, "roughness": float(rng.uniform(0.03, 0.12)),
        "formant_hz": float(rng.uniform(250.0, 900.0)), "cutoff_hz": float(rng.uniform(1200.0, 2500.0)),
        "tags": {"pitch": _level(base, 55.0, 140.0, ("low", "mid", "high")), "style": style},
    }


def render_engine(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    wobble = 1.0 + 0.01 * (slow_curve(rng, n, 2.0) - 0.5)
    if p["style"] == "rev":
        # One or two revs: the firing frequency climbs and falls back.
        revs = slow_curve(rng, n, rng.uniform(0.3, 0.7)) ** 2
        freq = p["base_hz"] * (1.0 + 1.0 * revs) * wobble
    else:
        freq = p["base_hz"] * wobble
    # A stack of harmonics shaped by a broad resonance of the engine body: steady horizontal lines.
    count = int(min(30, p["cutoff_hz"] / p["base_hz"]))
    ks = np.arange(1, count + 1) * p["base_hz"]
    amps = 1.0 / (1.0 + ((ks - p["formant_hz"]) / (0.8 * p["formant_hz"])) ** 2) + 0.3 / np.arange(1, count + 1)
    tone = harmonic_tone(freq.astype(np.float32), list(amps))
    rumble = lowpass(white(rng, n), 400.0, order=2)
    out = tone + p["roughness"] * 4.0 * rumble
    # The firing pulses: a fast flutter at the base rate gives the engine its grain.
    return fade(out.astype(np.float32), 0.3, 0.3)


# --- bell --------------------------------------------------------------------------------------

#: Partial frequencies of a tuned bell relative to its nominal note (hum, prime, tierce, quint,
#: nominal and upper partials): what makes a bell sound like a bell and not a chime or a tone.
BELL_PARTIALS = np.array([0.5, 1.0, 1.2, 1.5, 2.0, 2.5, 2.67, 3.0, 4.0])
BELL_WEIGHTS = np.array([0.5, 0.6, 0.7, 0.35, 1.0, 0.4, 0.3, 0.25, 0.15])


def sample_bell(rng: np.random.Generator) -> dict:
    nominal = float(np.exp(rng.uniform(np.log(260.0), np.log(1700.0))))
    interval = float(rng.uniform(0.9, 3.2))
    return {
        "nominal_hz": nominal, "interval_s": interval, "decay_s": float(rng.uniform(0.7, 2.4)),
        "stretch": float(rng.uniform(0.98, 1.03)),
        "tags": {"pitch": _level(np.log(nominal), np.log(260.0), np.log(1700.0), ("low", "mid", "high")),
                 "rate": "fast" if interval < 1.5 else "slow" if interval > 2.4 else ""},
    }


def render_bell(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    starts = _starts(rng, n, (0.05, 0.4), (p["interval_s"], p["interval_s"]), jitter=0.08)
    length = min(n, int(3.0 * p["decay_s"] * SAMPLE_RATE))
    t = np.arange(length, dtype=np.float32) / SAMPLE_RATE
    freqs = p["nominal_hz"] * BELL_PARTIALS ** p["stretch"]
    keep = freqs < 7600.0
    # Higher partials die away faster; the hum lingers longest.
    taus = p["decay_s"] / (0.4 + BELL_PARTIALS[keep])
    partials = np.sin(np.float32(2 * np.pi) * freqs[keep, None].astype(np.float32) * t[None, :])
    strike = (BELL_WEIGHTS[keep, None].astype(np.float32) * decay(length, taus) * partials).sum(axis=0)
    strike[: int(0.002 * SAMPLE_RATE)] *= np.linspace(0, 1, int(0.002 * SAMPLE_RATE), dtype=np.float32)
    strike = fade(strike.astype(np.float32), 0.0, 0.6 * p["decay_s"])  # the cut-off tail dies away, no click
    gains = rng.uniform(0.75, 1.0, len(starts)).astype(np.float32)
    return overlap_add(n, starts, gains[:, None] * strike[None, :].astype(np.float32))


# --- birds -------------------------------------------------------------------------------------

def sample_birds(rng: np.random.Generator) -> dict:
    low = float(rng.uniform(2800.0, 4500.0))
    birds = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    rate = float(rng.uniform(6.0, 18.0))
    return {
        "low_hz": low, "span": float(rng.uniform(1.3, 1.8)), "birds": birds, "trill_rate": rate,
        "chirp_s": float(rng.uniform(0.035, 0.09)), "pause_s": float(rng.uniform(0.25, 1.2)),
        "tags": {"pitch": _level(low, 2800.0, 4500.0, ("low", "mid", "high")),
                 "count": "one" if birds == 1 else "several", "rate": "fast" if rate > 13 else ""},
    }


def render_birds(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    onsets, lows, shapes = [], [], []
    for bird in range(p["birds"]):
        low = p["low_hz"] * (1.0 + 0.25 * bird * rng.uniform(-1, 1))
        time = lead_in(rng, n, 0.02, 0.5)
        while True:  # at least one trill per bird, however short the span
            count = int(rng.integers(2, 9))
            shape = int(rng.integers(0, 3))
            for k in range(count):
                onsets.append(time + k / p["trill_rate"])
                lows.append(low)
                shapes.append(shape)
            time += count / p["trill_rate"] + p["pause_s"] * rng.uniform(0.6, 1.6) * p["birds"]
            if time >= n / SAMPLE_RATE - 0.1:
                break
    length = int(p["chirp_s"] * SAMPLE_RATE)
    u = np.arange(length, dtype=np.float32) / length
    lows_arr = np.asarray(lows, dtype=np.float32)[:, None]
    span = np.float32(p["span"] - 1.0)
    # Three chirp shapes: up-sweep, down-sweep and a quick up-down "V".
    curves = np.stack([u, 1.0 - u, 1.0 - np.abs(2.0 * u - 1.0)]).astype(np.float32)
    freq = lows_arr * (1.0 + span * curves[np.asarray(shapes)])
    phase = np.cumsum(freq, axis=1) * np.float32(2 * np.pi / SAMPLE_RATE)
    grains = np.sin(phase) * np.sin(np.pi * u) ** 2
    gains = rng.uniform(0.5, 1.0, (len(onsets), 1)).astype(np.float32)
    starts = (np.asarray(onsets) * SAMPLE_RATE).astype(np.int64)
    return overlap_add(n, starts, (grains * gains).astype(np.float32))


# --- water dripping ----------------------------------------------------------------------------

def sample_dripping(rng: np.random.Generator) -> dict:
    rate = float(np.exp(rng.uniform(np.log(0.8), np.log(5.0))))
    pitch = float(rng.uniform(400.0, 1100.0))
    return {
        "rate_hz": rate, "pitch_hz": pitch, "regular": bool(rng.uniform() < 0.5),
        "tags": {"rate": _level(np.log(rate), np.log(0.8), np.log(5.0), ("slow", "", "fast")),
                 "pitch": _level(pitch, 400.0, 1100.0, ("low", "mid", "high"))},
    }


def render_dripping(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    gap = 1.0 / p["rate_hz"]
    starts = _starts(rng, n, (0.05, min(0.5, gap)), (gap, gap), jitter=0.1 if p["regular"] else 0.6)
    length = int(0.09 * SAMPLE_RATE)
    t = np.arange(length, dtype=np.float32) / SAMPLE_RATE
    base = p["pitch_hz"] * rng.uniform(0.85, 1.15, (len(starts), 1)).astype(np.float32)
    # A drop excites a bubble whose resonance rises quickly as it shrinks: the "plip".
    rise = np.float32(rng.uniform(1.0, 1.8)) * (1.0 - np.exp(-t / np.float32(0.012)))
    freq = base * (1.0 + rise)[None, :]
    phase = np.cumsum(freq, axis=1) * np.float32(2 * np.pi / SAMPLE_RATE)
    grains = np.sin(phase) * decay(length, 0.018, attack_seconds=0.001)[None, :]
    gains = rng.uniform(0.6, 1.0, (len(starts), 1)).astype(np.float32)
    return overlap_add(n, starts, (grains * gains).astype(np.float32))


# --- dog bark ----------------------------------------------------------------------------------

def sample_dog_bark(rng: np.random.Generator) -> dict:
    pitch = float(rng.uniform(250.0, 850.0))
    return {
        "pitch_hz": pitch, "bark_s": float(rng.uniform(0.09, 0.22)), "per_group": int(rng.integers(1, 5)),
        "group_gap_s": float(rng.uniform(0.5, 1.8)), "noise": float(rng.uniform(0.25, 0.6)),
        "tags": {"size": "small" if pitch > 600 else "big" if pitch < 400 else "", "pitch": _level(pitch, 250.0, 850.0, ("low", "mid", "high"))},
    }


def render_dog_bark(rng: np.random.Generator, n: int, p: dict) -> np.ndarray:
    onsets, time = [], lead_in(rng, n, 0.05, 0.4)
    while True:  # at least one bark, however short the span
        count = int(rng.integers(1, p["per_group"] + 1))
        for k in range(count):
            onsets.append(time + k * (p["bark_s"] + rng.uniform(0.08, 0.2)))
        time = onsets[-1] + p["group_gap_s"] * rng.uniform(0.7, 1.4)
        if time >= n / SAMPLE_RATE - 0.2:
            break
    length = int(p["bark_s"] * SAMPLE_RATE)
    u = np.arange(length, dtype=np.float32) / length
    count = len(onsets)
    f0 = p["pitch_hz"] * rng.uniform(0.9, 1.1, (count, 1)).astype(np.float32)
    # Pitch jumps up at the onset and falls through the bark.
    freq = f0 * (1.15 - 0.45 * u[None, :])
    phase = np.cumsum(freq, axis=1) * np.float32(2 * np.pi / SAMPLE_RATE)
    harmonics = sum(np.float32(0.8 ** k) * np.sin(np.float32(k) * phase) for k in range(1, 9)
                    if k * p["pitch_hz"] * 1.3 < 7600)
    env = (np.minimum(1.0, u / 0.08) * np.exp(-3.0 * u)).astype(np.float32)
    noise = white(rng, count * length).reshape(count, length)
    grains = env[None, :] * (harmonics + p["noise"] * 2.0 * noise)
    out = overlap_add(n, (np.asarray(onsets) * SAMPLE_RATE).astype(np.int64), grains.astype(np.float32))
    # A broad vocal-tract resonance and a cut of the very lowest rumble.
    return highpass(bandpass(out, 300.0, 3800.0, order=1), 150.0, order=1)
