"""The label map: from a recording's package path to a sound class and the words that caption it.

A label map is a TOML file with two parts (the checked-in one is ``labelmap.toml`` beside this
module)::

    [class.footsteps]                      # one table per class
    np = ["{J} footsteps on {SURFACE}", "someone walking on {SURFACE}"]     # noun phrases
    clause = ["someone walks on {SURFACE}", "{J} footsteps approach"]      # clauses
    surfaces = { gravel = ["gravel", "a gravel path"] }                  # words for the 'surface' tag
    role = "oneshot"          # oneshot | event | ambience (default: by the file's length)
    sequence = [4, 12]        # one-shots per sequence clip (default [2, 6])
    gap = [0.35, 0.7]         # seconds between one-shot onsets (default [0.4, 1.6])
    background = false        # may its ambience windows sit behind other sounds (default: ambience classes)
    synth = "footsteps"       # a class of `mka data synth` that may fill this class when real clips are few

    [[rule]]                                # rules, first match wins
    pattern = "0ad-data/audio/actor/singlesteps/fs_gravel*"   # fnmatch glob ('*' crosses '/'), or
    # regex = "..."                                          # a Python regex searched in the path
    class = "footsteps"
    tags = { surface = "gravel" }           # tags the caption words may use; a regex's named
                                            # groups add tags too: "(?P<surface>grass|sand)_step"

    [[rule]]
    pattern = "*/music/*"
    drop = "music"                          # leave these files out, with this reason

The phrase tables follow the synthetic corpus's vocabulary format
(:mod:`training.data.synth.captions_vocab`): ``{A}`` an article with adjectives, ``{J}``
adjectives alone, ``{ADV}`` an adverb, ``{SURFACE}`` the surface word; ``adjectives``,
``adverbs`` and ``special`` (keys written ``"tag=value"``) as there. Files that no rule
matches are dropped as "no label".
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mka_core.errors import InputError
from training.data.real.licences import glob_match

ROLES = ("oneshot", "event", "ambience")
DEFAULT_LABEL_MAP = Path(__file__).with_name("labelmap.toml")
_CLASS_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_VOCAB_KEYS = {"np", "clause", "adjectives", "adverbs", "special", "surfaces", "surface_tag", "no_loudness"}
_CLASS_KEYS = _VOCAB_KEYS | {"role", "sequence", "gap", "background", "synth", "description"}


@dataclass
class ClassSpec:
    name: str
    vocab: dict
    role: str | None = None
    sequence: tuple[int, int] = (2, 6)
    gap: tuple[float, float] = (0.4, 1.6)
    background: bool | None = None
    synth: str | None = None


@dataclass
class Rule:
    index: int
    pattern: str | None
    regex: re.Pattern | None
    label: str | None
    drop: str | None
    tags: dict = field(default_factory=dict)
    role: str | None = None

    def matches(self, package_path: str) -> bool:
        if self.regex is not None:
            return self.regex.search(package_path) is not None
        return glob_match(self.pattern or "", package_path)

    def tags_for(self, package_path: str) -> dict:
        """The rule's tags, plus the regex's named groups (lower-cased): ``(?P<surface>grass|sand)``."""
        tags = dict(self.tags)
        if self.regex is not None:
            match = self.regex.search(package_path)
            if match is not None:
                tags.update({k: v.lower() for k, v in match.groupdict().items() if v})
        return tags


@dataclass
class LabelMap:
    classes: dict[str, ClassSpec]
    rules: list[Rule]
    path: str = ""

    def match(self, package_path: str) -> Rule | None:
        for rule in self.rules:
            if rule.matches(package_path):
                return rule
        return None

    def vocab(self) -> dict[str, dict]:
        return {name: spec.vocab for name, spec in self.classes.items()}


def _pair(value, kind, where: str):
    if not (isinstance(value, list) and len(value) == 2):
        raise InputError(f"{where} must be a pair [low, high].")
    low, high = kind(value[0]), kind(value[1])
    if low <= 0 or high < low:
        raise InputError(f"{where} must be a pair of positive numbers with low <= high, got {value}.")
    return low, high


def _vocab(name: str, table: dict, where: str) -> dict:
    vocab = {key: table[key] for key in _VOCAB_KEYS if key in table}
    for key in ("np", "clause"):
        phrases = vocab.get(key)
        if not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise InputError(f"Class '{name}' in {where} needs '{key}': a list of caption phrases.")
    special = {}
    for key, phrases in (table.get("special") or {}).items():
        tag, sep, value = key.partition("=")
        if not sep:
            raise InputError(f"'special' keys of class '{name}' in {where} are written \"tag=value\", got {key!r}.")
        special[(tag.strip(), value.strip())] = list(phrases)
    vocab["special"] = special
    vocab.setdefault("adjectives", {})
    vocab.setdefault("adverbs", {})
    if "surfaces" in vocab and "surface_tag" not in vocab:
        vocab["surface_tag"] = "surface"
    return vocab


def parse_label_map(data: dict, where: str) -> LabelMap:
    tables = data.get("class")
    if not isinstance(tables, dict) or not tables:
        raise InputError(f"{where} defines no classes; add [class.NAME] tables with 'np' and 'clause' phrases.")
    classes = {}
    for name, table in tables.items():
        if not _CLASS_NAME.match(name):
            raise InputError(f"Class name {name!r} in {where} must be lower-case letters, digits and '_'.")
        unknown = sorted(set(table) - _CLASS_KEYS)
        if unknown:
            raise InputError(f"Class '{name}' in {where} has unknown key(s) {', '.join(unknown)}.")
        role = table.get("role")
        if role is not None and role not in ROLES:
            raise InputError(f"Class '{name}' in {where} has role {role!r}; choose from {', '.join(ROLES)}.")
        classes[name] = ClassSpec(
            name=name, vocab=_vocab(name, table, where), role=role,
            sequence=_pair(table.get("sequence", [2, 6]), int, f"'sequence' of class '{name}' in {where}"),
            gap=_pair(table.get("gap", [0.4, 1.6]), float, f"'gap' of class '{name}' in {where}"),
            background=table.get("background"), synth=table.get("synth"))
    rules = []
    for index, table in enumerate(data.get("rule", []), start=1):
        pattern, regex = table.get("pattern"), table.get("regex")
        if (pattern is None) == (regex is None):
            raise InputError(f"Rule {index} of {where} needs exactly one of 'pattern' (a glob) or 'regex'.")
        compiled = None
        if regex is not None:
            try:
                compiled = re.compile(regex)
            except re.error as exc:
                raise InputError(f"Rule {index} of {where} has an invalid regex {regex!r} ({exc}).") from None
        label, drop = table.get("class"), table.get("drop")
        if (label is None) == (drop is None):
            raise InputError(f"Rule {index} of {where} needs exactly one of 'class' or 'drop'.")
        if label is not None and label not in classes:
            raise InputError(f"Rule {index} of {where} names the class '{label}', which has no [class.{label}] table.")
        role = table.get("role")
        if role is not None and role not in ROLES:
            raise InputError(f"Rule {index} of {where} has role {role!r}; choose from {', '.join(ROLES)}.")
        tags = {str(k): str(v) for k, v in (table.get("tags") or {}).items()}
        rules.append(Rule(index, pattern, compiled, label, drop, tags, role))
    if not rules:
        raise InputError(f"{where} has no [[rule]] tables mapping path patterns to classes.")
    return LabelMap(classes, rules, where)


def load_label_map(path: str | Path | None = None) -> LabelMap:
    """Read and check a label map (default: the checked-in ``labelmap.toml``)."""
    path = Path(path) if path is not None else DEFAULT_LABEL_MAP
    if not path.is_file():
        raise InputError(f"The label map {path} does not exist.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"The label map {path} is not valid TOML ({exc}).") from None
    return parse_label_map(data, str(path))
