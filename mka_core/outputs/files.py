"""Where generated files go: naming, publishing an output with its companions, cleanup.

Naming inside a directory: ``<slug>_<seed>.wav`` - the slug is the input text made
file-name safe (lowercase letters, digits and dashes, at most 48 characters), a file input's
stem, or the task name for unconditional outputs; the seed is the output's own seed. When
the name is taken, ``<slug>_<seed>-2.wav``, ``-3`` ... are tried.

Every file of an output (the audio, its ``.json`` sidecar, its ``.png`` spectrogram) is first
written complete to a hidden temporary sibling; then they are published together:

* into a directory, the audio takes its name with a hard link (``link`` fails if the name
  exists, so the kernel lets exactly one process have it: two runs writing into one
  directory never pick the same name), and the companions are renamed next to it;
* to a file named with ``--out``, the companions and the audio replace the old ones by rename.

The publishing renames run with Ctrl-C and SIGTERM held, so an interruption leaves either the
whole output or none of it, and an existing file named with ``--out`` keeps its old content
unless the new output is complete. No empty placeholder ever exists under an output's name,
so even a ``kill -9`` leaves at most hidden ``.NAME.XXXX.tmp`` files, which never block a name.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Callable, Mapping

from mka_core.atomic import fsync_directory, interrupts_deferred, write_temporary
from mka_core.errors import InputError

AUDIO_SUFFIXES = (".wav", ".flac")
#: Files that share an output's name: ``<name>.json`` (sidecar), ``<name>.png`` (spectrogram).
COMPANION_SUFFIXES = (".json", ".png")
SLUG_LENGTH = 48
#: link() errors of file systems without hard links (FAT, some network shares).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def slugify(text: str | None, fallback: str) -> str:
    """A file-name-safe short form of ``text`` (``fallback`` when nothing is left)."""
    if text:
        candidate = Path(text).stem if ("/" in text or os.sep in text) and Path(text).suffix else text
        slug = re.sub(r"[^a-z0-9]+", "-", candidate.lower()).strip("-")[:SLUG_LENGTH].strip("-")
        if slug:
            return slug
    return fallback


class OutputFiles:
    """Publishes outputs whole; temporary files of an output not published are removed by :meth:`discard`."""

    def __init__(self) -> None:
        self._temporary: set[Path] = set()

    def publish_unique(self, directory: Path, slug: str, seed: int, audio: bytes,
                       companions: Callable[[Path], Mapping[str, bytes]], suffix: str = ".wav") -> Path:
        """Publish ``audio`` as ``directory/<slug>_<seed><suffix>`` (or a numbered variant) with its companions.

        ``companions(path)`` gives the companion files' bytes by suffix (``{".json": ...}``) for
        the name ``path``; it is asked again if that name turns out to be taken.
        """
        directory.mkdir(parents=True, exist_ok=True)
        staged_audio = self._stage(directory / f"{slug}_{seed}{suffix}", audio)
        for attempt in range(1, 10_000):
            name = f"{slug}_{seed}{suffix}" if attempt == 1 else f"{slug}_{seed}-{attempt}{suffix}"
            path = directory / name
            # A stray sidecar or image blocks the name too.
            if path.exists() or any(Path(f"{path}{extra}").exists() for extra in COMPANION_SUFFIXES):
                continue
            staged = {extra: self._stage(Path(f"{path}{extra}"), data) for extra, data in companions(path).items()}
            with interrupts_deferred():
                if not _link_new(staged_audio, path):
                    self._remove(staged.values())
                    continue
                for extra, temporary in staged.items():
                    os.replace(temporary, f"{path}{extra}")
                    self._temporary.discard(temporary)
                self._remove([staged_audio])
            fsync_directory(directory)
            return path
        self._remove([staged_audio])
        raise InputError(f"Could not find a free file name for '{slug}_{seed}' in {directory}; clean the folder up.")

    def publish(self, path: Path, audio: bytes, companions: Mapping[str, bytes]) -> Path:
        """Write ``audio`` to ``path`` (``--out FILE``) and its companions beside it, replacing old ones."""
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = {extra: self._stage(Path(f"{path}{extra}"), data) for extra, data in companions.items()}
        staged_audio = self._stage(path, audio)
        with interrupts_deferred():
            for extra, temporary in staged.items():
                os.replace(temporary, f"{path}{extra}")
                self._temporary.discard(temporary)
            os.replace(staged_audio, path)
            self._temporary.discard(staged_audio)
        fsync_directory(path.parent)
        return path

    def discard(self) -> None:
        """Remove the temporary files of outputs that were not published (on error or interruption)."""
        self._remove(list(self._temporary))

    def _stage(self, path: Path, data: bytes) -> Path:
        temporary = write_temporary(path, data)
        self._temporary.add(temporary)
        return temporary

    def _remove(self, paths) -> None:
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            self._temporary.discard(path)


def _link_new(source: Path, destination: Path) -> bool:
    """Give ``source``'s content the new name ``destination``; False if that name exists."""
    try:
        os.link(source, destination)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
    # No hard links here: claim the name exclusively, then rename the finished file over the
    # claim at once (still inside the caller's interrupts_deferred block).
    try:
        fd = os.open(destination, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    os.replace(source, destination)
    return True


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
