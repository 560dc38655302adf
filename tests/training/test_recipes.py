"""Every built-in recipe validates against its target, and the paper's numbers are in them."""

from __future__ import annotations

import pytest

from mka_core.plugins import manager
from training.recipe import RECIPES_DIR, parse_override, read_recipe_file, validate_recipe


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_builtin_recipes_validate(path):
    data = read_recipe_file(path)
    target = manager.get("trainer", data["target"])
    recipe = validate_recipe(target.recipe_class, data, str(path))
    assert recipe.preset in ("tiny", "base")


def test_paper_numbers_in_the_base_recipes():
    diffusion = read_recipe_file(RECIPES_DIR / "diffusion-base.toml")
    assert diffusion["model"]["guidance_dropout"] == 0.1 and diffusion["data"]["crop_frames"] == 624
    vae = read_recipe_file(RECIPES_DIR / "vae-base.toml")
    assert vae["model"]["kl_weight"] == 1e-6 and vae["model"]["vae"] == "base"
    assert read_recipe_file(RECIPES_DIR / "vocoder-base.toml")["model"]["vocoder_preset"] == "v1"


@pytest.mark.parametrize("text, path, value", [
    ("optim.lr=2e-4", ["optim", "lr"], 2e-4),
    ("run.max_steps=10", ["run", "max_steps"], 10),
    ("model.vae=runs/vae/export", ["model", "vae"], "runs/vae/export"),
    ('model.disc="multi-window"', ["model", "disc"], "multi-window"),
    ("model.disc_windows=[16, 32]", ["model", "disc_windows"], [16, 32]),
    ("model.ema=false", ["model", "ema"], False),
])
def test_overrides_parse_toml_values(text, path, value):
    assert parse_override(text) == (path, value)
