"""Where recordings come from: source folders (or zip archives) and the licence of every file.

A sources file (TOML) lists ``[[source]]`` tables::

    [[source]]
    name = "minetest-data"            # first part of every file's package path
    package = "minetest-data"         # Debian package that provides it (for --from-debian)
    root = "/usr/share/games/minetest/games/minetest_game"   # a folder, or a .zip archive
    include = ["mods/**"]             # globs under root (default: every audio file)
    copyright = "/usr/share/doc/minetest-data/copyright"     # DEP-5 file (optional)
    copyright_path = [["^", "mtg/"]]  # regex substitutions: file path under root -> path in the copyright file
    licence = "CC-BY-SA-3.0"          # when no copyright paragraph matches (or there is no copyright file)
    author = "Minetest contributors"
    [[source.override]]               # checked after the copyright file, first match wins
    pattern = "mods/doors/sounds/*"
    licence = "CC-BY-3.0"
    author = "CGEffex"

``render = "soundfont"`` with ``root`` a .sf2 file renders instrument phrases with fluidsynth
(:mod:`training.data.real.soundfont`) and uses the rendered folder.

A file's *package path* is ``<name>/<path under root>``; the label map's patterns match it.
A relative ``root`` or ``copyright`` is resolved against the sources file's folder.
"""

from __future__ import annotations

import io
import re
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from mka_core.errors import InputError
from training.data.real.licences import FilesParagraph, canonical_licence, glob_match, licence_of, read_copyright

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")


@dataclass
class Override:
    pattern: str
    licence: str = ""
    author: str = ""


@dataclass
class Source:
    name: str
    root: Path
    package: str = ""
    include: list[str] = field(default_factory=list)
    copyright: Path | None = None
    copyright_path: list[tuple[str, str]] = field(default_factory=list)
    licence: str = ""
    author: str = ""
    overrides: list[Override] = field(default_factory=list)
    render: str = ""
    _paragraphs: list[FilesParagraph] | None = None
    _files_root: Path | None = None
    _archive: zipfile.ZipFile | None = None

    @property
    def is_archive(self) -> bool:
        return not self.render and self.root.suffix.lower() == ".zip"

    def archive(self) -> zipfile.ZipFile:
        # Opened once: reading a large archive's directory for every member would dominate the build.
        if self._archive is None:
            self._archive = zipfile.ZipFile(self.root)
        return self._archive

    def files_root(self) -> Path:
        """Where the files are: ``root``, or for ``render = "soundfont"`` the folder of rendered phrases."""
        if self._files_root is None:
            if self.render == "soundfont":
                from training.data.real.soundfont import render_soundfont

                self._files_root = render_soundfont(self.root)
            else:
                self._files_root = self.root
        return self._files_root

    def paragraphs(self) -> list[FilesParagraph]:
        if self._paragraphs is None:
            self._paragraphs = read_copyright(self.copyright) if self.copyright else []
        return self._paragraphs

    def copyright_key(self, relative: str) -> str:
        key = relative
        for pattern, replacement in self.copyright_path:
            key = re.sub(pattern, replacement, key, count=1)
        return key

    def attribution(self, relative: str) -> tuple[str, str]:
        """(licence, author) of a file under root: overrides, else the copyright file, else the defaults."""
        for override in self.overrides:
            if glob_match(override.pattern, relative):
                return canonical_licence(override.licence or self.licence), override.author or self.author
        paragraph = licence_of(self.paragraphs(), self.copyright_key(relative))
        if paragraph is not None:
            return canonical_licence(paragraph.licence), paragraph.copyright or self.author
        return canonical_licence(self.licence), self.author


