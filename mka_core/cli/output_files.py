"""Where generated files go: naming, unique reservation, cleanup on interruption.

Naming inside a directory: ``<slug>_<seed>.wav`` - the slug is the input text made
file-name safe (lowercase letters, digits and dashes, at most 48 characters), a file input's
stem, or the task name for unconditional outputs; the seed is the output's own seed. When
the name is taken, ``<slug>_<seed>-2.wav``, ``-3`` ... are tried.

A name is *reserved* by creating the file with ``O_CREAT | O_EXCL``: the kernel lets exactly
one process create it, so two runs writing into one directory never pick the same name. The
empty placeholder is then replaced atomically by the finished file. If the run is
interrupted, :class:`OutputReservations` removes every placeholder and every file of the
output it was writing, so nothing partial is left behind.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from mka_core.errors import InputError

AUDIO_SUFFIXES = (".wav", ".flac")
SLUG_LENGTH = 48


def slugify(text: str | None, fallback: str) -> str:
    """A file-name-safe short form of ``text`` (``fallback`` when nothing is left)."""
    if text:
        candidate = Path(text).stem if ("/" in text or os.sep in text) and Path(text).suffix else text
        slug = re.sub(r"[^a-z0-9]+", "-", candidate.lower()).strip("-")[:SLUG_LENGTH].strip("-")
        if slug:
            return slug
    return fallback


class OutputReservations:
    """Reserved output paths, and the files written for each output, removed unless committed."""

    def __init__(self) -> None:
        self._pending: dict[Path, list[Path]] = {}

    def reserve_unique(self, directory: Path, slug: str, seed: int, suffix: str = ".wav") -> Path:
        """Create ``directory/<slug>_<seed><suffix>`` (or a numbered variant) exclusively and return it."""
        directory.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 10_000):
            name = f"{slug}_{seed}{suffix}" if attempt == 1 else f"{slug}_{seed}-{attempt}{suffix}"
            path = directory / name
            # The sidecar and the image share the name; a stray one blocks the name too.
            if any(Path(f"{path}{extra}").exists() for extra in (".json", ".png")):
                continue
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue
            os.close(fd)
            self._pending[path] = [path]
            return path
        raise InputError(f"Could not find a free file name for '{slug}_{seed}' in {directory}; clean the folder up.")

    def claim(self, path: Path) -> Path:
        """Track an explicitly named output (``--out FILE``); it is replaced, not reserved."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._pending[path] = []
        return path

    def written(self, output: Path, path: Path) -> None:
        """Record that ``path`` (the audio, sidecar or image of ``output``) now exists."""
        self._pending.setdefault(output, []).append(path)

    def commit(self, output: Path) -> None:
        """The output and its companions are complete: keep them."""
        self._pending.pop(output, None)

    def discard_all(self) -> None:
        """Remove placeholders and half-finished outputs (on error or interruption)."""
        for paths in self._pending.values():
            _remove(paths)
        self._pending.clear()


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def plan_destination(out: str | None, count: int) -> tuple[Path | None, Path]:
    """(file, directory): ``file`` is set for one output written to an explicit file name.

    ``--out`` naming an existing directory, ending in a slash or lacking an audio suffix is
    a directory. A file name with several outputs is an error.
    """
    if out is None:
        return None, Path.cwd()
    path = Path(out).expanduser()
    is_dir = path.is_dir() or out.endswith(("/", os.sep)) or path.suffix.lower() not in AUDIO_SUFFIXES
    if is_dir:
        if path.exists() and not path.is_dir():
            raise InputError(f"--out {out} exists and is not a folder; choose another path.")
        return None, path
    if count > 1:
        raise InputError(f"--out {out} names one file but this run makes {count} outputs; pass a folder instead.")
    if path.parent.exists() and not path.parent.is_dir():
        raise InputError(f"The folder of --out {out} is not a folder.")
    return path, path.parent
