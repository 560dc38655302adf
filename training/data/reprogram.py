"""Dynamic reprogramming (pseudo prompt enhancement, Make-An-Audio section 3.1 and appendix F).

Online, for every training item: draw N in {0, 1, 2} extra events from a database of
single-label clips, append their audio to the item's audio (plain concatenation, in order:
the item, then event 1, then event 2) and compose the caption from a template that names the
parts in that same order. A label-only dataset becomes a captioned one this way, and captioned
data gains compositions it never contained.

**The templates and word lists are mka's own.** The paper's appendix F lists twelve caption
templates and the verb / adjective / noun / quantifier lists they draw from, but their exact
text could not be found from this project's machines, so mka ships twelve templates and four
lists of its own, written to the same plan (documented in ``docs/training-data.md``). Pass
``templates=`` and ``words=`` to use others, for example the paper's.

Template syntax: ``<text>`` is the item's own text, ``<e1>`` and ``<e2>`` are the drawn events,
``<v>`` is a verb. The number of event placeholders in a template is the number of events it
describes, so a template is only used when exactly that many events were drawn. Each event
(and the item's own label, for label-only items) reads ``<q> <a> <label> <n>``: a quantifier,
an adjective, the label and a noun, each drawn from its list ("a distant dog bark sound");
``a`` becomes ``an`` before a vowel.

Captions versus labels: an item whose text is a caption keeps it untouched when N = 0 (and
``<text>`` is the caption with trailing punctuation removed); an item that only has a label
(a manifest row with an empty caption and a ``labels`` column, or a string that is one of the
database's labels) always gets a template, so it always comes out captioned.

Every random choice comes from the ``rng`` the caller passes (the training dataset derives it
from the run seed and the item's position), so a resumed run sees the same compositions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mka_core.errors import InputError

#: The twelve templates, four per number of drawn events (0, 1, 2). The zero-event ones only
#: serve label-only items; a captioned item with N = 0 keeps its caption.
TEMPLATES: tuple[str, ...] = (
    # no extra event: the item's own label, turned into a caption
    "<text>",
    "<text> is <v>",
    "there is <text>",
    "you can hear <text>",
    # one extra event
    "<text> followed by <e1>",
    "<text>, then <e1> is <v>",
    "<text> before <e1>",
    "<e1> is <v> after <text>",
    # two extra events
    "<text> followed by <e1> and <e2>",
    "<text>, then <e1>, then <e2>",
    "<text> before <e1>, and finally <e2> is <v>",
    "first <text>, next <e1>, and last <e2>",
)

#: Verbs (``<v>``), written to follow "is".
VERBS: tuple[str, ...] = ("heard", "audible", "playing", "present", "sounding")
#: Adjectives (``<a>``) describing an event.
ADJECTIVES: tuple[str, ...] = ("loud", "soft", "faint", "distant", "clear", "sudden", "brief", "steady")
#: Nouns (``<n>``) closing an event phrase.
NOUNS: tuple[str, ...] = ("sound", "noise", "recording")
#: Quantifiers (``<q>``) opening an event phrase (singular: every phrase names one clip).
QUANTIFIERS: tuple[str, ...] = ("a", "one", "a single")

WORD_KEYS = ("v", "a", "n", "q")
DEFAULT_WORDS: dict[str, tuple[str, ...]] = {"v": VERBS, "a": ADJECTIVES, "n": NOUNS, "q": QUANTIFIERS}
DEFAULT_PROBABILITIES = (0.4, 0.3, 0.3)

_PLACEHOLDER = re.compile(r"<([a-z0-9]+)>")
_KNOWN = {"text", "e1", "e2", "v"}

#: A database clip: its audio (1-D, at the training rate) or a function returning it, and its label.
Clip = tuple[np.ndarray | Callable[[], np.ndarray], str]


def template_events(template: str) -> int:
    """How many drawn events ``template`` describes (0, 1 or 2); a malformed template is an InputError."""
    names = _PLACEHOLDER.findall(template)
    unknown = sorted(set(names) - _KNOWN)
    if unknown:
        raise InputError(f"The template {template!r} uses <{unknown[0]}>; templates may use <text>, <e1>, <e2> and <v>.")
    if names.count("text") != 1:
        raise InputError(f"The template {template!r} must contain <text> exactly once.")
    events = {name for name in names if name.startswith("e")}
    if events not in (set(), {"e1"}, {"e1", "e2"}) or any(names.count(e) != 1 for e in events):
        raise InputError(f"The template {template!r} must name its events once each as <e1>, or <e1> and <e2>.")
    return len(events)


def fix_articles(text: str) -> str:
    """``a`` -> ``an`` before a word starting with a vowel letter."""
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", lambda m: m.group(1) + "n ", text)


def fill_template(template: str, text: str, events: Sequence[str], verb: str) -> str:
    """The caption ``template`` gives for the item's ``text``, the event phrases and the verb."""
    values = {"text": text, "v": verb, **{f"e{i + 1}": phrase for i, phrase in enumerate(events)}}
    return fix_articles(_PLACEHOLDER.sub(lambda m: values[m.group(1)], template))


