"""Real instrument recordings from a General MIDI soundfont, rendered with fluidsynth.

A soundfont holds sampled notes of real instruments. For each instrument in
:data:`INSTRUMENTS` this renders ``phrases`` short phrases (3 to 8 notes, or chords for the
instruments that play them, at varied pitches, lengths and velocities) into
``<cache>/<instrument>/<instrument>_NN.wav``, one MIDI file each, with the ``fluidsynth``
command-line synthesiser. The phrases depend only on the instrument and the phrase number, so
the same soundfont always gives the same folder; it is rendered once and reused.

Every phrase counts as its own source recording for the split, but all phrases of an
instrument share the soundfont's samples: held-out phrases are new melodies, not new samples.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from mka_core.errors import InputError

RENDER_VERSION = 1
#: name -> (General MIDI program, 0-based; lowest and highest MIDI note; plays chords)
INSTRUMENTS = {
    "piano": (0, 45, 84, True),
    "guitar": (24, 40, 76, True),
    "violin": (40, 55, 93, False),
    "cello": (42, 36, 69, False),
    "flute": (73, 60, 96, False),
    "trumpet": (56, 55, 82, False),
    "organ": (19, 36, 79, True),
    "saxophone": (65, 49, 80, False),
    "marimba": (12, 48, 84, False),
    "harp": (46, 36, 91, True),
}
_TICKS = 480  # per quarter note; at 120 bpm, 960 ticks a second


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def phrase_midi(program: int, notes: list[tuple[float, float, int, int]]) -> bytes:
    """A format-0 MIDI file: ``notes`` are (start s, length s, key, velocity) on channel 0."""
    events = []
    for start, length, key, velocity in notes:
        events.append((int(start * 960), 1, bytes([0x90, key, velocity])))
        events.append((int((start + length) * 960), 0, bytes([0x80, key, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray(_vlq(0) + bytes([0xFF, 0x51, 0x03]) + (500000).to_bytes(3, "big"))
    track += _vlq(0) + bytes([0xC0, program])
    now = 0
    for tick, _, message in events:
        track += _vlq(tick - now) + message
        now = tick
    track += _vlq(int(0.8 * 960)) + bytes([0xFF, 0x2F, 0x00])  # let the last note ring out
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, _TICKS) + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def phrase_notes(instrument: str, number: int) -> list[tuple[float, float, int, int]]:
    program, low, high, chords = INSTRUMENTS[instrument]
    rng = np.random.default_rng([RENDER_VERSION, program, number])
    notes, time = [], 0.0
    root = int(rng.integers(low, max(low + 1, high - 12)))
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16])
    for _ in range(int(rng.integers(3, 9))):
        length = float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.5]))
        velocity = int(rng.integers(55, 115))
        key = int(min(high, root + int(rng.choice(scale))))
        if chords and rng.uniform() < 0.4:
            for offset in (0, 4, 7):
                notes.append((time, length, min(high, key + offset), velocity))
        else:
            notes.append((time, length * float(rng.uniform(0.8, 1.0)), key, velocity))
        time += length
    return notes


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mka" / "soundfont-renders"


def render_soundfont(soundfont: str | Path, phrases: int = 24, cache: str | Path | None = None,
                     instruments: list[str] | None = None) -> Path:
    """The folder of rendered phrases for ``soundfont`` (rendered now if not cached); ``instruments``
    limits the rendering to some of :data:`INSTRUMENTS` (all by default)."""
    names = list(INSTRUMENTS) if instruments is None else list(instruments)
    unknown = [name for name in names if name not in INSTRUMENTS]
    if unknown:
        raise InputError(f"Unknown instrument(s) {', '.join(unknown)}; choose from {', '.join(INSTRUMENTS)}.")
    soundfont = Path(soundfont)
    if not soundfont.is_file():
        raise InputError(f"The soundfont {soundfont} does not exist; install fluid-soundfont-gm or fix the source's root.")
    binary = shutil.which("fluidsynth")
    if binary is None:
        raise InputError("Rendering the soundfont needs the fluidsynth program; install it (apt-get install fluidsynth).")
    stat = soundfont.stat()
    key = hashlib.sha1(f"{soundfont.resolve()}:{stat.st_size}:{phrases}:{RENDER_VERSION}:{','.join(names)}".encode()
                       ).hexdigest()[:16]
    folder = Path(cache) if cache is not None else _cache_root() / key
    if (folder / "complete").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for instrument in names:
            program = INSTRUMENTS[instrument][0]
            (folder / instrument).mkdir(exist_ok=True)
            for number in range(phrases):
                midi = Path(scratch) / f"{instrument}_{number:02d}.mid"
                midi.write_bytes(phrase_midi(program, phrase_notes(instrument, number)))
                target = folder / instrument / f"{instrument}_{number:02d}.wav"
                partial = target.with_suffix(".partial.wav")
                result = subprocess.run([binary, "-ni", "-q", "-g", "0.7", "-r", "44100", "-F", str(partial),
                                         str(soundfont), str(midi)], capture_output=True, text=True, timeout=120)
                if result.returncode != 0 or not partial.is_file():
                    raise InputError(f"fluidsynth could not render {instrument} phrase {number}: "
                                     f"{(result.stderr or result.stdout).strip()[:200]}")
                partial.replace(target)
    (folder / "complete").write_text(f"{RENDER_VERSION}\n")
    return folder