@dataclass
class SourceFile:
    """One audio file of a source: where it is, its package path, licence and author."""

    source: Source
    relative: str
    licence: str
    author: str

    @property
    def package_path(self) -> str:
        return f"{self.source.name}/{self.relative}"

    def read_bytes(self) -> bytes:
        if self.source.is_archive:
            return self.source.archive().read(self.relative)
        return (self.source.files_root() / self.relative).read_bytes()

    def open(self) -> io.BytesIO:
        return io.BytesIO(self.read_bytes())


def list_files(source: Source) -> list[SourceFile]:
    """Every audio file of ``source`` (sorted), with its licence and author."""
    if not source.root.exists():
        raise InputError(f"The source '{source.name}' has no folder or archive at {source.root}; install its package "
                         f"({source.package or 'see the sources file'}) or fix its 'root'.")
    if source.is_archive:
        names = [info.filename for info in source.archive().infolist() if not info.is_dir()]
    elif source.render or source.root.is_dir():
        root = source.files_root()
        names = [path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()]
    else:
        raise InputError(f"The source '{source.name}' root {source.root} is neither a folder nor a .zip archive.")
    names = sorted(name for name in names if name.lower().endswith(AUDIO_SUFFIXES))
    if source.include:
        names = [name for name in names if any(glob_match(pattern, name) for pattern in source.include)]
    files = []
    for name in names:
        licence, author = source.attribution(name)
        files.append(SourceFile(source, name, licence, author))
    return files


def _path(base: Path, value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def parse_sources(data: dict, base: Path, where: str) -> list[Source]:
    tables = data.get("source", [])
    if not isinstance(tables, list) or not tables:
        raise InputError(f"{where} has no [[source]] tables; each source needs at least 'name' and 'root'.")
    sources = []
    for number, table in enumerate(tables, start=1):
        if "name" not in table or "root" not in table:
            raise InputError(f"Source {number} of {where} needs both 'name' and 'root'.")
        name = str(table["name"])
        if "/" in name or not name.strip():
            raise InputError(f"Source name {name!r} in {where} must be a non-empty word without '/'.")
        substitutions = []
        for pair in table.get("copyright_path", []):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise InputError(f"'copyright_path' of source '{name}' in {where} holds [pattern, replacement] pairs.")
            try:
                re.compile(pair[0])
            except re.error as exc:
                raise InputError(f"'copyright_path' pattern {pair[0]!r} of source '{name}' is not a regex ({exc}).") from None
            substitutions.append((str(pair[0]), str(pair[1])))
        overrides = [Override(str(o["pattern"]), str(o.get("licence", "")), str(o.get("author", "")))
                     for o in table.get("override", [])]
        source = Source(name=name, root=_path(base, table["root"]), package=str(table.get("package", "")),
                        include=[str(p) for p in table.get("include", [])], copyright=_path(base, table.get("copyright")),
                        copyright_path=substitutions, licence=str(table.get("licence", "")),
                        author=str(table.get("author", "")), overrides=overrides)
        if not source.licence and source.copyright is None and not overrides:
            raise InputError(f"Source '{name}' in {where} states no licence: give 'licence', 'copyright' or overrides.")
        render = str(table.get("render", ""))
        if render not in ("", "soundfont"):
            raise InputError(f"Source '{name}' in {where} has render = {render!r}; the only renderer is 'soundfont'.")
        source.render = render
        sources.append(source)
    names = [source.name for source in sources]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"{where} names the source(s) {', '.join(duplicated)} more than once; names must be unique.")
    return sources


def load_sources(path: str | Path) -> list[Source]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The sources file {path} does not exist.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"The sources file {path} is not valid TOML ({exc}).") from None
    return parse_sources(data, path.parent, str(path))


def folder_source(folder: str | Path, *, name: str | None = None, licence: str, author: str = "") -> Source:
    """A single folder of recordings under one licence (``mka data real --folder``)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; give a folder of recordings.")
    if not licence:
        raise InputError("Say under which licence the folder's recordings are with --licence (for example CC0-1.0).")
    return Source(name=name or folder.name, root=folder, licence=licence, author=author)