def event_phrase(label: str, words: Mapping[str, Sequence[str]], rng: np.random.Generator) -> str:
    """``<q> <a> <label> <n>`` with words drawn from ``words``."""
    q, a, n = (str(words[k][int(rng.integers(len(words[k])))]) for k in ("q", "a", "n"))
    return " ".join(part for part in (q, a, label.strip(), n) if part)


def clean_caption(caption: str) -> str:
    return caption.strip().rstrip(".!;,").strip()


@dataclass
class Reprogrammed:
    """What one call produced (for logging and tests): the events appended and the template used."""

    audio: np.ndarray
    caption: str
    #: The drawn clips' labels and the phrases naming them, in the order they were appended.
    labels: list[str]
    events: list[str]
    template: str | None


class Reprogrammer:
    """``Reprogrammer(database, templates=..., seed=...)``; ``reprogrammer(audio, text, rng) -> (audio, caption)``.

    ``database``: single-label clips as ``(audio, label)`` pairs, the audio 1-D at the training
    sample rate (or a zero-argument function returning it, so large databases load lazily).
    ``probabilities``: P(N = 0), P(N = 1), P(N = 2). ``words``: replacement word lists by key
    (``v``, ``a``, ``n``, ``q``). ``max_samples``: if set, events that would make the audio longer
    are not drawn (the caption still names exactly what the audio holds). ``seed`` seeds the
    generator used when a call passes no ``rng``.
    """

    def __init__(self, database: Sequence[Clip], templates: Sequence[str] = TEMPLATES, seed: int = 0, *,
                 probabilities: Sequence[float] = DEFAULT_PROBABILITIES,
                 words: Mapping[str, Sequence[str]] | None = None, max_samples: int | None = None) -> None:
        self.database = list(database)
        for index, item in enumerate(self.database):
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], str) and item[1].strip()):
                raise InputError(f"Database entry {index} must be an (audio, label) pair with a non-empty label.")
        self.templates = [str(t) for t in templates]
        if not self.templates:
            raise InputError("Give at least one template.")
        self.by_events: dict[int, list[str]] = {0: [], 1: [], 2: []}
        for template in self.templates:
            self.by_events[template_events(template)].append(template)
        self.probabilities = self._check_probabilities(probabilities)
        self.words = {key: tuple(DEFAULT_WORDS[key]) for key in WORD_KEYS}
        for key, values in (words or {}).items():
            if key not in DEFAULT_WORDS:
                raise InputError(f"Unknown word list {key!r}; the lists are v (verbs), a (adjectives), n (nouns), q (quantifiers).")
            if not values:
                raise InputError(f"The word list {key!r} is empty; give at least one word.")
            self.words[key] = tuple(str(v) for v in values)
        self.labels = {label.strip().lower() for _, label in self.database}
        self.max_samples = max_samples
        self.rng = np.random.default_rng(seed)

    def _check_probabilities(self, probabilities: Sequence[float]) -> np.ndarray:
        p = np.asarray(list(probabilities), dtype=np.float64)
        if p.shape != (3,) or not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-6:
            raise InputError(f"probabilities must be three non-negative numbers P(N=0), P(N=1), P(N=2) summing to 1, "
                             f"got {list(probabilities)}.")
        for n in (1, 2):
            if p[n] > 0 and not self.by_events[n]:
                raise InputError(f"P(N={n}) is {p[n]:g} but no template describes {n} extra event(s); add one or set it to 0.")
        if (p[1] > 0 or p[2] > 0) and not self.database:
            raise InputError("The reprogramming database is empty; give single-label clips to draw events from.")
        return p

    # -- one item ------------------------------------------------------------------------------------
    def __call__(self, audio: Any, label_or_caption: Any, rng: np.random.Generator | None = None) -> tuple[np.ndarray, str]:
        """The item's audio with the drawn events appended, and its composed caption.

        ``label_or_caption``: a caption, a label (a string that is one of the database's labels),
        or a manifest row (its caption, or its ``labels`` when the caption is empty).
        """
        result = self.apply(audio, label_or_caption, rng)
        return result.audio, result.caption

    def apply(self, audio: Any, label_or_caption: Any, rng: np.random.Generator | None = None) -> Reprogrammed:
        rng = self.rng if rng is None else rng
        text, is_label = self._text_of(label_or_caption)
        wave = _as_wave(audio, "the item's audio")
        n = int(rng.choice(3, p=self.probabilities))
        picks = self._draw(n, len(wave), rng)
        parts = [wave] + [clip for clip, _ in picks]
        events = [event_phrase(label, self.words, rng) for _, label in picks]
        own = event_phrase(text, self.words, rng) if is_label else clean_caption(text)
        choices = self.by_events[len(picks)]
        if not picks and not is_label:
            return Reprogrammed(wave, text, [], [], None)  # a captioned item with no extra event stays as it is
        if not choices:  # a label-only item with no zero-event template: the bare phrase
            return Reprogrammed(wave, own, [], [], None)
        template = choices[int(rng.integers(len(choices)))]
        verb = self.words["v"][int(rng.integers(len(self.words["v"])))]
        caption = fill_template(template, own, events, verb)
        return Reprogrammed(np.concatenate(parts).astype(np.float32, copy=False), caption, [label for _, label in picks],
                            events, template)

    def _text_of(self, item: Any) -> tuple[str, bool]:
        caption = getattr(item, "caption", None)
        if caption is not None:  # a manifest row
            if str(caption).strip():
                return str(caption), False
            labels = list(getattr(item, "labels", []) or [])
            if not labels:
                raise InputError(f"Row {getattr(item, 'name', '?')} has neither a caption nor a label to reprogram.")
            return " and ".join(labels), True
        text = str(item or "").strip()
        if not text:
            raise InputError("Dynamic reprogramming got an empty caption; give a caption or a label.")
        return text, text.lower() in self.labels

    def _draw(self, n: int, length: int, rng: np.random.Generator) -> list[tuple[np.ndarray, str]]:
        if n == 0:
            return []
        # Distinct clips when the database has enough of them.
        indices = rng.choice(len(self.database), size=n, replace=len(self.database) < n)
        picks: list[tuple[np.ndarray, str]] = []
        for index in indices:
            source, label = self.database[int(index)]
            clip = _as_wave(source() if callable(source) else source, f"database clip {int(index)} ({label})")
            if self.max_samples is not None and length + len(clip) > self.max_samples:
                break  # fewer events, so the caption never names audio that is not there
            length += len(clip)
            picks.append((clip, label.strip()))
        return picks


