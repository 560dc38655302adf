"""The catalogue's weight sets (``[[weights]]`` of ``plugin_registry.toml``) as objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mka_core.errors import InputError


@dataclass(frozen=True)
class WeightEntry:
    """One public weight set and where it comes from."""

    name: str
    family: str
    description: str
    #: The file names as they sit in the entry's local folder.
    files: tuple[str, ...]
    source: str
    licence: str
    size: str
    #: file name -> sha256 hex, for the files whose digest the catalogue knows.
    sha256: dict[str, str] = field(default_factory=dict)
    hub_repo: str | None = None
    hub_type: str = "model"
    hub_revision: str = "main"
    #: Paths inside the hub repo; each lands under its base name.
    hub_files: tuple[str, ...] = ()
    #: file name -> https address, for files outside the hub.
    url_files: dict[str, str] = field(default_factory=dict)
    #: A pip distribution that ships the files.
    package: str | None = None
    #: Entries pulled first (vocoder, tokenizer, ...).
    needs: tuple[str, ...] = ()
    #: "maa1", "maa-b:t2a", "maa-b:i2a", "maa-b:inpaint": converted into a model folder on arrival.
    convert_kind: str | None = None
    #: The folder name under $MKA_HOME/weights when it is not the entry's name (where a plugin looks by default).
    folder: str | None = None

    @property
    def is_model(self) -> bool:
        return self.convert_kind is not None

    @property
    def downloadable(self) -> bool:
        """Fetched by ``mka weights pull`` (hub or https), not a manual step."""
        return bool(self.hub_repo and self.hub_files) or bool(self.url_files)

    @property
    def manual(self) -> bool:
        return not self.downloadable and self.package is None

    def remote_files(self) -> list[tuple[str, str]]:
        """(local file name, hub path or address) of every file the entry downloads."""
        if self.hub_repo:
            return [(Path(p).name, p) for p in self.hub_files]
        return list(self.url_files.items())

    def pull_command(self) -> str:
        return f"mka weights pull {self.name}"


def _entry(raw: dict[str, Any]) -> WeightEntry:
    digests = raw.get("sha256")
    return WeightEntry(
        name=raw["name"], family=raw.get("family", ""), description=raw.get("description", ""),
        files=tuple(raw.get("files", ())), source=raw.get("source", ""), licence=raw.get("licence", ""),
        size=raw.get("size", "unknown"), sha256=dict(digests) if isinstance(digests, dict) else {},
        hub_repo=raw.get("hub_repo"), hub_type=raw.get("hub_type", "model"), hub_revision=raw.get("hub_revision", "main"),
        hub_files=tuple(raw.get("hub_files", ())), url_files=dict(raw.get("url_files", {})),
        package=raw.get("package"), needs=tuple(raw.get("needs", ())), convert_kind=raw.get("convert_kind"),
        folder=raw.get("folder"),
    )


def entries() -> list[WeightEntry]:
    """Every weight set of the catalogue, in catalogue order."""
    from mka_core.cli.plugins import load_catalogue

    return [_entry(raw) for raw in load_catalogue().get("weights", [])]


def find_entry(name: str) -> WeightEntry | None:
    return next((e for e in entries() if e.name == name), None)


def get_entry(name: str) -> WeightEntry:
    """The entry called ``name``, else an InputError listing the catalogue's names."""
    entry = find_entry(name)
    if entry is None:
        known = ", ".join(e.name for e in entries())
        raise InputError(f"'{name}' is not in the weights catalogue; known names: {known}.")
    return entry


def with_needs(names: list[str]) -> list[WeightEntry]:
    """The entries named and everything they need, dependencies first, each once."""
    ordered: list[WeightEntry] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in seen:
            return
        if name in chain:
            raise InputError(f"The weights catalogue has a dependency loop: {' -> '.join(chain + (name,))}.")
        entry = get_entry(name)
        for need in entry.needs:
            visit(need, chain + (name,))
        seen.add(name)
        ordered.append(entry)

    for name in names:
        visit(name, ())
    return ordered


def pull_hint(weights_id: str) -> str:
    """``run `mka weights pull NAME --allow-network``` when a downloadable entry lands in ``weights/<weights_id>``, else ""."""
    key = str(weights_id).replace("/", "--")
    try:
        found = [e for e in entries() if (e.folder or e.name) == key and e.downloadable]
    except Exception:  # a damaged catalogue must not hide the error this hint decorates
        return ""
    return f"run `mka weights pull {found[0].name} --allow-network`" if found else ""
