"""Licences of source recordings: Debian copyright files, names, and which ones a model may use.

A Debian package's ``debian/copyright`` (installed as ``/usr/share/doc/<package>/copyright``)
is usually in the machine-readable DEP-5 format: paragraphs of ``Files:`` globs (relative to the
package's *source* tree), ``Copyright:`` holders and a ``License:`` name. The last paragraph
whose globs match a file decides its licence, as the format prescribes.

**Policy** (:data:`ALLOWED_FAMILIES`): a recording may go into the corpus of a model whose weights
are shipped when its licence lets anyone redistribute an adaptation without further conditions
than attribution and share-alike: CC0, public domain, MIT/Expat, CC-BY and CC-BY-SA (3.0 and
4.0, ported versions included). GPL and LGPL files are left out: whether trained weights are a
GPL "derivative" and what their "preferred form for modification" would be are unsettled, and
GPL terms cannot be combined with CC-BY-SA weights. Non-commercial (NC) and no-derivatives (ND)
licences, and anything not recognised, are left out too. See docs/real-corpus.md.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from mka_core.errors import InputError

#: Licence families whose recordings may train shipped weights, with a canonical spelling.
ALLOWED_FAMILIES = ("CC0", "public-domain", "MIT", "CC-BY", "CC-BY-SA")

_CANONICAL = [
    (re.compile(r"^(cc0|cc-?zero)(-1\.0)?$", re.I), "CC0-1.0"),
    (re.compile(r"^(public[- ]?domain|pd)$", re.I), "public-domain"),
    (re.compile(r"^(mit|expat)$", re.I), "MIT"),
    # Ported versions (-us) and "or later" (+) count as the unported version they name; a bare major
    # version (Scorched3D's "CC-BY-SA-3") is that version's .0.
    (re.compile(r"^cc-by-(\d(?:\.\d)?)(-[a-z]{2})?\+?$", re.I), "CC-BY-{0}"),
    (re.compile(r"^cc-by-sa-(\d(?:\.\d)?)(-[a-z]{2})?\+?$", re.I), "CC-BY-SA-{0}"),
]


def canonical_licence(name: str) -> str:
    """A short licence name in one spelling (``CC-BY-SA-3.0-us`` -> ``CC-BY-SA-3.0``, ``Expat`` -> ``MIT``).

    Names with an exception or several alternatives keep their words (``GPL-2+ with ...``)."""
    text = " ".join(str(name).split())
    for pattern, canonical in _CANONICAL:
        match = pattern.match(text)
        if match:
            version, *rest = match.groups()
            return canonical.format(version if "." in version else f"{version}.0", *rest)
    return text


def licence_family(name: str) -> str:
    """``CC-BY-SA-3.0`` -> ``CC-BY-SA``; ``CC0-1.0`` -> ``CC0``; anything unrecognised -> its own name."""
    canonical = canonical_licence(name)
    for family in ("CC-BY-SA", "CC-BY"):
        if re.fullmatch(rf"{family}-\d\.\d", canonical):
            return family
    if canonical == "CC0-1.0":
        return "CC0"
    return canonical


def _branches(name: str) -> list[str]:
    return [b for b in re.split(r"\s+or\s+|\s*\|\s*", str(name).strip(), flags=re.I) if b]


def licence_allowed(name: str, allowed: tuple[str, ...] = ALLOWED_FAMILIES) -> bool:
    """Whether a recording under ``name`` may train shipped weights (see the module's policy).

    A choice between licences (``GPL-2+ or CC-BY-SA-3.0``) is allowed when one branch is."""
    return chosen_licence(name, allowed) is not None


def chosen_licence(name: str, allowed: tuple[str, ...] = ALLOWED_FAMILIES) -> str | None:
    """The licence the corpus uses a file under: the most permissive allowed branch of ``name``
    (in the order of ``allowed``), canonically spelled; None when no branch is allowed."""
    branches = [canonical_licence(b) for b in _branches(name)]
    usable = [b for b in branches if licence_family(b) in allowed]
    if not usable:
        return None
    return min(usable, key=lambda b: allowed.index(licence_family(b)))


@dataclass(frozen=True)
class FilesParagraph:
    """One DEP-5 ``Files:`` paragraph: its globs, copyright holders and licence."""

    globs: tuple[str, ...]
    copyright: str
    licence: str

    def matches(self, path: str) -> bool:
        return any(_glob_regex(glob).fullmatch(path) for glob in self.globs)


def _glob_regex(glob: str) -> re.Pattern:
    # DEP-5: '*' matches any run of characters including '/', '?' exactly one; nothing else is special.
    parts = []
    for char in glob:
        parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
    return re.compile("".join(parts))


def parse_dep5(text: str) -> list[FilesParagraph]:
    """The ``Files:`` paragraphs of a DEP-5 copyright file, in file order (stand-alone ``License:``
    paragraphs, which only hold licence texts, are skipped). Non-DEP-5 text gives an empty list."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        fields: dict[str, list[str]] = {}
        key = None
        for line in block.split("\n"):
            if not line.strip() or line.startswith("#"):
                continue
            if line[0] in " \t" and key is not None:
                fields[key].append(line.strip())
                continue
            name, _, value = line.partition(":")
            key = name.strip().lower()
            fields[key] = [value.strip()] if value.strip() else []
        if "files" not in fields or "license" not in fields or not fields["license"]:
            continue
        globs = tuple(glob for line in fields["files"] for glob in line.split())
        holders = "; ".join(line for line in fields.get("copyright", []) if line and line != ".")
        paragraphs.append(FilesParagraph(globs, holders, fields["license"][0]))
    return paragraphs


def read_copyright(path: str | Path) -> list[FilesParagraph]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The copyright file {path} does not exist; install the package or fix the source's 'copyright'.")
    return parse_dep5(path.read_text(encoding="utf-8", errors="replace"))


def licence_of(paragraphs: list[FilesParagraph], path: str) -> FilesParagraph | None:
    """The paragraph that decides ``path``'s licence: the last one that matches it (DEP-5 rule)."""
    found = None
    for paragraph in paragraphs:
        if paragraph.matches(path):
            found = paragraph
    return found


def glob_match(pattern: str, path: str) -> bool:
    """Label-map style globs: fnmatch, where ``*`` also crosses ``/`` and ``**/`` may match nothing."""
    return fnmatch.fnmatchcase(path, pattern) or ("**/" in pattern and fnmatch.fnmatchcase(path, pattern.replace("**/", "")))
