"""Captions in varied natural language, with held-out sentence frames.

A caption is built in two layers. Each event gets a noun phrase ("a high-pitched siren
wailing") and a clause ("a high-pitched siren wails") from :mod:`captions_vocab`, with
adjectives and adverbs earned by its parameters. A *frame* then places the phrases in a
sentence ("the sound of {np}", "{c1}, then {c2}", "{np1} with {np2} in the background") and
may add the room or the background noise ("in a large hall").

The frames come in two disjoint sets per composition mode: ``train`` (used by the train and
valid splits) and ``heldout`` (used only by the held-out split). Every held-out frame has
words no train frame has, so no held-out caption can equal a train caption; the frame's id
(``single.t2``, ``then.h0``...) is written to the manifest's ``template`` column.
"""

from __future__ import annotations

import re

import numpy as np

from mka_core.errors import InputError
from training.data.synth.captions_vocab import (
    LOUDNESS,
    NOISE_ENDINGS,
    ROOM_ENDINGS,
    VOCAB,
)

FRAMES: dict[str, dict[str, list[str]]] = {
    "single": {
        "train": ["{np1}", "{c1}", "the sound of {np1}", "a recording of {np1}", "{np1} can be heard",
                  "an audio clip of {np1}", "sounds of {np1}"],
        "heldout": ["you can hear {np1}", "in this recording, {c1}", "listen to {np1}", "here, {c1}",
                    "this clip captures {np1}", "what we hear is {np1}"],
    },
    "then": {
        "train": ["{c1}, then {c2}", "{np1} followed by {np2}", "{c1}, and then {c2}", "first {np1}, then {np2}",
                  "{np1}, then {np2}"],
        "heldout": ["{c1}; after that, {c2}", "{np1}, and afterwards {np2}", "{c1} before {c2}",
                    "{np1} gives way to {np2}", "{np1} and later on {np2}"],
    },
    "while": {
        "train": ["{c1} while {c2}", "{np1} and {np2} at the same time", "{c1} as {c2}", "{np1} together with {np2}",
                  "{np1} and {np2}"],
        "heldout": ["{np1} mixed with {np2}", "{c1}, and meanwhile {c2}", "{np1} alongside {np2}", "{c1} whilst {c2}",
                    "{np1} combined with {np2}"],
    },
    "background": {
        "train": ["{np1} with {np2} in the background", "{c1} with {np2} in the background",
                  "{c1} while {np2} can be heard in the background", "{c1}; in the background, {c2}"],
        "heldout": ["{np1} against a backdrop of {np2}", "{c1} over a soft bed of {np2}",
                    "{np1}; behind it, {np2} is faintly audible", "{c1}, with {np2} underneath"],
    },
}

SPLIT_FRAMES = {"train": "train", "valid": "train", "heldout": "heldout"}
_CONDITION = re.compile(r"^\[(\w+)(!?=)(\w+)\]")
_ARTICLE = "\x01"


def frame_set(split: str) -> str:
    """Which frame set a split draws from (``train`` and ``valid`` share one)."""
    if split not in SPLIT_FRAMES:
        raise InputError(f"Unknown split {split!r}; choose from {', '.join(SPLIT_FRAMES)}.")
    return SPLIT_FRAMES[split]


def _allowed(template: str, tags: dict) -> tuple[bool, str]:
    match = _CONDITION.match(template)
    if match is None:
        return True, template
    key, op, value = match.groups()
    ok = (tags.get(key) == value) == (op == "=")
    return ok, template[match.end():]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _fix_articles(text: str) -> str:
    # "{A}" became a marker followed by the adjectives; the article agrees with the next word.
    def article(match: re.Match) -> str:
        return "an " if match.group(1).lower() in "aeiou" else "a "

    return re.sub(_ARTICLE + r"\s*(?=(\w))", article, text)


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s+([,;])", r"\1", text)


def event_phrases(name: str, tags: dict, rng: np.random.Generator, loudness: str = "",
                  vocab_table: dict | None = None) -> tuple[str, str]:
    """(noun phrase, clause) for one event with the given tags; ``loudness`` is "loud", "quiet" or "".

    ``vocab_table``: the phrase tables by class name (default: the synthetic corpus's VOCAB; the
    real-recording corpus passes its label map's)."""
    vocab = (VOCAB if vocab_table is None else vocab_table)[name]
    tags = {k: v for k, v in tags.items() if v}
    surface_words = vocab.get("surfaces", {}).get(tags.get(vocab.get("surface_tag", "surface"), ""), ["floor"])
    surface = _pick(rng, surface_words)

    def fill(template: str) -> str:
        adverb_tag, adverb = "", ""
        if "{ADV}" in template:
            options = [(tag, word) for tag, words in vocab.get("adverbs", {}).items()
                       for value, group in words.items() if tags.get(tag) == value for word in group]
            if options:
                adverb_tag, adverb = options[int(rng.integers(len(options)))]
        adjectives = []
        for tag in sorted(tags):
            groups = vocab.get("adjectives", {}).get(tag, {})
            if tag != adverb_tag and tags[tag] in groups and rng.uniform() < 0.75:
                adjectives.append(_pick(rng, groups[tags[tag]]))
        rng.shuffle(adjectives)
        adjectives = adjectives[:2]
        if loudness and not vocab.get("no_loudness") and rng.uniform() < 0.7:
            adjectives.insert(0, _pick(rng, LOUDNESS[loudness]))
        words = " ".join(adjectives)
        text = (template.replace("{A}", f"{_ARTICLE}{words} ").replace("{J}", words)
                .replace("{ADV}", adverb).replace("{SURFACE}", surface))
        return _tidy(_fix_articles(text))

    def choose(options: list[str]) -> str:
        usable = [body for ok, body in (_allowed(t, tags) for t in options) if ok]
        return fill(_pick(rng, usable))

    specials = [phrase for (tag, value), phrases in vocab.get("special", {}).items() if tags.get(tag) == value
                for phrase in phrases]
    if specials and rng.uniform() < 0.3:
        noun_phrase = _tidy(_pick(rng, specials).replace("{SURFACE}", surface))
    else:
        noun_phrase = choose(vocab["np"])
    return noun_phrase, choose(vocab["clause"])


def compose_caption(mode: str, events: list[tuple[str, dict]], clip_tags: dict, split: str,
                    rng: np.random.Generator, vocab_table: dict | None = None) -> tuple[str, str]:
    """A caption and its frame id for a clip.

    ``events``: (class name, tags) in the clip's order (lead first); ``clip_tags``: the scene's
    room, noise and loudness tags; ``split``: train, valid or heldout.
    """
    kind = frame_set(split)
    frames = FRAMES[mode][kind]
    index = int(rng.integers(len(frames)))
    slots: dict[str, str] = {}
    for k, (name, tags) in enumerate(events, start=1):
        # A background sound is quiet by construction; the clip's loudness describes the lead.
        loudness = clip_tags.get("loudness", "") if k == 1 else ""
        slots[f"np{k}"], slots[f"c{k}"] = event_phrases(name, tags, rng, loudness, vocab_table)
    text = frames[index].format(**slots)
    endings = []
    if clip_tags.get("room") and rng.uniform() < 0.5:
        endings.append(_pick(rng, ROOM_ENDINGS[clip_tags["room"]]))
    if clip_tags.get("noise") and rng.uniform() < 0.4:
        endings.append(_pick(rng, NOISE_ENDINGS[clip_tags["noise"]]))
    if endings:
        text = f"{text} {', '.join(endings)}"
    text = _tidy(text)
    return text[:1].upper() + text[1:], f"{mode}.{kind[0]}{index}"