def _as_wave(audio: Any, what: str) -> np.ndarray:
    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().numpy()
    wave = np.asarray(audio, dtype=np.float32)
    if wave.ndim != 1:
        wave = wave.reshape(-1) if wave.ndim == 2 and 1 in wave.shape else wave
    if wave.ndim != 1 or wave.size == 0:
        raise InputError(f"{what} must be non-empty mono audio (1-D), got shape {tuple(np.shape(audio))}.")
    if not np.all(np.isfinite(wave)):
        raise InputError(f"{what} has NaN or Inf samples.")
    return wave


# -- from a manifest (the diffusion trainer's `model.reprogram`) ---------------------------------------


class ManifestClip:
    """A database clip read from disk when drawn (picklable, so DataLoader workers can use it)."""

    def __init__(self, path: str, sample_rate: int) -> None:
        self.path, self.sample_rate = path, sample_rate

    def __call__(self) -> np.ndarray:
        from mka_core.audio.io import load_audio

        return load_audio(self.path, self.sample_rate).numpy()


def reprogrammer_for_manifest(database: str | Path, *, probabilities: Sequence[float] = DEFAULT_PROBABILITIES,
                              seed: int = 0, sample_rate: int = 16000, templates: Sequence[str] = TEMPLATES,
                              max_samples: int | None = None) -> Callable[[np.ndarray, Any, np.random.Generator], tuple[np.ndarray, str]]:
    """A :class:`Reprogrammer` over the single-label rows of a manifest (its ``labels`` column).

    Returns a callable with the training dataset's ``audio_transform`` signature
    ``(waveform, row, rng) -> (waveform, caption)``.
    """
    from training.data.manifest import read_manifest

    rows = read_manifest(database)
    clips: list[Clip] = [(ManifestClip(row.audio_path, sample_rate), row.labels[0]) for row in rows if len(row.labels) == 1]
    if not clips:
        raise InputError(f"The manifest {database} has no single-label rows (a 'labels' column with one label) to draw "
                         "reprogramming events from.")
    return Reprogrammer(clips, templates, seed, probabilities=probabilities, max_samples=max_samples)
