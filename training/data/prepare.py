"""``mka data prepare``: from raw audio and captions to a training-ready manifest.

Every row's audio is read, downmixed to mono and resampled to 16 kHz, checked (unreadable,
too short, silent, NaN/Inf), written as a 16 kHz wav (optional) and as its log10 mel
(``.npy``, ``[80, frames]``), in parallel worker processes. The output manifest has
``mel_path`` and ``duration`` filled; ``dropped.tsv`` names every row left out and why, and
``prepare.json`` summarises. Memory stays bounded: rows stream through the workers and only
their paths and verdicts come back.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from mka_core.atomic import atomic_write
from mka_core.errors import AudioFileError, InputError
from training.data.manifest import ManifestRow, write_manifest
from training.data.screening import Dropped, write_dropped


@dataclass(frozen=True)
class PrepareSettings:
    out_dir: str
    sample_rate: int = 16000
    min_seconds: float = 0.5
    silence_dbfs: float = -60.0
    write_audio: bool = True
    max_seconds: float | None = None
    require_caption: bool = True


@dataclass
class Verdict:
    row: ManifestRow
    reason: str | None


def safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "clip"
    return stem[:120]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


_FRONTEND = None

#: The dropped-file report's wording for each reason load_audio gives.
_DROP_REASONS = {"missing": "missing file", "non-finite": "NaN or Inf samples", "empty": "empty audio"}


def _frontend(sample_rate: int):
    global _FRONTEND
    if _FRONTEND is None:
        import torch

        from mka_core.audio.mel import MelConfig, MelFrontEnd

        torch.set_num_threads(1)  # the parallelism is across processes
        _FRONTEND = MelFrontEnd(MelConfig(sample_rate=sample_rate))
    return _FRONTEND


def prepare_one(row: ManifestRow, stem: str, settings: PrepareSettings) -> Verdict:
    """Prepare one row (runs in a worker process); never raises for a bad file."""
    import torch

    from mka_core.audio.io import load_audio, save_audio

    if settings.require_caption and not row.caption.strip():
        return Verdict(row, "empty caption")
    if not row.audio_path:
        return Verdict(row, "no audio_path")
    try:
        wave = load_audio(row.audio_path, settings.sample_rate, max_seconds=settings.max_seconds)
    except AudioFileError as exc:
        return Verdict(row, _DROP_REASONS.get(exc.reason, "unreadable audio"))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a verdict, not a crash
        return Verdict(row, f"unreadable audio ({type(exc).__name__})")
    seconds = wave.numel() / settings.sample_rate
    if seconds < settings.min_seconds:
        return Verdict(row, f"too short ({seconds:.2f} s < {settings.min_seconds} s)")
    peak = float(wave.abs().max())
    if peak <= 10 ** (settings.silence_dbfs / 20):
        return Verdict(row, "silent")
    out = Path(settings.out_dir)
    frontend = _frontend(settings.sample_rate)
    with torch.no_grad():
        mel = frontend(wave[None]).reshape(frontend.config.n_mels, -1).numpy().astype(np.float32)
    if not np.isfinite(mel).all():
        return Verdict(row, "NaN in the mel")
    mel_path = out / "mels" / f"{stem}.npy"
    _save_npy(mel_path, mel)
    audio_path = row.audio_path
    if settings.write_audio:
        audio_path = str(save_audio(out / "audio" / f"{stem}.wav", wave, settings.sample_rate))
    prepared = ManifestRow(name=row.name, caption=" ".join(row.caption.split()), audio_path=audio_path,
                           dataset=row.dataset, mel_path=str(mel_path), duration=round(seconds, 4), extra=dict(row.extra))
    return Verdict(prepared, None)


def _work(args: tuple[ManifestRow, str, PrepareSettings]) -> Verdict:
    return prepare_one(*args)


def unique_stems(rows: list[ManifestRow]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for row in rows:
        stem = safe_stem(row.name)
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        stems.append(stem if count == 0 else f"{stem}-{count}")
    return stems


def run_prepare(rows: list[ManifestRow], settings: PrepareSettings, *, workers: int = 1,
                progress: bool = True) -> tuple[Path, list[Dropped], int]:
    """Prepare ``rows`` into ``settings.out_dir``; returns (manifest path, dropped, kept count)."""
    out = Path(settings.out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; choose another --out.")
    (out / "mels").mkdir(parents=True, exist_ok=True)
    if settings.write_audio:
        (out / "audio").mkdir(parents=True, exist_ok=True)
    jobs = [(row, stem, settings) for row, stem in zip(rows, unique_stems(rows))]
    kept: list[ManifestRow] = []
    dropped: list[Dropped] = []
    for verdict in _progress(_run(jobs, workers), len(jobs), progress):
        if verdict.reason is None:
            kept.append(verdict.row)
        else:
            dropped.append(Dropped(verdict.row.name, verdict.row.audio_path, verdict.reason))
    manifest = write_manifest(out / "manifest.tsv", kept)
    write_dropped(out / "dropped.tsv", dropped)
    reasons: dict[str, int] = {}
    for item in dropped:
        key = item.reason.split(" (")[0]
        reasons[key] = reasons.get(key, 0) + 1
    summary = {"rows": len(rows), "kept": len(kept), "dropped": len(dropped), "dropped_by_reason": reasons,
               "hours": round(sum(r.duration or 0 for r in kept) / 3600, 4), "manifest": str(manifest)}
    with atomic_write(out / "prepare.json", "w") as handle:
        handle.write(json.dumps(summary, indent=2) + "\n")
    return manifest, dropped, len(kept)


def _run(jobs: list, workers: int) -> Iterator[Verdict]:
    if workers <= 1 or len(jobs) < 8:
        for job in jobs:
            yield _work(job)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(_work, jobs, chunksize=max(1, min(64, len(jobs) // (workers * 8) or 1)))


def _progress(items: Iterable[Verdict], total: int, enabled: bool) -> Iterator[Verdict]:
    if not enabled:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]prepare"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("prepare", total=total)
        for item in items:
            bar.advance(task)
            yield item


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))
