"""Expert distillation (pseudo prompt enhancement, Make-An-Audio section 3.1): better captions offline.

Caption experts propose candidate captions for each clip: *captioners* describe the audio,
*retrievers* return captions of similar clips from a captioned corpus. A CLAP model scores every
candidate against its clip; the best candidate replaces the row's caption when its score is
greater than the threshold. Rows whose best candidate does not pass (or that got no candidate,
or whose audio cannot be read) keep their caption and are reported.

Experts are plugins: ``register_caption_experts(register)`` registers :class:`CaptionExpert`
subclasses (or instances); ``mka data caption`` asks every registered expert, or the ones named.
mka's own two (``clap-retrieval`` and ``panns-tags``, :mod:`training.experts`) register the
same way.

Settings: a class is instantiated with the keyword arguments its ``__init__`` accepts among
those ``mka data caption`` offers - ``corpus`` (the captioned manifest retrievers search:
``--corpus``, else the manifest being captioned), ``clap`` (the ``--clap`` weights) and
``device`` (``--device``). A class taking none of them is instantiated with no arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch

from mka_core.errors import InputError, PluginError

ExpertKind = Literal["captioner", "retriever"]
DEFAULT_THRESHOLD = 0.0
DEFAULT_SAMPLE_RATE = 16000


class CaptionExpert:
    """Base class of a caption expert (the contract ``mka data caption`` relies on).

    Class attributes: ``name`` (unique among experts), ``kind`` (``"captioner"`` or
    ``"retriever"``), ``summary`` (one line for listings) and ``sample_rate`` (the rate the
    audio is given at; 16 kHz by default). The class is instantiated with no arguments when
    ``mka data caption`` starts, so load models in ``__init__`` (or lazily on first use).

    :meth:`propose` receives a batch of clips (a list of 1-D float32 numpy arrays, mono, at
    ``sample_rate``, of any lengths) and returns one list of candidate captions per clip, in
    the batch's order; a list may be empty when the expert has nothing to offer for that clip.
    """

    name: ClassVar[str]
    kind: ClassVar[ExpertKind]
    summary: ClassVar[str] = ""
    sample_rate: ClassVar[int] = DEFAULT_SAMPLE_RATE

    def propose(self, audio_batch: list[np.ndarray]) -> list[list[str]]:  # pragma: no cover - abstract
        raise NotImplementedError


class CandidateScorer(Protocol):
    """What distillation needs from CLAP: a score for each candidate of each clip."""

    def score_candidates(self, waveforms: Sequence[Any], candidates: Sequence[Sequence[str]],
                         sample_rate: int | None = None) -> list[list[float]]: ...


class PairScorer:
    """Adapts a ranking scorer ``scorer(waveforms [B, N], prompts) -> [B]`` to :class:`CandidateScorer`
    (each clip repeated once per candidate, so clips of different lengths never share a batch)."""

    def __init__(self, scorer: Callable[[torch.Tensor, list[str]], Any]) -> None:
        self.scorer = scorer

    def score_candidates(self, waveforms: Sequence[Any], candidates: Sequence[Sequence[str]],
                         sample_rate: int | None = None) -> list[list[float]]:
        out = []
        for wave, group in zip(waveforms, candidates):
            if not group:
                out.append([])
                continue
            batch = torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(1, -1).repeat(len(group), 1)
            out.append([float(s) for s in torch.as_tensor(self.scorer(batch, list(group))).flatten().tolist()])
        return out


def as_candidate_scorer(scorer: Any) -> CandidateScorer:
    return scorer if hasattr(scorer, "score_candidates") else PairScorer(scorer)


@dataclass
class Candidate:
    expert: str
    caption: str
    score: float


@dataclass
class Decision:
    """The outcome for one row."""

    name: str
    old_caption: str
    caption: str
    #: True when a candidate replaced the caption.
    replaced: bool
    #: Why the caption was kept ("below threshold", "no candidates", "unreadable audio: ...").
    reason: str = ""
    best: Candidate | None = None
    candidates: list[Candidate] = field(default_factory=list)


# -- experts ---------------------------------------------------------------------------------------


def registered_experts(names: Sequence[str] | None = None, options: dict[str, Any] | None = None,
                       skipped: list[tuple[str, str]] | None = None) -> list[CaptionExpert]:
    """The registered caption experts (all, or those named), ready to use (see the module docstring for ``options``).

    With ``skipped`` (a list) and no ``names``, an expert that cannot start (its weights are not
    pulled, it needs a setting) is left out and ``(name, reason)`` appended there; an expert named
    explicitly always raises. When none can start, the first reason is raised.
    """
    from mka_core.plugins import manager

    known = manager.names("caption-expert")
    if not known:
        raise InputError("No caption experts are installed; install a plugin that registers one "
                         "(hook register_caption_experts, see docs/plugins.md).")
    wanted = list(names) if names else known
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise InputError(f"Unknown caption expert '{unknown[0]}'; installed experts: {', '.join(known)}.")
    if names or skipped is None:
        return [instantiate(manager.get("caption-expert", n), n, options) for n in wanted]
    from mka_core.errors import MkaError

    experts, first = [], None
    for n in wanted:
        try:
            experts.append(instantiate(manager.get("caption-expert", n), n, options))
        except MkaError as exc:
            first = first or exc
            skipped.append((n, str(exc)))
    if not experts and first is not None:
        raise first
    return experts


def accepted_options(cls: type, options: dict[str, Any] | None) -> dict[str, Any]:
    """The entries of ``options`` that ``cls.__init__`` takes by name."""
    import inspect

    if not options or cls.__init__ is object.__init__:
        return {}
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {k: v for k, v in options.items() if takes_any or k in params}


def instantiate(obj: Any, name: str, options: dict[str, Any] | None = None) -> CaptionExpert:
    expert = obj(**accepted_options(obj, options)) if isinstance(obj, type) else obj
    kind = getattr(expert, "kind", None)
    if kind not in ("captioner", "retriever"):
        raise PluginError(f"Caption expert '{name}' has kind {kind!r}; it must be 'captioner' or 'retriever'.")
    if not callable(getattr(expert, "propose", None)):
        raise PluginError(f"Caption expert '{name}' has no propose(audio_batch) method.")
    return expert


def _proposals(expert: CaptionExpert, batch: list[np.ndarray]) -> list[list[str]]:
    name = getattr(expert, "name", type(expert).__name__)
    try:
        proposed = expert.propose(batch)
    except InputError:
        raise
    except Exception as exc:  # a broken expert names itself instead of surfacing a traceback
        raise PluginError(f"Caption expert '{name}' failed while proposing captions: {exc}") from exc
    if not isinstance(proposed, (list, tuple)) or len(proposed) != len(batch):
        raise PluginError(f"Caption expert '{name}' returned {len(proposed) if isinstance(proposed, (list, tuple)) else type(proposed).__name__} "
                          f"candidate lists for {len(batch)} clips; it must return one list per clip.")
    out = []
    for group in proposed:
        if isinstance(group, str) or not isinstance(group, (list, tuple)):
            raise PluginError(f"Caption expert '{name}' must return a list of captions per clip, got {type(group).__name__}.")
        out.append([" ".join(str(c).split()) for c in group if str(c).strip()])
    return out


# -- distillation --------------------------------------------------------------------------------


def distill(clips: Sequence[np.ndarray | None], captions: Sequence[str], experts: Sequence[CaptionExpert],
            scorer: Any, *, threshold: float = DEFAULT_THRESHOLD, sample_rate: int = DEFAULT_SAMPLE_RATE,
            names: Sequence[str] | None = None, errors: Sequence[str] | None = None) -> list[Decision]:
    """Decide the caption of each clip of one batch (``None`` clips are reported with ``errors``)."""
    from mka_core.audio.io import resample

    names = list(names) if names is not None else [str(i) for i in range(len(clips))]
    readable = [i for i, clip in enumerate(clips) if clip is not None]
    batch = [np.asarray(clips[i], dtype=np.float32).reshape(-1) for i in readable]
    per_clip: list[list[tuple[str, str]]] = [[] for _ in readable]
    for expert in experts if batch else []:
        rate = int(getattr(expert, "sample_rate", sample_rate) or sample_rate)
        audio = batch if rate == sample_rate else [resample(torch.from_numpy(w), sample_rate, rate).numpy() for w in batch]
        for slot, group in zip(per_clip, _proposals(expert, audio)):
            seen = {c for _, c in slot}
            for caption in group:
                if caption not in seen:  # the same caption from two experts is scored once (first expert named)
                    seen.add(caption)
                    slot.append((expert.name, caption))
    scores = as_candidate_scorer(scorer).score_candidates(batch, [[c for _, c in slot] for slot in per_clip], sample_rate) if batch else []
    decisions: list[Decision] = []
    for i, name in enumerate(names):
        old = captions[i]
        if clips[i] is None:
            reason = f"unreadable audio: {errors[i] if errors else 'no audio'}"
            decisions.append(Decision(name, old, old, False, reason))
            continue
        k = readable.index(i)
        candidates = [Candidate(expert, caption, float(score)) for (expert, caption), score in zip(per_clip[k], scores[k])]
        if not candidates:
            decisions.append(Decision(name, old, old, False, "no candidates"))
            continue
        best = max(candidates, key=lambda c: c.score)  # first proposed wins a tie
        if best.score > threshold:
            decisions.append(Decision(name, old, best.caption, True, "", best, candidates))
        else:
            decisions.append(Decision(name, old, old, False, "below threshold", best, candidates))
    return decisions


def distill_rows(rows: Sequence[Any], experts: Sequence[CaptionExpert], scorer: Any, *,
                 threshold: float = DEFAULT_THRESHOLD, sample_rate: int = DEFAULT_SAMPLE_RATE, batch_size: int = 8,
                 progress: Callable[[int], None] | None = None) -> list[Decision]:
    """:func:`distill` over manifest rows, reading their audio in batches of ``batch_size``."""
    from mka_core.audio.io import load_audio
    from mka_core.errors import MkaError

    if batch_size < 1:
        raise InputError(f"The batch size must be at least 1, got {batch_size}.")
    decisions: list[Decision] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        clips: list[np.ndarray | None] = []
        errors: list[str] = []
        for row in chunk:
            try:
                clips.append(load_audio(row.audio_path, sample_rate).numpy())
                errors.append("")
            except MkaError as exc:
                clips.append(None)
                errors.append(str(exc))
        decisions += distill(clips, [row.caption for row in chunk], experts, scorer, threshold=threshold,
                             sample_rate=sample_rate, names=[row.name for row in chunk], errors=errors)
        if progress is not None:
            progress(len(chunk))
    return decisions


def apply_decisions(rows: Sequence[Any], decisions: Sequence[Decision]) -> list[Any]:
    """Copies of ``rows`` with the decided captions, and ``caption_expert`` / ``caption_score`` columns
    (the expert whose caption was kept, or empty, and the best candidate's CLAP score)."""
    import dataclasses

    out = []
    for row, decision in zip(rows, decisions):
        extra = dict(row.extra)
        extra["caption_expert"] = decision.best.expert if decision.replaced and decision.best else ""
        extra["caption_score"] = f"{decision.best.score:.4f}" if decision.best else ""
        out.append(dataclasses.replace(row, caption=decision.caption, extra=extra))
    return out
