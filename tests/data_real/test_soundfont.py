"""Instrument phrases from a soundfont: the MIDI files, and a render when fluidsynth is installed."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
import soundfile as sf

from mka_core.errors import InputError
from training.data.real.soundfont import INSTRUMENTS, phrase_midi, phrase_notes, render_soundfont

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def _events(midi: bytes) -> list[bytes]:
    """The channel messages of a format-0 file written by phrase_midi (no running status)."""
    assert midi[:4] == b"MThd" and struct.unpack(">IHHH", midi[4:14]) == (6, 0, 1, 480)
    assert midi[14:18] == b"MTrk"
    track = midi[22:22 + struct.unpack(">I", midi[18:22])[0]]
    events, i = [], 0
    while i < len(track):
        while track[i] & 0x80:  # variable-length delta time
            i += 1
        i += 1
        status = track[i]
        if status == 0xFF:
            length = track[i + 2]
            events.append(track[i:i + 3 + length])
            i += 3 + length
        else:
            size = 2 if status & 0xF0 == 0xC0 else 3
            events.append(track[i:i + size])
            i += size
    return events


@pytest.mark.parametrize("instrument", sorted(INSTRUMENTS))
def test_phrases_are_valid_midi_in_the_instruments_range(instrument):
    program, low, high, _ = INSTRUMENTS[instrument]
    notes = phrase_notes(instrument, 3)
    assert notes == phrase_notes(instrument, 3) and notes != phrase_notes(instrument, 4)
    assert all(low <= key <= high and 0 < velocity < 128 for _, _, key, velocity in notes)
    events = _events(phrase_midi(program, notes))
    assert bytes([0xC0, program]) in events
    ons = [e for e in events if e[0] == 0x90]
    offs = [e for e in events if e[0] == 0x80]
    assert len(ons) == len(offs) == len(notes)
    assert events[-1] == bytes([0xFF, 0x2F, 0x00])


def test_render_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        render_soundfont(tmp_path / "missing.sf2")
    with pytest.raises(InputError, match="Unknown instrument"):
        render_soundfont(tmp_path / "missing.sf2", instruments=["kazoo"])


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not SOUNDFONT.is_file(),
                    reason="needs fluidsynth and fluid-soundfont-gm")
def test_render_one_phrase(tmp_path):
    folder = render_soundfont(SOUNDFONT, phrases=1, cache=tmp_path / "render", instruments=["piano"])
    audio, rate = sf.read(folder / "piano" / "piano_00.wav")
    assert rate == 44100 and audio.shape[0] > rate and abs(audio).max() > 0.01
    assert (folder / "complete").is_file()
