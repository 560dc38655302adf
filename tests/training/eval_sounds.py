"""Labelled test sounds for the evaluation tests: pure tones versus noise, made here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from training.data.manifest import ManifestRow, write_manifest

SR = 16000
CAPTIONS = {"tone": "a pure steady tone", "noise": "a burst of hiss"}


def make_clip(kind: str, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    if kind == "tone":
        freq = rng.uniform(400.0, 1600.0)
        wave = rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.28))
    else:
        wave = rng.uniform(0.05, 0.3) * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def write_labelled_set(folder: Path, per_class: int, seconds: float = 1.0, seed: int = 0,
                       name: str = "set.tsv", labels: bool = True) -> Path:
    """``per_class`` clips of each kind, interleaved, with a manifest (``labels`` column unless told)."""
    audio = folder / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(per_class):
        for k, kind in enumerate(CAPTIONS):
            clip_seed = seed * 1000 + 10 * i + k
            path = audio / f"{kind}_{seed}_{i}.wav"
            sf.write(path, make_clip(kind, seconds, clip_seed), SR, subtype="FLOAT")
            rows.append(ManifestRow(name=f"{kind}_{seed}_{i}", dataset="test", caption=CAPTIONS[kind],
                                    audio_path=str(path), extra={"labels": kind} if labels else {}))
    return write_manifest(folder / name, rows)
