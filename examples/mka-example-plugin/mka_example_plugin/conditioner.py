"""`trigram-text`: words as hashed bags of character trigrams (no weights at all)."""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import torch
from pydantic import Field

from mka_core import Condition, Conditioner, EmbeddingSpace, StrictModel


class TrigramOptions(StrictModel):
    dim: int = Field(64, ge=8, le=4096, description="width of each word vector")
    max_words: int = Field(32, ge=1, le=512, description="words kept per prompt (the rest is dropped)")


def _bucket(trigram: str, dim: int) -> tuple[int, float]:
    # hashlib, not hash(): Python's string hash changes between processes.
    digest = hashlib.blake2b(trigram.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, 1.0 if (value >> 63) & 1 else -1.0


class TrigramTextConditioner(Conditioner):
    name = "trigram-text"
    input_kind = "text"
    Options = TrigramOptions
    summary = "Example plugin: words as hashed character-trigram vectors (weight-free)."
    space_summary = "trigram-hash (64, sequence)"

    def __init__(self, options: StrictModel | None = None, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        # A buffer only so the conditioner follows .to(device) like any other.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @classmethod
    def build_random(cls, preset: str = "tiny", seed: int = 0, **options: Any) -> "TrigramTextConditioner":
        return cls(cls.Options(**options))  # nothing random: there are no weights

    @classmethod
    def space_from_options(cls, options: StrictModel) -> EmbeddingSpace:
        return EmbeddingSpace(name=f"trigram-hash-{options.dim}", dim=options.dim, tokens="sequence")

    @property
    def space(self) -> EmbeddingSpace:
        return self.space_from_options(self.options)

    def prepare(self, inputs: Sequence[Any]) -> torch.Tensor:
        dim, max_words = self.options.dim, self.options.max_words
        rows = []
        for text in inputs:
            words = str(text).lower().split()[:max_words] or [""]
            matrix = torch.zeros(len(words), dim)
            for i, word in enumerate(words):
                padded = f"<{word}>"
                for j in range(len(padded) - 2):
                    index, sign = _bucket(padded[j : j + 3], dim)
                    matrix[i, index] += sign
            rows.append(torch.nn.functional.normalize(matrix, dim=-1))
        return rows

    def encode(self, prepared: list[torch.Tensor]) -> Condition:
        conditions = [
            Condition(row[None].to(self._anchor.device), torch.ones(1, row.shape[0], dtype=torch.bool, device=self._anchor.device))
            for row in prepared
        ]
        return Condition.cat(conditions)

    def null_condition(self, batch_size: int = 1) -> Condition:
        return self.encode(self.prepare([""] * batch_size))
