"""A third-party conditioner written the way docs/plugins.md teaches, installed as a fake distribution.

``letter-counts`` (distribution ``fake-letters`` 0.3.0) maps each word to its 26 letter counts.
Its options model forbids unknown keys, as the docs recommend; ``encode`` raises on any word
with an "x" (a bug of the plugin's own); every construction is counted in ``BUILT``.
``broken-letters`` (distribution ``fake-broken-letters`` 0.1) fails to import.
"""

from __future__ import annotations

from pathlib import Path

from tests.plugins.fake_dists import make_distribution

LETTERS = '''
from typing import Any, Sequence

import torch
from pydantic import Field

from mka_core import Condition, Conditioner, EmbeddingSpace, StrictModel, hookimpl

BUILT = []


class LetterOptions(StrictModel):
    max_words: int = Field(16, ge=1, description="words kept per prompt")


class LetterCounts(Conditioner):
    name = "letter-counts"
    input_kind = "text"
    Options = LetterOptions
    summary = "Each word as its 26 letter counts."

    def __init__(self, options=None, **overrides):
        super().__init__(options, **overrides)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)
        BUILT.append(self.options.max_words)

    @classmethod
    def space_from_options(cls, options):
        return EmbeddingSpace(name="letter-counts", dim=26, tokens="sequence")

    @property
    def space(self):
        return self.space_from_options(self.options)

    @classmethod
    def build_random(cls, preset="tiny", seed=0, **options):
        return cls(cls.Options(**options))

    def prepare(self, inputs: Sequence[Any]):
        rows = []
        for text in inputs:
            words = str(text).lower().split()[: self.options.max_words] or [""]
            m = torch.zeros(len(words), 26)
            for i, w in enumerate(words):
                for ch in w:
                    if "a" <= ch <= "z":
                        m[i, ord(ch) - 97] += 1
            rows.append(m)
        return rows

    def encode(self, prepared) -> Condition:
        if any(float(r[:, 23].sum()) > 0 for r in prepared):  # a bug of the plugin's: any "x" breaks it
            raise RuntimeError("letter table overflow")
        dev = self._anchor.device
        return Condition.cat([
            Condition(r[None].to(dev), torch.ones(1, len(r), dtype=torch.bool, device=dev)) for r in prepared
        ])

    def null_condition(self, batch_size=1) -> Condition:
        return self.encode(self.prepare([""] * batch_size))


@hookimpl
def register_conditioners(register):
    register(LetterCounts)
'''

BROKEN = '''
import not_an_installed_dependency_of_mka  # noqa: F401

from mka_core import hookimpl


@hookimpl
def register_conditioners(register):
    pass
'''

DISTRIBUTIONS = "fake-letters,fake-broken-letters"


def install(root: Path) -> None:
    """Write both fake distributions under ``root`` (put it on sys.path with ``on_sys_path``)."""
    make_distribution(root, "fake-letters", "0.3.0", {"fake_letters": LETTERS}, {"letters": "fake_letters"})
    make_distribution(root, "fake-broken-letters", "0.1", {"fake_broken_letters": BROKEN},
                      {"broken-letters": "fake_broken_letters"})
