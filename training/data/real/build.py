"""``mka data real``: build a captioned corpus of real recordings in the reference manifest format.

Steps: list every audio file of every source with its licence; drop files whose licence is not
allowed, that no label-map rule names (or that a rule drops), that cannot be decoded, are
silent, too short, or repeat a kept recording (see :mod:`training.data.real.audio`); split
the rest by recording (:mod:`training.data.real.split`); make each split's clips
(:mod:`training.data.real.clips`); fill thin classes of the train split (fewer than
``min_clips`` clips) with augmented clips of their own recordings (at most ``augment_ratio``
per real clip) and, where the class has a synthetic counterpart, ``synthetic_clips`` synthetic clips;
caption every clip; write audio, mels, manifests, the attribution files and the report.

The corpus is written to a temporary folder beside ``out_dir`` and moved into place at the
end, so an interrupted build leaves nothing half-written.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mka_core.atomic import atomic_write
from mka_core.errors import InputError
from training.data.manifest import ManifestRow, write_manifest
from training.data.real.audio import DecodeError, DuplicateFinder, decode, identity, peak_dbfs, trim_silence
from training.data.real.clips import SAMPLE_RATE, WINDOW_SAMPLES, Assembler, Clip, Recording
from training.data.real.labelmap import LabelMap
from training.data.real.licences import ALLOWED_FAMILIES, chosen_licence
from training.data.real.report import write_attribution, write_dropped_files, write_summary
from training.data.real.sources import Source, list_files
from training.data.real.split import SPLITS, assign_splits

REAL_JSON = "real.json"
#: Origins a classifier trained "on real recordings only" may use.
REAL_ORIGINS = ("recording", "composed")


@dataclass
class BuildSettings:
    out_dir: str
    seed: int = 0
    heldout: float = 0.15
    valid: float = 0.05
    max_windows: int = 18
    reuse: float = 3.0
    composition_fraction: float = 0.2
    background_fraction: float = 0.3
    min_clips: int = 30
    augment_ratio: float = 3.0
    synthetic_clips: int = 20
    min_seconds: float = 0.05
    silence_dbfs: float = -50.0
    oneshot_seconds: float = 1.5
    max_read_seconds: float = 300.0
    mels: bool = True
    allowed: tuple[str, ...] = ALLOWED_FAMILIES
    overwrite: bool = False


@dataclass
class DroppedFile:
    path: str
    licence: str
    reason: str


@dataclass
class BuildResult:
    out_dir: Path
    counts: dict
    dropped: list[DroppedFile] = field(default_factory=list)
    seconds: float = 0.0


def _role(hint: str | None, samples: int, settings: BuildSettings) -> str:
    if hint == "ambience" and samples >= WINDOW_SAMPLES // 2:
        return "ambience"
    if hint == "oneshot" and samples <= 3 * SAMPLE_RATE:
        return "oneshot"
    if hint == "event" and samples >= SAMPLE_RATE // 2:
        return "event"
    if samples >= WINDOW_SAMPLES:
        return "ambience"
    return "event" if samples >= settings.oneshot_seconds * SAMPLE_RATE else "oneshot"


def collect(sources: list[Source], label_map: LabelMap, settings: BuildSettings,
            progress=None) -> tuple[list[Recording], list[DroppedFile]]:
    """Decode and screen every file; returns the kept recordings (split not yet set) and the dropped files."""
    files = [file for source in sources for file in list_files(source)]
    kept: list[Recording] = []
    keys: list[str] = []
    dropped: list[DroppedFile] = []
    finder = DuplicateFinder()
    for number, file in enumerate(files, start=1):
        if progress is not None:
            progress(number, len(files))
        path = file.package_path
        licence = chosen_licence(file.licence, settings.allowed)
        if licence is None:
            dropped.append(DroppedFile(path, file.licence, f"licence not allowed ({file.licence or 'none stated'})"))
            continue
        rule = label_map.match(path)
        if rule is None:
            dropped.append(DroppedFile(path, file.licence, "no label (no label-map rule matches)"))
            continue
        if rule.drop is not None:
            dropped.append(DroppedFile(path, file.licence, f"excluded by the label map ({rule.drop})"))
            continue
        try:
            wave = decode(file.read_bytes(), SAMPLE_RATE, settings.max_read_seconds)
        except (DecodeError, OSError) as exc:
            dropped.append(DroppedFile(path, file.licence, f"unreadable ({exc})"))
            continue
        if peak_dbfs(wave) < settings.silence_dbfs:
            dropped.append(DroppedFile(path, file.licence, "silent"))
            continue
        trimmed = trim_silence(wave)
        if trimmed.size < settings.min_seconds * SAMPLE_RATE:
            dropped.append(DroppedFile(path, file.licence, f"too short ({trimmed.size / SAMPLE_RATE:.3f} s after trimming)"))
            continue
        ident = identity(wave)
        repeat = finder.check(ident, path)
        if repeat is not None:
            dropped.append(DroppedFile(path, file.licence, f"duplicate (of {repeat[1]}, {repeat[0]} match)"))
            continue
        spec = label_map.classes[rule.label]
        role = _role(rule.role or spec.role, trimmed.size, settings)
        kept.append(Recording(path, rule.label, rule.tags_for(path), role, trimmed, licence, file.author,
                              file.source.package or file.source.name))
        keys.append(ident.exact)
    splits = assign_splits(zip(keys, (r.label for r in kept)), heldout=settings.heldout, valid=settings.valid)
    for recording, key in zip(kept, keys):
        recording.split = splits[key]
    return kept, dropped


def _synthetic_clip(spec_name: str, label: str, rng: np.random.Generator) -> Clip:
    from training.data.synth import render_clip

    seed = int(rng.integers(0, 2**31 - 1))
    duration = float(rng.uniform(4.0, 10.0))
    wave = render_clip({"classes": [spec_name], "duration": duration}, seed)
    return Clip(wave.astype(np.float32), "single", [(label, {})], [], "synthetic", {},
                synthetic_source=f"mka-synth:{spec_name}:seed={seed}:duration={duration:.2f}")


def make_clips(recordings: list[Recording], label_map: LabelMap, settings: BuildSettings) -> dict[str, list[Clip]]:
    """Every split's clips, with the train split's thin classes filled (augmented, then synthetic)."""
    out = {}
    for index, split in enumerate(SPLITS):
        members = [r for r in recordings if r.split == split]
        rng = np.random.default_rng([settings.seed, index])
        assembler = Assembler(members, label_map.classes, rng, max_windows=settings.max_windows, reuse=settings.reuse)
        clips = assembler.clips(settings.composition_fraction, settings.background_fraction) if members else []
        if split == "train":
            counts = Counter(label for clip in clips for label in clip.labels[:1])
            for label in sorted(label_map.classes):
                spec = label_map.classes[label]
                real = counts.get(label, 0)
                if real >= settings.min_clips:
                    continue
                if label in assembler.labels():
                    # At most augment_ratio augmented clips per real one: variations, not a new class.
                    count = min(settings.min_clips - real, int(settings.augment_ratio * max(real, 1)))
                    clips.extend(assembler.augmented(label) for _ in range(count))
                if spec.synth and settings.synthetic_clips > 0:
                    clips.extend(_synthetic_clip(spec.synth, label, rng) for _ in range(settings.synthetic_clips))
        out[split] = clips
    return out


def _frontend():
    import torch

    from mka_core.audio.mel import MelConfig, MelFrontEnd

    torch.set_num_threads(1)
    return MelFrontEnd(MelConfig(sample_rate=SAMPLE_RATE))


def write_corpus(clips: dict[str, list[Clip]], label_map: LabelMap, settings: BuildSettings, folder: Path) -> dict:
    """Audio, mels, captions and manifests of every clip into ``folder``; returns the rows per split."""
    import torch

    from mka_core.audio.io import save_audio
    from training.data.synth.captions import compose_caption

    vocab = label_map.vocab()
    frontend = _frontend() if settings.mels else None
    rows: dict[str, list[ManifestRow]] = {}
    for index, split in enumerate(SPLITS):
        caption_rng = np.random.default_rng([settings.seed, index, 7])
        rows[split] = []
        for number, clip in enumerate(clips[split]):
            name = f"real_{split}_{number:06d}"
            caption, template = compose_caption(clip.mode, clip.events, clip.clip_tags, split, caption_rng, vocab)
            audio = save_audio(folder / "audio" / split / f"{name}.wav", clip.wave, SAMPLE_RATE)
            mel_path = ""
            if frontend is not None:
                with torch.no_grad():
                    mel = frontend(torch.from_numpy(clip.wave)[None]).reshape(frontend.config.n_mels, -1).numpy()
                mel_file = folder / "mels" / split / f"{name}.npy"
                with atomic_write(mel_file, "wb") as handle:
                    np.save(handle, mel.astype(np.float32), allow_pickle=False)
                mel_path = str(mel_file)
            licences = sorted({r.licence for r in clip.recordings}) or ["generated"]
            sources = [r.key for r in clip.recordings] or [clip.synthetic_source]
            rows[split].append(ManifestRow(
                name=name, dataset="mka-real", caption=caption, audio_path=str(audio), mel_path=mel_path,
                duration=round(clip.wave.size / SAMPLE_RATE, 4),
                extra={"labels": ";".join(clip.labels), "origin": clip.origin, "licence": ";".join(licences),
                       "source": ";".join(dict.fromkeys(sources)), "split": split, "mode": clip.mode,
                       "template": template}))
        write_manifest(folder / f"{split}.tsv", rows[split])
    write_manifest(folder / "classifier-train.tsv", [r for r in rows["train"] if r.extra["origin"] in REAL_ORIGINS])
    return rows


def build_corpus(sources: list[Source], label_map: LabelMap, settings: BuildSettings, progress=None) -> BuildResult:
    started = time.monotonic()
    out = Path(settings.out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; choose another --out.")
    if out.is_dir() and any(out.iterdir()) and not settings.overwrite:
        raise InputError(f"{out} is not empty; pass --overwrite to replace the corpus in it, or choose another --out.")
    recordings, dropped = collect(sources, label_map, settings, progress)
    if not recordings:
        reasons = Counter(item.reason.split(" (")[0] for item in dropped)
        raise InputError("No recording could be used (" + (", ".join(f"{n} {r}" for r, n in reasons.most_common())
                         or "no audio files found") + "); check the sources, licences and label map.")
    clips = make_clips(recordings, label_map, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        rows = write_corpus(clips, label_map, settings, folder)
        uses: dict[str, Counter] = defaultdict(Counter)
        for split, split_clips in clips.items():
            for clip in split_clips:
                for recording in clip.recordings:
                    uses[recording.key][split] += 1
        write_attribution(folder, recordings, uses)
        write_dropped_files(folder, dropped)
        counts = write_summary(folder, rows, recordings, dropped, settings, label_map)
        if out.exists():
            shutil.rmtree(out)
        folder.rename(out)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return BuildResult(out, counts, dropped, round(time.monotonic() - started, 1))
