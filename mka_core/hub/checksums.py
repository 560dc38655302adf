"""sha256 of pulled files: the catalogue's digest where known, else the one recorded at the first verified pull.

The package's ``plugin_registry.toml`` may be read-only (an installed wheel), so digests learnt
by pulling are recorded on the user's side, in ``$MKA_HOME/weights/checksums.json``:
``{"ENTRY": {"FILE": "hex"}}``, written atomically. A later pull (or another machine sharing
``MKA_HOME``) checks the same file against that record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mka_core.atomic import atomic_write_text

RECORD_FILE = "checksums.json"
CHUNK = 1 << 20


def record_path() -> Path:
    from mka_core.weights import mka_home

    return mka_home() / "weights" / RECORD_FILE


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def recorded() -> dict[str, dict[str, str]]:
    path = record_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # a damaged record only means the digests are learnt again
    return {k: dict(v) for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def expected(entry, file_name: str) -> tuple[str | None, str]:
    """(digest, where it comes from: "catalogue" / "recorded") for one file of ``entry``, or (None, "")."""
    known = entry.sha256.get(file_name)
    if known and known != "unknown":
        return known.lower(), "catalogue"
    mine = recorded().get(entry.name, {}).get(file_name)
    return (mine.lower(), "recorded") if mine else (None, "")


def record(entry_name: str, digests: dict[str, str]) -> None:
    """Add ``digests`` (file -> hex) of ``entry_name`` to the user's record."""
    if not digests:
        return
    data = recorded()
    data.setdefault(entry_name, {}).update(digests)
    atomic_write_text(record_path(), json.dumps(data, indent=2, sort_keys=True) + "\n")
