"""From kept recordings to training clips: windows, one-shot sequences, backgrounds, compositions.

* An **ambience** recording (long, steady: rain, a river, a market) is cut into consecutive
  windows of :data:`WINDOW_SAMPLES` (9.984 s, the reference's 624 mel frames); a last piece of
  at least half a window is kept as a shorter clip; at most ``max_windows`` per recording.
* An **event** recording (one to ten seconds: a moo, a door creaking) is a clip on its own.
* **One-shots** (a single step, a hammer blow, a bark) are placed in sequences: the class's
  ``sequence`` range of shots, with onsets ``gap`` seconds apart, cut at ten seconds; the shots
  of a sequence share their tags (all on gravel) when at least two recordings do.
* Some clips sit over a **background**: an ambience window of another class of the same
  split, 10-20 dB under the foreground ("footsteps on gravel with rain in the background").
* **Compositions** join two classes: ``then`` (one after the other) and ``while`` (a foreground
  over another class's ambience at a similar level).

Every clip keeps the recordings it was made from (for the licence, source and attribution
columns) and its events (for the caption). Clips of a split only use that split's recordings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.data.real.audio import resample_wave
from training.data.synth.dsp import active_level, db

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 624 * 256  # 9.984 s: 624 mel frames at hop 256, the reference's training crop
MAX_CLIP_SECONDS = 10.0


@dataclass
class Recording:
    key: str            # package path
    label: str
    tags: dict
    role: str           # oneshot, event or ambience
    wave: np.ndarray    # 16 kHz mono float32
    licence: str
    author: str
    package: str
    split: str = "train"


@dataclass
class Clip:
    wave: np.ndarray
    mode: str                               # single, then, while, background
    events: list[tuple[str, dict]]          # (class, tags), lead first
    recordings: list[Recording]
    origin: str                             # recording, composed, augmented, synthetic
    clip_tags: dict = field(default_factory=dict)
    synthetic_source: str = ""

    @property
    def labels(self) -> list[str]:
        seen: list[str] = []
        for name, _ in self.events:
            if name not in seen:
                seen.append(name)
        return seen


@dataclass
class Piece:
    """A foreground made of one or more recordings of one class."""

    wave: np.ndarray
    label: str
    tags: dict
    recordings: list[Recording]
    composed: bool


def windows(recording: Recording, max_windows: int) -> list[np.ndarray]:
    wave = recording.wave
    out = [wave[start:start + WINDOW_SAMPLES] for start in range(0, wave.size - WINDOW_SAMPLES + 1, WINDOW_SAMPLES)]
    rest = wave.size - len(out) * WINDOW_SAMPLES
    if rest >= WINDOW_SAMPLES // 2:
        out.append(wave[len(out) * WINDOW_SAMPLES:])
    return out[:max_windows]


def _fade(wave: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    n = min(int(seconds * SAMPLE_RATE), wave.size // 2)
    if n > 0:
        wave = wave.copy()
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        wave[:n] *= ramp
        wave[-n:] *= ramp[::-1]
    return wave


def _at_level(wave: np.ndarray, level_db: float) -> np.ndarray:
    level = active_level(wave)
    return wave * np.float32(db(level_db) / level) if level > 1e-9 else wave


class Assembler:
    """Makes the clips of one split from its recordings, deterministically from ``rng``."""

    def __init__(self, recordings: list[Recording], classes: dict, rng: np.random.Generator, *,
                 max_windows: int = 18, reuse: float = 3.0) -> None:
        self.rng = rng
        self.classes = classes
        self.max_windows = max_windows
        self.reuse = reuse
        self.by_role: dict[str, dict[str, list[Recording]]] = {"oneshot": {}, "event": {}, "ambience": {}}
        for recording in recordings:
            self.by_role[recording.role].setdefault(recording.label, []).append(recording)
        self.backgrounds: list[tuple[np.ndarray, Recording]] = []
        for label, members in sorted(self.by_role["ambience"].items()):
            spec = classes[label]
            if spec.background is False:
                continue
            for recording in members:
                self.backgrounds.extend((window, recording) for window in windows(recording, max_windows))

    def labels(self) -> list[str]:
        return sorted({label for group in self.by_role.values() for label in group})

    # -- foregrounds ---------------------------------------------------------------------------------

    def sequence(self, label: str, max_seconds: float = MAX_CLIP_SECONDS) -> Piece:
        pool = self.by_role["oneshot"][label]
        spec = self.classes[label]
        rng = self.rng
        # One surface, one material, one voice per sequence: the shots share the first one's tags.
        first = pool[int(rng.integers(len(pool)))]
        alike = [r for r in pool if r.tags == first.tags]
        pool = alike if len(alike) >= 2 else pool
        count = int(rng.integers(spec.sequence[0], spec.sequence[1] + 1))
        limit = int(max_seconds * SAMPLE_RATE)
        lead = int(rng.uniform(0.1, 0.6) * SAMPLE_RATE)
        placed, used, onset = [], [], lead
        order = rng.permutation(len(pool))
        for k in range(count):
            recording = pool[int(order[k % len(order)])]
            shot = recording.wave[: limit - onset]
            if shot.size < 160 or (placed and onset + shot.size > limit):
                break
            placed.append((onset, _fade(shot, 0.004) * np.float32(db(rng.uniform(-4.0, 2.0)))))
            used.append(recording)
            onset += max(int(rng.uniform(*spec.gap) * SAMPLE_RATE), shot.size // 3)
        end = max(start + shot.size for start, shot in placed) + int(rng.uniform(0.2, 0.6) * SAMPLE_RATE)
        wave = np.zeros(min(end, limit), dtype=np.float32)
        for start, shot in placed:
            stop = min(wave.size, start + shot.size)
            wave[start:stop] += shot[: stop - start]
        unique = list({id(r): r for r in used}.values())
        return Piece(wave, label, self._tags(unique), unique, composed=True)

    def event(self, label: str, max_seconds: float = MAX_CLIP_SECONDS) -> Piece:
        pool = self.by_role["event"][label]
        recording = pool[int(self.rng.integers(len(pool)))]
        return Piece(_fade(recording.wave[: int(max_seconds * SAMPLE_RATE)]), label, dict(recording.tags), [recording],
                     composed=False)

    def window(self, label: str, max_seconds: float = MAX_CLIP_SECONDS) -> Piece:
        pool = self.by_role["ambience"][label]
        recording = pool[int(self.rng.integers(len(pool)))]
        length = min(recording.wave.size, int(max_seconds * SAMPLE_RATE))
        start = int(self.rng.integers(0, recording.wave.size - length + 1))
        return Piece(_fade(recording.wave[start:start + length]), label, dict(recording.tags), [recording], composed=False)

    def foreground(self, label: str, max_seconds: float = MAX_CLIP_SECONDS) -> Piece:
        roles = [role for role in ("oneshot", "event", "ambience") if label in self.by_role[role]]
        role = roles[int(self.rng.integers(len(roles)))]
        return {"oneshot": self.sequence, "event": self.event, "ambience": self.window}[role](label, max_seconds)

    @staticmethod
    def _tags(recordings: list[Recording]) -> dict:
        # Tags all shots agree on describe the sequence ("on gravel"); disagreeing ones are dropped.
        common = dict(recordings[0].tags)
        for recording in recordings[1:]:
            common = {k: v for k, v in common.items() if recording.tags.get(k) == v}
        return common

    # -- clips ---------------------------------------------------------------------------------------

    def _background_for(self, label: str) -> tuple[np.ndarray, Recording] | None:
        options = [item for item in self.backgrounds if item[1].label != label]
        return options[int(self.rng.integers(len(options)))] if options else None

    def _loudness(self, wave: np.ndarray) -> tuple[np.ndarray, dict]:
        level = float(self.rng.uniform(-30.0, -12.0))
        wave = _at_level(wave, level)
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        if peak > 0.97:
            wave = wave * np.float32(0.97 / peak)
        return wave.astype(np.float32), {"loudness": "loud" if level > -16 else "quiet" if level < -26 else ""}

    def with_background(self, piece: Piece, origin: str = "composed", level_db: tuple[float, float] = (-20.0, -10.0),
                        mode: str = "background") -> Clip | None:
        found = self._background_for(piece.label)
        if found is None:
            return None
        window, recording = found
        n = piece.wave.size
        bed = np.resize(window, n) if window.size < n else window[int(self.rng.integers(0, window.size - n + 1)):][:n]
        mix = _at_level(piece.wave, 0.0) + _at_level(_fade(bed, 0.05), float(self.rng.uniform(*level_db)))
        wave, tags = self._loudness(mix)
        return Clip(wave, mode, [(piece.label, piece.tags), (recording.label, dict(recording.tags))],
                    piece.recordings + [recording], origin, tags)

    def single(self, piece: Piece, origin: str | None = None) -> Clip:
        wave, tags = self._loudness(piece.wave)
        return Clip(wave, "single", [(piece.label, piece.tags)], piece.recordings,
                    origin or ("composed" if piece.composed and len(piece.recordings) > 1 else "recording"), tags)

    def then(self, first: str, second: str) -> Clip:
        budget = MAX_CLIP_SECONDS
        a = self.foreground(first, float(self.rng.uniform(2.5, 5.0)))
        b = self.foreground(second, budget - a.wave.size / SAMPLE_RATE - 0.5)
        pause = np.zeros(int(self.rng.uniform(0.1, 0.5) * SAMPLE_RATE), dtype=np.float32)
        gain = float(self.rng.uniform(-3.0, 3.0))
        wave = np.concatenate([_at_level(a.wave, 0.0), pause, _at_level(b.wave, gain)])
        wave, tags = self._loudness(wave)
        return Clip(wave, "then", [(a.label, a.tags), (b.label, b.tags)], a.recordings + b.recordings, "composed", tags)

    def clips(self, composition_fraction: float = 0.2, background_fraction: float = 0.3) -> list[Clip]:
        """Every clip of the split: windows, events, sequences (some over backgrounds), compositions."""
        out: list[Clip] = []
        for label, members in sorted(self.by_role["ambience"].items()):
            for recording in members:
                for window in windows(recording, self.max_windows):
                    out.append(self.single(Piece(_fade(window), label, dict(recording.tags), [recording], False)))
        for label, members in sorted(self.by_role["event"].items()):
            for recording in members:
                out.append(self.single(Piece(_fade(recording.wave[: int(MAX_CLIP_SECONDS * SAMPLE_RATE)]), label,
                                             dict(recording.tags), [recording], False)))
        for label, members in sorted(self.by_role["oneshot"].items()):
            spec = self.classes[label]
            mean_shots = (spec.sequence[0] + spec.sequence[1]) / 2
            for _ in range(max(1, int(np.ceil(len(members) * self.reuse / mean_shots)))):
                piece = self.sequence(label)
                clip = self.with_background(piece) if self.rng.uniform() < background_fraction else None
                out.append(clip or self.single(piece))
        labels = self.labels()
        if len(labels) >= 2:
            for _ in range(int(round(composition_fraction * len(out)))):
                first, second = (labels[i] for i in self.rng.choice(len(labels), 2, replace=False))
                clip = None
                if self.rng.uniform() < 0.5:
                    clip = self.with_background(self.foreground(first), level_db=(-4.0, 2.0), mode="while")
                out.append(clip or self.then(first, second))
        return out

    def augmented(self, label: str) -> Clip:
        """A clip of ``label`` from this split's recordings, sped up or slowed down (pitch and time
        together, by 0.85-1.175 in steps of 0.025), at a random level, over a background half of the time."""
        piece = self.foreground(label)
        # Speeds on a 2.5 % grid keep the resampling kernels small and reusable.
        speed = float(self.rng.choice(np.arange(0.85, 1.1801, 0.025)))
        wave = resample_wave(piece.wave, int(round(SAMPLE_RATE * speed / 400)) * 400, SAMPLE_RATE)
        piece = Piece(wave[: int(MAX_CLIP_SECONDS * SAMPLE_RATE)], piece.label, piece.tags, piece.recordings, piece.composed)
        clip = self.with_background(piece, origin="augmented") if self.rng.uniform() < 0.5 else None
        return clip or self.single(piece, origin="augmented")
