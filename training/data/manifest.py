"""The training manifest: a TSV compatible with the reference release.

Columns, in the reference order: ``name, dataset, caption, audio_path, mel_path, duration``.
Extra columns are kept (for example ``labels``, ``;``-separated class names used by the
synthetic corpus and by dynamic reprogramming). Relative paths are resolved against the
manifest's own folder, so a corpus folder can be moved as a whole.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from mka_core.atomic import atomic_write
from mka_core.errors import InputError

COLUMNS = ("name", "dataset", "caption", "audio_path", "mel_path", "duration")
REQUIRED_COLUMNS = ("name", "caption", "audio_path")


@dataclass
class ManifestRow:
    name: str
    caption: str
    audio_path: str
    dataset: str = ""
    mel_path: str = ""
    duration: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        raw = self.extra.get("labels", "")
        return [label for label in (part.strip() for part in raw.split(";")) if label]

    def as_record(self) -> dict[str, str]:
        record = {
            "name": self.name,
            "dataset": self.dataset,
            "caption": self.caption,
            "audio_path": self.audio_path,
            "mel_path": self.mel_path,
            "duration": "" if self.duration is None else f"{self.duration:.4f}",
        }
        record.update(self.extra)
        return record


def _clean(value: str) -> str:
    # Tabs or newlines inside a caption would break the TSV for the reference reader.
    return " ".join(str(value).split())


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a manifest; paths in the returned rows are absolute."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The manifest {path} does not exist; give the path of a .tsv manifest.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"The manifest {path} is not UTF-8 text; save it as UTF-8 TSV.") from None
    reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(
            f"The manifest {path} lacks the column(s) {', '.join(missing)}; a manifest is a TSV with the "
            f"header {chr(9).join(COLUMNS)} (tab-separated)."
        )
    base = path.parent
    rows = []
    for line_number, record in enumerate(reader, start=2):
        if None in record:  # more fields than the header names
            raise InputError(f"Line {line_number} of {path} has more fields than the header; check for stray tabs.")
        duration_text = (record.get("duration") or "").strip()
        try:
            duration = float(duration_text) if duration_text else None
        except ValueError:
            raise InputError(f"Line {line_number} of {path} has the duration {duration_text!r}, which is not a number.") from None
        extra = {k: (v or "") for k, v in record.items() if k not in COLUMNS}
        rows.append(ManifestRow(
            name=(record.get("name") or "").strip() or f"row{line_number - 1}",
            dataset=(record.get("dataset") or "").strip(),
            caption=(record.get("caption") or "").strip(),
            audio_path=_resolve(base, record.get("audio_path") or ""),
            mel_path=_resolve(base, record.get("mel_path") or ""),
            duration=duration,
            extra=extra,
        ))
    return rows


def _resolve(base: Path, value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    candidate = Path(value).expanduser()
    return str(candidate if candidate.is_absolute() else (base / candidate))


def write_manifest(path: str | Path, rows: Iterable[ManifestRow], *, relative_to_manifest: bool = True) -> Path:
    """Write rows atomically; paths under the manifest's folder are stored relative to it."""
    path = Path(path)
    rows = list(rows)
    extra_columns: list[str] = []
    for row in rows:
        for key in row.extra:
            if key not in extra_columns and key not in COLUMNS:
                extra_columns.append(key)
    header = list(COLUMNS) + extra_columns
    base = path.parent.resolve()
    with atomic_write(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, delimiter="\t", quoting=csv.QUOTE_NONE,
                                quotechar=None, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            record = {k: _clean(v) for k, v in row.as_record().items()}
            if relative_to_manifest:
                for key in ("audio_path", "mel_path"):
                    record[key] = _relative(base, record[key])
            writer.writerow({k: record.get(k, "") for k in header})
    return path


def _relative(base: Path, value: str) -> str:
    if not value:
        return ""
    try:
        return str(Path(value).resolve().relative_to(base))
    except ValueError:
        return value


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


def manifest_from_folder(folder: str | Path, *, captions_csv: str | Path | None = None, dataset: str = "") -> list[ManifestRow]:
    """Rows for every audio file under ``folder``.

    Captions come from ``captions_csv`` (columns ``file`` or ``audio_path`` or ``name``, and
    ``caption``; the file is matched by relative path, file name or stem), else from a sidecar
    ``<stem>.txt`` next to the audio file. Files with no caption get an empty caption; the
    prepare step reports them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; give a folder of audio files.")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    table: dict[str, str] = {}
    if captions_csv is not None:
        table = _read_caption_table(Path(captions_csv))
    rows = []
    for file in files:
        relative = file.relative_to(folder).as_posix()
        caption = table.get(relative) or table.get(file.name) or table.get(file.stem)
        if caption is None:
            sidecar = file.with_suffix(".txt")
            caption = sidecar.read_text(encoding="utf-8", errors="replace").strip() if sidecar.is_file() else ""
        name = relative.rsplit(".", 1)[0].replace("/", "__")
        rows.append(ManifestRow(name=name, dataset=dataset or folder.name, caption=caption, audio_path=str(file.resolve())))
    return rows


def _read_caption_table(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise InputError(f"The captions file {path} does not exist.")
    text = path.read_text(encoding="utf-8", errors="replace")
    dialect = "excel-tab" if path.suffix.lower() in (".tsv", ".tab") else "excel"
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    key_column = next((c for c in ("file", "audio_path", "path", "name", "filename") if c in header), None)
    if key_column is None or "caption" not in header:
        raise InputError(f"The captions file {path} needs a 'caption' column and a 'file' (or 'name') column.")
    table = {}
    for record in reader:
        record = {(k or "").strip().lower(): (v or "").strip() for k, v in record.items()}
        key = record[key_column]
        if key:
            table[key] = record["caption"]
            table[Path(key).name] = record["caption"]
            table[Path(key).stem] = record["caption"]
    return table
