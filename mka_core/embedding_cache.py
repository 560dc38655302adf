"""An opt-in on-disk cache of conditions, so an expensive encoder runs once per input.

Each input's condition is stored as its own safetensors file, named by
:meth:`Conditioner.cache_key` (a hash of the conditioner's name, its options and the input - the
file's bytes for image/video/audio paths). Tokens the mask marks as padding are trimmed before
storing, so a cached input gives the same condition whatever batch it was first encoded in. A
file that cannot be read is encoded again and rewritten, never trusted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from mka_core.conditioning import Condition, Conditioner
from mka_core.errors import WeightsError
from mka_core.weights import load_safetensors, save_safetensors


class EmbeddingCache:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> Condition | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_safetensors(path)
            return Condition(tensors["embeds"][None], tensors["mask"][None].bool())
        except (WeightsError, KeyError, ValueError):
            return None

    def put(self, key: str, condition: Condition) -> None:
        embeds, mask = condition.embeds[0], condition.mask[0]
        # Trim trailing padding only; an all-attended sequence (clap-text) keeps every token.
        real = int(mask.nonzero().max()) + 1 if mask.any() else mask.numel()
        save_safetensors({"embeds": embeds[:real].float().cpu(), "mask": mask[:real].cpu()}, self._path(key))


@torch.no_grad()
def encode_with_cache(conditioner: Conditioner, inputs: Sequence[Any], cache: EmbeddingCache) -> Condition:
    """The conditions of ``inputs``, encoding only the cache misses (in one batch)."""
    keys = [conditioner.cache_key(item) for item in inputs]
    found: dict[int, Condition] = {}
    missing = []
    for i, key in enumerate(keys):
        hit = cache.get(key)
        if hit is None:
            missing.append(i)
        else:
            found[i] = hit
    cache.hits += len(found)
    cache.misses += len(missing)
    if missing:
        encoded = conditioner([inputs[i] for i in missing])
        for row, i in enumerate(missing):
            single = encoded[row]
            cache.put(keys[i], single)
            found[i] = cache.get(keys[i]) or single
    device, dtype = conditioner.device, conditioner.dtype
    return Condition.cat([found[i].to(device, dtype) for i in range(len(inputs))])
