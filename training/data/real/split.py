"""Train / valid / held-out split by source recording.

Each kept recording's split comes from a hash of its decoded content (the exact content hash,
so it does not depend on the file's name or container): the SHA-256 of that hash mapped to
[0, 1) is compared with the held-out and valid fractions. Every clip made from a recording
(its windows, the sequences and backgrounds it appears in) goes to that recording's split,
and clips only combine recordings of the same split, so no recording is heard in two splits.

A class with at least ``min_for_heldout`` recordings but none drawn for held-out gets its
recording with the lowest hash value moved there (likewise for valid with twice as many), so
every well-populated class can be evaluated; a class with fewer than ``min_train`` recordings in
train gets its highest-valued others moved back to train (all of them if it has no more), so
every class can be learnt from more than one take where it has them: a thin class such as the
three real dog-bark recordings keeps two for training and holds one out. This too depends only
on the recordings.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Iterable

SPLITS = ("train", "valid", "heldout")


def hash_fraction(key: str, salt: str = "mka-real-split") -> float:
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(items: Iterable[tuple[str, str]], heldout: float = 0.15, valid: float = 0.05,
                  min_for_heldout: int = 3, min_train: int = 2) -> dict[str, str]:
    """``items``: (recording key, class). Returns key -> split name."""
    if not (0 <= heldout < 1 and 0 <= valid < 1 and heldout + valid < 1):
        raise ValueError("split fractions must be in [0, 1) and sum to less than 1")
    by_class: dict[str, list[tuple[float, str]]] = defaultdict(list)
    splits = {}
    for key, label in items:
        fraction = hash_fraction(key)
        by_class[label].append((fraction, key))
        splits[key] = "heldout" if fraction < heldout else "valid" if fraction < heldout + valid else "train"
    for label, members in by_class.items():
        members.sort()
        for split, needed in (("heldout", min_for_heldout), ("valid", 2 * min_for_heldout)):
            if len(members) >= needed and (split == "heldout" and heldout > 0 or split == "valid" and valid > 0) \
                    and not any(splits[key] == split for _, key in members):
                candidates = [key for _, key in members if splits[key] == "train"]
                if candidates:
                    splits[candidates[0]] = split
        # A class nobody can learn is no use to evaluate, and one take of a sound is a poor teacher:
        # the highest-valued recordings outside train go back until min_train of them train.
        outside = [key for _, key in members if splits[key] != "train"]
        while outside and sum(splits[key] == "train" for _, key in members) < max(1, min_train):
            splits[outside.pop()] = "train"
    return splits
