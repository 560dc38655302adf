"""Screen a manifest before training: keep the rows that can be read, report the others.

A broken row (missing or unreadable file, empty caption where one is needed, a NaN mel)
is dropped with its reason and written to the run's ``dropped.tsv``; training goes on with
the good rows. Only headers are read here, so screening a large manifest is cheap; a file
that passes the header check but fails to decode later is skipped then (see dataset.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mka_core.atomic import atomic_write
from mka_core.errors import InputError
from training.data.manifest import ManifestRow


@dataclass
class Dropped:
    name: str
    path: str
    reason: str


def _audio_problem(path: str) -> str | None:
    import soundfile as sf

    if not path:
        return "no audio_path"
    file = Path(path)
    if not file.is_file():
        return "missing file"
    if file.stat().st_size == 0:
        return "empty file"
    try:
        info = sf.info(str(file))
    except Exception:
        return "unreadable audio"
    if info.frames <= 0:
        return "no samples"
    return None


def _mel_problem(path: str) -> str | None:
    file = Path(path)
    if not file.is_file():
        return "missing mel file"
    try:
        mel = np.load(file, mmap_mode="r", allow_pickle=False)
    except Exception:
        return "unreadable mel file"
    if mel.ndim not in (2, 3) or mel.shape[-1] == 0:
        return f"mel of shape {tuple(mel.shape)}"
    return None


def screen_rows(rows: list[ManifestRow], *, need_caption: bool, need_audio: bool = False) -> tuple[list[ManifestRow], list[Dropped]]:
    """Split rows into usable ones and dropped ones with reasons.

    A row is usable when its mel file is readable, or (without a mel, or when ``need_audio``)
    its audio file is readable; with ``need_caption`` its caption must not be empty.
    """
    kept, dropped = [], []
    for row in rows:
        reason = None
        if need_caption and not row.caption.strip():
            reason = "empty caption"
        elif row.mel_path and not need_audio:
            reason = _mel_problem(row.mel_path)
        else:
            reason = _audio_problem(row.audio_path)
        if reason:
            dropped.append(Dropped(row.name, row.mel_path or row.audio_path, reason))
        else:
            kept.append(row)
    return kept, dropped


def write_dropped(path: str | Path, dropped: list[Dropped]) -> None:
    with atomic_write(path, "w") as handle:
        handle.write("name\tpath\treason\n")
        for item in dropped:
            handle.write(f"{item.name}\t{item.path}\t{item.reason}\n")


def require_rows(rows: list[ManifestRow], dropped: list[Dropped], source: str) -> None:
    if not rows:
        reasons = sorted({d.reason for d in dropped})
        raise InputError(
            f"No usable rows in {source} ({len(dropped)} dropped: {', '.join(reasons) or 'empty manifest'}); "
            "fix the paths or run `mka data prepare` first."
        )
