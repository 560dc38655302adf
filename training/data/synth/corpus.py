"""Write a whole synthetic corpus: audio, train/valid/heldout manifests, classes.json, synth.json.

The corpus is a pure function of its settings: :func:`plan_corpus` decides every clip (split,
classes, composition, duration, per-clip seed) from the corpus seed alone, and each clip is
then rendered from its own seed, in any process, in any order. Hence the same seed gives the
same bytes with one worker or eight.

Class balance: within each split the lead class goes round the class list in turn (the
splits continue one another's rotation, so any corpus of at least ``len(classes)`` clips holds
every class), and the second classes of the compositions go round the list too (from a
random starting point per split), so every split has the same class balance.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mka_core.atomic import atomic_write
from mka_core.errors import InputError
from training.data.manifest import ManifestRow, write_manifest
from training.data.synth.captions import compose_caption
from training.data.synth.dsp import SAMPLE_RATE
from training.data.synth.events import CLASSES, event_class
from training.data.synth.scenes import (
    MAX_SECONDS,
    MIN_SECONDS,
    ClipSpec,
    render_scene,
    sample_scene,
    streams,
)

#: Bumped whenever the same settings would give different audio or captions.
SYNTH_VERSION = 1
DATASET = "mka-synth"
SPLITS = ("train", "valid", "heldout")
#: Share of each composition mode when compositions are allowed.
MODE_WEIGHTS = {"single": 0.5, "then": 1 / 6, "while": 1 / 6, "background": 1 / 6}
AUDIO_SUBTYPES = ("PCM_16", "FLOAT")


@dataclass(frozen=True)
class ClipPlan:
    index: int
    split: str
    spec: ClipSpec
    seed: int

    @property
    def name(self) -> str:
        return f"synth_{self.index:06d}"


@dataclass
class CorpusResult:
    """What :func:`generate_corpus` wrote, and how fast."""

    out_dir: Path
    manifests: dict[str, Path]
    counts: dict[str, int]
    seconds: float
    audio_hours: float
    summary: dict = field(default_factory=dict)

    @property
    def clips_per_second(self) -> float:
        return sum(self.counts.values()) / max(self.seconds, 1e-9)


def split_counts(n: int, holdout_fraction: float, valid_fraction: float) -> dict[str, int]:
    """Clips per split; a non-zero fraction gets at least one clip once there are three or more."""
    heldout = round(n * holdout_fraction)
    valid = round(n * valid_fraction)
    if holdout_fraction > 0 and heldout == 0 and n >= 3:
        heldout = 1
    if valid_fraction > 0 and valid == 0 and n >= 3:
        valid = 1
    while heldout + valid >= n and (heldout or valid):  # the train split always keeps a clip
        if valid >= heldout and valid:
            valid -= 1
        else:
            heldout -= 1
    return {"train": n - heldout - valid, "valid": valid, "heldout": heldout}


def _clip_seed(seed: int, index: int) -> int:
    words = np.random.SeedSequence([seed, 2, index]).generate_state(2, dtype=np.uint32)
    return int(words[0]) << 31 | int(words[1]) >> 1  # 62 bits: fits any int64 column


class _SecondClasses:
    """Hands out the second class of each composition in turn round the class list.

    A class that equals the clip's lead is owed rather than skipped: it goes to the next
    composition with another lead, so every class is a second class equally often.
    """

    def __init__(self, count: int, start: int) -> None:
        self.count, self.position, self.owed = count, start, []

    def next_for(self, lead: int) -> int:
        for k, owed in enumerate(self.owed):
            if owed != lead:
                return self.owed.pop(k)
        candidate = self.position % self.count
        self.position += 1
        if candidate == lead:
            self.owed.append(candidate)
            candidate = self.position % self.count
            self.position += 1
        return candidate


def plan_corpus(n: int, seed: int, *, holdout_fraction: float = 0.1, valid_fraction: float = 0.05,
                min_duration: float = 5.0, max_duration: float = 10.0, single_only: bool = False,
                classes: Sequence[str] | None = None) -> list[ClipPlan]:
    """Every clip of the corpus, decided from the seed (nothing is rendered)."""
    names = list(classes) if classes else list(CLASSES)
    rng = np.random.default_rng([seed, 1])
    counts = split_counts(n, holdout_fraction, valid_fraction)
    modes = list(MODE_WEIGHTS)
    weights = np.array(list(MODE_WEIGHTS.values()))
    plans: list[ClipPlan] = []
    rotation = 0
    for split in SPLITS:
        seconds = _SecondClasses(len(names), int(rng.integers(len(names))))
        for j in range(counts[split]):
            lead = (rotation + j) % len(names)
            mode = "single" if single_only or len(names) < 2 else str(rng.choice(modes, p=weights))
            duration = round(float(rng.uniform(min_duration, max_duration)), 2)
            chosen = (names[lead],) if mode == "single" else (names[lead], names[seconds.next_for(lead)])
            index = len(plans)
            plans.append(ClipPlan(index, split, ClipSpec(chosen, mode, duration), _clip_seed(seed, index)))
        rotation += counts[split]
    return plans


def make_clip(plan: ClipPlan, out_dir: str, subtype: str = "PCM_16") -> ManifestRow:
    """Render, caption and write one clip (runs in a worker); returns its manifest row."""
    from mka_core.audio.io import save_audio

    scene_rng, audio_rng, caption_rng = streams(plan.seed)
    scene = sample_scene(plan.spec, scene_rng)
    audio = render_scene(scene, audio_rng)
    caption, template = compose_caption(plan.spec.mode, [(e.name, e.params["tags"]) for e in scene.events],
                                        scene.tags, plan.split, caption_rng)
    path = save_audio(Path(out_dir) / "audio" / f"{plan.name}.wav", audio, SAMPLE_RATE, subtype=subtype)
    return ManifestRow(
        name=plan.name, dataset=DATASET, caption=caption, audio_path=str(path), mel_path="",
        duration=round(audio.size / SAMPLE_RATE, 4),
        extra={"labels": ";".join(plan.spec.classes), "mode": plan.spec.mode, "template": template,
               "seed": str(plan.seed)},
    )


def _pool_context():
    """Worker processes that start fast and share nothing with the parent's threads.

    A fork server (where the platform has one) is a fresh process that imports numpy, scipy
    and the audio writer once; each worker is then forked from it, ready at once. Plain
    ``fork`` could copy a parent's busy torch thread pool, and ``spawn`` pays the imports
    (seconds) in every worker.
    """
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["training.data.synth.corpus", "mka_core.audio.io"])
        return context
    return multiprocessing.get_context("spawn")


def _work(job: tuple[list[ClipPlan], str, str]) -> list[ManifestRow]:
    plans, out_dir, subtype = job
    return [make_clip(plan, out_dir, subtype) for plan in plans]


def _batches(plans: list[ClipPlan], size: int) -> list[list[ClipPlan]]:
    return [plans[i:i + size] for i in range(0, len(plans), size)]


def _run(plans: list[ClipPlan], out_dir: str, subtype: str, workers: int) -> Iterator[list[ManifestRow]]:
    if workers <= 1 or len(plans) < 16:
        for batch in _batches(plans, 1):
            yield _work((batch, out_dir, subtype))
        return
    # Small batches keep the progress bar moving.
    size = max(1, min(16, math.ceil(len(plans) / (workers * 8))))
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        yield from pool.map(_work, [(batch, out_dir, subtype) for batch in _batches(plans, size)])


def _progress(batches: Iterable[list[ManifestRow]], total: int, enabled: bool) -> Iterator[list[ManifestRow]]:
    if not enabled:
        yield from batches
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("[bold]synth"), BarColumn(), MofNCompleteColumn(), TextColumn("clips"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("synth", total=total)
        for batch in batches:
            bar.advance(task, len(batch))
            yield batch


def _check(out_dir: Path, n, seed, workers, holdout_fraction, valid_fraction, min_duration, max_duration,
           classes, subtype) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise InputError(f"The number of clips must be a positive whole number, got {n!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"The seed must be a whole number of 0 or more, got {seed!r}.")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"The number of workers must be at least 1, got {workers!r}.")
    for label, value in (("holdout_fraction", holdout_fraction), ("valid_fraction", valid_fraction)):
        if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
            raise InputError(f"{label} must be a number from 0 up to (not including) 1, got {value!r}.")
    if holdout_fraction + valid_fraction >= 1.0:
        raise InputError("holdout_fraction and valid_fraction together must leave some clips for training (sum < 1).")
    if not (MIN_SECONDS <= min_duration <= max_duration <= MAX_SECONDS):
        raise InputError(f"Durations must satisfy {MIN_SECONDS:g} <= min <= max <= {MAX_SECONDS:g} seconds, "
                         f"got {min_duration:g} to {max_duration:g}.")
    if classes is not None:
        if not classes:
            raise InputError("The class list is empty; name at least one class or leave it out for all of them.")
        for name in classes:
            event_class(name)
        if len(set(classes)) != len(classes):
            raise InputError("The class list names a class twice; name each class once.")
    if subtype not in AUDIO_SUBTYPES:
        raise InputError(f"The audio sample format must be one of {', '.join(AUDIO_SUBTYPES)}, got {subtype!r}.")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} exists and is not a folder; choose a folder for the corpus.")


def generate_corpus(out_dir: str | Path, n: int, seed: int = 0, workers: int = 1, holdout_fraction: float = 0.1,
                    valid_fraction: float = 0.05, *, min_duration: float = 5.0, max_duration: float = 10.0,
                    single_only: bool = False, classes: Sequence[str] | None = None, subtype: str = "PCM_16",
                    progress: bool = False) -> CorpusResult:
    """Synthesise ``n`` captioned clips into ``out_dir``.

    Writes ``audio/synth_NNNNNN.wav`` (16 kHz mono), ``train.tsv``, ``valid.tsv``,
    ``heldout.tsv`` (reference manifest columns plus ``labels``, ``mode``, ``template``,
    ``seed``), ``classes.json`` (the class list) and ``synth.json`` (the settings). Clips of an
    earlier corpus in the same folder that the new one does not have are removed.
    """
    out = Path(out_dir).expanduser()
    _check(out, n, seed, workers, holdout_fraction, valid_fraction, min_duration, max_duration, classes, subtype)
    n, seed, workers = int(n), int(seed), int(workers)
    names = list(classes) if classes else list(CLASSES)
    started = time.perf_counter()
    plans = plan_corpus(n, seed, holdout_fraction=holdout_fraction, valid_fraction=valid_fraction,
                        min_duration=min_duration, max_duration=max_duration, single_only=single_only, classes=names)
    had_corpus = (out / "synth.json").is_file()
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rows: list[ManifestRow] = []
    for batch in _progress(_run(plans, str(out), subtype, workers), len(plans), progress):
        rows.extend(batch)
    by_split = {split: [row for row, plan in zip(rows, plans) if plan.split == split] for split in SPLITS}
    manifests = {split: write_manifest(out / f"{split}.tsv", by_split[split]) for split in SPLITS}
    if had_corpus:
        keep = {f"{plan.name}.wav" for plan in plans}
        for stale in (out / "audio").glob("synth_*.wav"):
            if stale.name not in keep:
                stale.unlink()
    summary = _summary(plans, n, seed, names, holdout_fraction, valid_fraction, min_duration, max_duration,
                       single_only, subtype)
    with atomic_write(out / "classes.json", "w") as handle:
        handle.write(json.dumps(names, indent=2) + "\n")
    with atomic_write(out / "synth.json", "w") as handle:
        handle.write(json.dumps(summary, indent=2) + "\n")
    hours = sum(row.duration or 0.0 for row in rows) / 3600.0
    return CorpusResult(out, manifests, {s: len(by_split[s]) for s in SPLITS}, time.perf_counter() - started,
                        hours, summary)


def _summary(plans: list[ClipPlan], n: int, seed: int, names: list[str], holdout_fraction: float,
             valid_fraction: float, min_duration: float, max_duration: float, single_only: bool,
             subtype: str) -> dict:
    labels = {split: {name: 0 for name in names} for split in SPLITS}
    modes = {mode: 0 for mode in MODE_WEIGHTS}
    for plan in plans:
        modes[plan.spec.mode] += 1
        for name in plan.spec.classes:
            labels[plan.split][name] += 1
    return {
        "generator": "mka data synth", "version": SYNTH_VERSION, "seed": seed, "n": n,
        "sample_rate": SAMPLE_RATE, "duration": [min_duration, max_duration], "single_only": single_only,
        "holdout_fraction": holdout_fraction, "valid_fraction": valid_fraction, "audio_subtype": subtype,
        "classes": names, "splits": {split: sum(p.split == split for p in plans) for split in SPLITS},
        "modes": modes, "label_counts": labels,
        "seconds": round(sum(p.spec.samples for p in plans) / SAMPLE_RATE, 2),
    }


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))
