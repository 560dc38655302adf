"""Training recipes: TOML files validated by pydantic, every value overridable from the CLI.

A recipe has the sections every target shares (``run``, ``optim``, ``data``) and the sections
its target adds (``model``, ``loss``...). Unknown keys are rejected, so a typo never silently
trains with a default. Built-in recipes live in ``training/recipes/<target>-<preset>.toml``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from mka_core.config import StrictModel
from mka_core.errors import InputError

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
        raise InputError(f"The override '{text}' needs the form section.key=value, for example optim.lr=2e-4.")
    key, raw = text.split("=", 1)
    path = [part.strip() for part in key.strip().split(".")]
    if not all(path):
        raise InputError(f"The override '{text}' has an empty key; use section.key=value.")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare words: paths, names
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InputError(f"The override '{text}' goes into '{part}', which is a value, not a section.")
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
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise InputError(f"The recipe {source} is invalid: {problems}.") from None


def recipe_to_toml(recipe: Recipe) -> str:
    """The resolved recipe as TOML (written into every run folder for reproducibility)."""
    data = recipe.model_dump(mode="json")
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for key, value in scalars.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            for sub, sub_value in value.items():
                if sub_value is None:
                    continue
                if isinstance(sub_value, dict):
                    lines.append(f"{sub} = {{ {', '.join(f'{k} = {_toml_value(v)}' for k, v in sub_value.items() if v is not None)} }}")
                else:
                    lines.append(f"{sub} = {_toml_value(sub_value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None) + " }"
    import json

    return json.dumps(str(value))
