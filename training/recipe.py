"""Training recipes: TOML files validated by pydantic, every value overridable from the CLI.

A recipe has the sections every target shares (``run``, ``optim``, ``data``) and the sections
its target adds (``model``, ``loss``...). Unknown keys are rejected, so a typo never silently
trains with a default. Built-in recipes live in ``training/recipes/<target>-<preset>.toml``.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from mka_core.config import StrictModel
from mka_core.errors import InputError, shown, validation_problems

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"


class RunSection(StrictModel):
    seed: int = 0
    max_steps: int = Field(1000, ge=1, description="optimiser steps to train")
    batch_size: int = Field(8, ge=1, description="samples per step per process (before accumulation)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimiser step")
    grad_clip: float = Field(1.0, ge=0, description="max global grad norm (0 disables)")
    precision: Literal["float32", "bf16", "auto"] = Field(
        "float32", description="bf16 autocast where the device supports it ('auto': on CUDA with bf16 support)")
    device: str = "auto"
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(500, ge=1, description="steps between checkpoints (also written on SIGINT/SIGTERM)")
    keep_checkpoints: int = Field(2, ge=1)
    validate_every: int = Field(0, ge=0, description="steps between validation passes (0: only at the end)")
    sample_every: int = Field(0, ge=0, description="steps between sample renders (audio + mel PNG); 0: only at the end")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    tensorboard: bool = Field(True, description="also log to TensorBoard when it is installed")


class OptimSection(StrictModel):
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    min_lr_ratio: float = Field(0.0, ge=0, le=1)


class DataSection(StrictModel):
    train: str = Field("", description="training manifest (TSV); required unless given with --data")
    valid: str = Field("", description="validation manifest (optional)")
    crop_frames: int = Field(624, ge=8, description="mel frames per training crop (624 = 9.984 s)")
    valid_limit: int = Field(64, ge=1, description="validation rows used at most")
    cache_dir: str = Field("", description="folder for cached mels/latents/embeddings ('' = <run>/cache)")


class Recipe(StrictModel):
    """The shared part of every recipe; targets subclass it and add their sections."""

    target: str
    preset: str = "tiny"
    run: RunSection = RunSection()
    optim: OptimSection = OptimSection()
    data: DataSection = DataSection()


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=2e-4"`` -> (["optim", "lr"], 0.0002). Values are TOML literals, else strings."""
    if "=" not in text:
        raise InputError(f"The override '{shown(text)}' needs the form section.key=value, for example optim.lr=2e-4.")
    key, raw = text.split("=", 1)
    path = [part.strip() for part in key.strip().split(".")]
    if not all(path):
        raise InputError(f"The override '{shown(text)}' has an empty key; use section.key=value.")
    raw = raw.strip()
    try:
        document = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        document = {}
    # Exactly one literal, or else the text as typed (bare words: paths, names) - never a
    # literal followed by more TOML that would be dropped ("1\nseed = 5").
    value = document["v"] if set(document) == {"v"} else raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InputError(f"The override '{shown(text)}' goes into '{shown(part)}', which is a value, not a section.")
            node = child
        node[path[-1]] = value
    return data


def builtin_recipe_path(target: str, preset: str) -> Path:
    path = RECIPES_DIR / f"{target}-{preset}.toml"
    if not path.is_file():
        available = sorted(p.stem for p in RECIPES_DIR.glob(f"{target}-*.toml"))
        raise InputError(
            f"There is no built-in recipe '{target}-{preset}'; available for {target}: "
            f"{', '.join(available) or 'none'} (or pass --recipe FILE)."
        )
    return path


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The recipe {path} does not exist.")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"The recipe {path} is not valid TOML: {exc}.") from None


def validate_recipe(recipe_class: type[Recipe], data: dict[str, Any], source: str) -> Recipe:
    try:
        return recipe_class.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"The recipe {shown(source, 200)} is invalid: {validation_problems(exc, limit=5)}.") from None


def recipe_to_toml(recipe: Recipe) -> str:
    """The resolved recipe as TOML (written into every run folder for reproducibility).

    It reads back as the same recipe: strings and keys are written so that TOML gives back
    exactly the characters the recipe holds. TOML has no null, so ``None`` values are left out.
    """
    # JSON mode turns paths and tuples into TOML-writable values, but also infinities and NaN into
    # None (JSON has neither); take those back from the Python dump, since TOML can write them.
    data = _keep_non_finite(recipe.model_dump(mode="json"), recipe.model_dump())
    lines: list[str] = []
    for key, value in data.items():
        if value is not None and not isinstance(value, dict):
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"\n[{_toml_key(key)}]")
            for sub, sub_value in value.items():
                if sub_value is not None:
                    lines.append(f"{_toml_key(sub)} = {_toml_value(sub_value)}")
    return "\n".join(lines) + "\n"


def _keep_non_finite(as_json: Any, as_python: Any) -> Any:
    if as_json is None and isinstance(as_python, float) and not math.isfinite(as_python):
        return as_python
    if isinstance(as_json, dict) and isinstance(as_python, dict):
        return {k: _keep_non_finite(v, as_python.get(k)) for k, v in as_json.items()}
    if isinstance(as_json, list) and isinstance(as_python, (list, tuple)) and len(as_json) == len(as_python):
        return [_keep_non_finite(a, b) for a, b in zip(as_json, as_python)]
    return as_json


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped, everything else as is
    (JSON's escapes are not enough: TOML has no surrogate pairs and forbids a raw DEL)."""
    escaped = []
    for char in text:
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04X}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None) + " }"
    return _toml_string(str(value))
