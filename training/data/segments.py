"""Waveform segments with their mels, for vocoder training."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from mka_core.audio.io import load_audio
from mka_core.audio.mel import MelConfig, MelFrontEnd
from training.data.dataset import item_rng
from training.data.manifest import ManifestRow


class WaveSegmentDataset(Dataset):
    """Random ``segment_frames * hop`` sample segments (zero-padded when the clip is shorter)
    and their log10 mels ``[n_mels, segment_frames]`` from mka's front end."""

    def __init__(self, rows: list[ManifestRow], *, segment_frames: int = 32, seed: int = 0,
                 mel_config: MelConfig | None = None, random_offset: bool = True) -> None:
        self.rows = rows
        self.mel_config = mel_config or MelConfig()
        self.segment = segment_frames * self.mel_config.hop_length
        self.seed = seed
        self.random_offset = random_offset
        self.frontend = MelFrontEnd(self.mel_config)
        self.failed: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, position = key if isinstance(key, tuple) else (key, key)
        for attempt in range(len(self.rows)):
            row = self.rows[(index + attempt) % len(self.rows)]
            try:
                wave = load_audio(row.audio_path, self.mel_config.sample_rate).reshape(-1)
            except Exception as exc:  # noqa: BLE001 - a broken file is skipped, not fatal
                self.failed[row.name] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            if not torch.isfinite(wave).all():
                self.failed[row.name] = "NaN or Inf samples"
                continue
            break
        else:
            raise RuntimeError("no row of the dataset could be loaded")
        rng = item_rng(self.seed, position)
        if wave.numel() > self.segment:
            start = int(rng.integers(0, wave.numel() - self.segment + 1)) if self.random_offset else 0
            wave = wave[start:start + self.segment]
        else:
            wave = torch.nn.functional.pad(wave, (0, self.segment - wave.numel()))
        with torch.no_grad():
            mel = self.frontend(wave[None]).reshape(self.mel_config.n_mels, -1)
        return {"wave": wave, "mel": mel, "name": row.name}


