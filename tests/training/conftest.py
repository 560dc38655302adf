"""Fixtures for training tests: a handful of short, distinct sounds with captions, made here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.data.manifest import ManifestRow, write_manifest

SR = 16000


def make_sound(kind: str, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    if kind == "tone":
        freq = 440.0 * (1 + 0.1 * rng.random())
        wave = 0.4 * np.sin(2 * np.pi * freq * t)
    elif kind == "beeps":
        freq = 1500.0 * (1 + 0.1 * rng.random())
        wave = 0.4 * np.sin(2 * np.pi * freq * t) * ((t * 4) % 1 < 0.5)
    else:
        wave = 0.2 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


CAPTIONS = {"tone": "a steady low tone", "beeps": "high beeps", "noise": "loud white noise"}


def write_sound_set(folder: Path, per_kind: int = 3, seconds: float = 2.5) -> list[ManifestRow]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, kind in enumerate(CAPTIONS):
        for i in range(per_kind):
            path = folder / f"{kind}{i}.wav"
            sf.write(path, make_sound(kind, seconds + 0.5 * i, seed=10 * k + i), SR)
            rows.append(ManifestRow(name=f"{kind}{i}", dataset="test", caption=CAPTIONS[kind],
                                    audio_path=str(path), extra={"labels": kind}))
    return rows


@pytest.fixture(scope="session")
def sound_manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sounds")
    rows = write_sound_set(folder / "audio")
    return write_manifest(folder / "train.tsv", rows)
