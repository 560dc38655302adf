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

    def get(self, key: str, dim: int | None = None) -> Condition | None:
        """The cached condition of ``key``, or None when there is none or the entry cannot be trusted.

        An entry is used only if it is what :meth:`put` writes: float ``embeds [T, D]`` (``D == dim``
        when given), a bool ``mask [T]``, every value finite. Anything else - a damaged file, one
        written by another encoder width, NaN - is treated as missing and encoded again.
        """
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_safetensors(path)
            embeds, mask = tensors["embeds"], tensors["mask"]
        except (WeightsError, KeyError):
            return None
        fits = (
            embeds.dim() == 2 and embeds.is_floating_point() and mask.dim() == 1 and mask.dtype == torch.bool
            and mask.shape[0] == embeds.shape[0] and (dim is None or embeds.shape[1] == dim)
            and bool(torch.isfinite(embeds).all())
        )
        return Condition(embeds[None], mask[None]) if fits else None

    def put(self, key: str, condition: Condition) -> None:
        embeds, mask = condition.embeds[0], condition.mask[0]
        # Trim trailing padding only; an all-attended sequence (clap-text) keeps every token.
        real = int(mask.nonzero().max()) + 1 if mask.any() else mask.numel()
        save_safetensors({"embeds": embeds[:real].float().cpu(), "mask": mask[:real].cpu()}, self._path(key))


@torch.no_grad()
def encode_with_cache(conditioner: Conditioner, inputs: Sequence[Any], cache: EmbeddingCache) -> Condition:
    """The conditions of ``inputs``, encoding only the cache misses (in one batch)."""
    keys = [conditioner.cache_key(item) for item in inputs]
    dim = conditioner.space.dim
    found: dict[int, Condition] = {}
    missing = []
    for i, key in enumerate(keys):
        hit = cache.get(key, dim)
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
            found[i] = cache.get(keys[i], dim) or single
    device, dtype = conditioner.device, conditioner.dtype
    return Condition.cat([found[i].to(device, dtype) for i in range(len(inputs))])
