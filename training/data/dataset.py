"""Training datasets over a manifest, with randomness that depends only on (seed, position).

Every random choice of an item (its crop offset, reprogramming draws) comes from a generator
seeded by the run seed and the item's position in the training stream, never from global
state. So a run resumed from a checkpoint sees exactly the items, crops and order it would
have seen uninterrupted, whatever the number of DataLoader workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mka_core.audio.io import load_audio
from mka_core.audio.mel import MelConfig, MelFrontEnd, tile_or_crop
from training.data.manifest import ManifestRow


def item_rng(seed: int, position: int, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, position, salt])


class StreamSampler(Sampler):
    """An endless, resumable stream of micro-batches of ``(row index, stream position)``.

    The stream is the concatenation of per-epoch permutations of the rows (seeded by
    ``seed`` and the epoch); rank ``r`` of ``world`` takes every ``world``-th entry, so
    processes see disjoint shards. ``start`` skips the micro-batches already consumed.
    """

    def __init__(self, num_rows: int, batch_size: int, *, seed: int = 0, rank: int = 0, world: int = 1,
                 start: int = 0, shuffle: bool = True) -> None:
        if num_rows <= 0:
            raise ValueError("StreamSampler needs at least one row")
        self.num_rows, self.batch_size = num_rows, batch_size
        self.seed, self.rank, self.world, self.start, self.shuffle = seed, rank, world, start, shuffle

    def _permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_rows)
        return np.random.default_rng([self.seed & 0xFFFFFFFF, epoch, 7919]).permutation(self.num_rows)

    def stream(self) -> Iterator[tuple[int, int]]:
        """(row index, position in this rank's stream), from the beginning."""
        epoch, position = 0, 0
        while True:
            order = self._permutation(epoch)
            if self.world > 1:
                # disjoint shards; a dataset smaller than the world repeats so no rank starves
                shard = order[self.rank::self.world]
                order = shard if len(shard) else order[[self.rank % self.num_rows]]
            for index in order:
                yield int(index), position
                position += 1
            epoch += 1

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        stream = self.stream()
        batch: list[tuple[int, int]] = []
        skip = self.start * self.batch_size
        for item in stream:
            if skip:
                skip -= 1
                continue
            batch.append((item[0], item[1] * self.world + self.rank))
            if len(batch) == self.batch_size:
                yield batch
                batch = []

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**31


class MelCropDataset(Dataset):
    """Mel crops of ``crop_frames`` frames with their captions.

    The mel comes from the row's ``mel_path`` (a ``.npy`` of ``[80, T]`` or ``[1, 80, T]`` from
    ``mka data prepare``) or is computed from its audio. Longer mels get a random crop,
    shorter ones are tiled, as in the reference training. ``audio_transform`` (for example
    dynamic reprogramming) receives ``(waveform, row, rng)`` and returns ``(waveform, caption)``;
    with it, mels are always computed from audio.
    """

    def __init__(self, rows: list[ManifestRow], *, crop_frames: int = 624, seed: int = 0,
                 mel_config: MelConfig | None = None, random_crop: bool = True,
                 audio_transform: Callable[[np.ndarray, ManifestRow, np.random.Generator], tuple[np.ndarray, str]] | None = None) -> None:
        self.rows = rows
        self.crop_frames = crop_frames
        self.seed = seed
        self.mel_config = mel_config or MelConfig()
        self.random_crop = random_crop
        self.audio_transform = audio_transform
        self._frontend: MelFrontEnd | None = None
        self.failed: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _mel_from_audio(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        if self._frontend is None:
            self._frontend = MelFrontEnd(self.mel_config)
        with torch.no_grad():
            return self._frontend(torch.as_tensor(wave, dtype=torch.float32).reshape(1, -1))[0]

    def load_mel(self, row: ManifestRow, rng: np.random.Generator) -> tuple[torch.Tensor, str]:
        caption = row.caption
        if self.audio_transform is None and row.mel_path and Path(row.mel_path).is_file():
            mel = torch.from_numpy(np.load(row.mel_path, allow_pickle=False).astype(np.float32))
        else:
            wave = load_audio(row.audio_path, self.mel_config.sample_rate).reshape(-1).numpy()
            if self.audio_transform is not None:
                wave, caption = self.audio_transform(wave, row, rng)
            mel = self._mel_from_audio(wave)
        mel = mel.reshape(1, self.mel_config.n_mels, -1)
        return mel, caption

    def crop(self, mel: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        frames = mel.shape[-1]
        if frames > self.crop_frames and self.random_crop:
            start = int(rng.integers(0, frames - self.crop_frames + 1))
            mel = mel[..., start:start + self.crop_frames]
        return tile_or_crop(mel, self.crop_frames)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, position = key if isinstance(key, tuple) else (key, key)
        # A file that passed screening but fails to decode is replaced by the next row,
        # deterministically, so training goes on and a resumed run sees the same items.
        for attempt in range(len(self.rows)):
            row = self.rows[(index + attempt) % len(self.rows)]
            rng = item_rng(self.seed, position)
            try:
                mel, caption = self.load_mel(row, rng)
            except Exception as exc:  # noqa: BLE001 - any decode failure means "skip this row"
                self.failed[row.name] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            if not torch.isfinite(mel).all():
                self.failed[row.name] = "NaN or Inf in the mel"
                continue
            return {"mel": self.crop(mel, rng), "caption": caption, "name": row.name,
                    "index": (index + attempt) % len(self.rows), "labels": ";".join(row.labels)}
        raise RuntimeError("no row of the dataset could be loaded")


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch
