"""The on-disk embedding cache: hits equal fresh encodings, misses batch, corruption re-encodes."""

from __future__ import annotations

import torch

from mka_core.embedding_cache import EmbeddingCache, encode_with_cache
from mka_core.plugins import manager


def test_cache_hits_equal_fresh_encodings(tmp_path):
    cond = manager.get("conditioner", "bert").build_random("tiny", 0)
    cache = EmbeddingCache(tmp_path)
    prompts = ["a dog barks", "rain on a tin roof at night", ""]
    first = encode_with_cache(cond, prompts, cache)
    assert (cache.hits, cache.misses) == (0, 3)
    again = encode_with_cache(cond, list(reversed(prompts)), cache)
    assert (cache.hits, cache.misses) == (3, 3)
    fresh = cond(prompts)
    for i in range(3):
        n = int(fresh.mask[i].sum())
        assert torch.allclose(first.embeds[i, :n], fresh.embeds[i, :n], atol=1e-6)
        assert torch.equal(again.embeds[2 - i, :n], first.embeds[i, :n])


def test_corrupt_entries_are_encoded_again(tmp_path):
    cond = manager.get("conditioner", "bert").build_random("tiny", 0)
    cache = EmbeddingCache(tmp_path)
    reference = encode_with_cache(cond, ["wind"], cache)
    for path in tmp_path.rglob("*.safetensors"):
        path.write_bytes(b"garbage")
    again = encode_with_cache(cond, ["wind"], cache)
    assert cache.misses == 2 and torch.equal(again.embeds, reference.embeds)


def test_keys_follow_options(tmp_path):
    a = manager.get("conditioner", "bert").build_random("tiny", 0)
    b = manager.get("conditioner", "bert").build_random("tiny", 0, max_length=16)
    assert a.cache_key("x") != b.cache_key("x") and a.cache_key("x") == a.cache_key("x")
