"""Property tests for recipe overrides (`mka train ... --set section.key=VALUE`).

VALUE is a TOML literal (a bare word is a string). The properties: every TOML value comes back
as itself; an override lands in the validated recipe unchanged; the resolved recipe written into
a run folder (``recipe.toml``, re-read by ``--resume`` and ``mka train export``) reads back as
the same recipe; and an unknown key, a value of the wrong type or a malformed override is one
sentence on one line, whatever characters the user typed.
"""

from __future__ import annotations

import math
import tomllib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mka_core.errors import InputError
from training.recipe import apply_overrides, parse_override, recipe_to_toml, validate_recipe
from training.targets.diffusion import DiffusionRecipe

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- TOML literals, written here independently of training.recipe -----------------------------------------------


def toml_literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        escaped = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' else c for c in value)
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_literal(k)} = {toml_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


INTEGERS = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=False)
SCALARS = st.one_of(INTEGERS, FLOATS, st.booleans(), st.text())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)


def one_sentence(message: str) -> None:
    assert len(message.splitlines()) == 1, repr(message)
    assert message.endswith("."), message
    assert len(message) < 600, message


# -- parsing -----------------------------------------------------------------------------------------------------


@SETTINGS
@given(value=VALUES)
@example(value="a \u2028 b \x7f c \"q\" \\ \U0001f50a")
@example(value=float("inf"))
def test_every_toml_value_comes_back_as_itself(value):
    assert parse_override(f"model.defaults.x={toml_literal(value)}") == (["model", "defaults", "x"], value)


# Words that no TOML value can be: they start with a letter that begins no TOML keyword (true,
# false, inf, nan) and hold a '/', which only a quoted string may contain.
PATH_WORDS = st.builds(
    lambda head, rest: head + rest,
    st.sampled_from("abcdeghjklmopqrsuvwxyzABCDEFGHJKLMOPQRSUVWXYZ"),
    st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), max_size=20).map(lambda t: t + "/x"),
)


@SETTINGS
@given(word=PATH_WORDS)
@example(word="runs/vae/export")
def test_a_bare_path_is_the_string_typed(word):
    assert parse_override(f"data.train={word}") == (["data", "train"], word)
    assert parse_override(f"data.train=  {word}  ") == (["data", "train"], word)  # outer spaces go


@pytest.mark.parametrize("raw,expected", [
    ("2e-4", 2e-4), ("16", 16), ("true", True), ("[1, 2]", [1, 2]), ('"quoted"', "quoted"),
    ("{a = 1}", {"a": 1}), ("C:\\data\\train.tsv", "C:\\data\\train.tsv"), ("1 2", "1 2"),
    # a literal followed by more TOML is not silently cut to the literal
    ("1\nseed = 5", "1\nseed = 5"), ("[1, 2", "[1, 2"), ("clap-text", "clap-text"),
])
def test_override_values_by_example(raw, expected):
    assert parse_override(f"model.x={raw}") == (["model", "x"], expected)


@SETTINGS
@given(text=st.text().filter(lambda t: "=" not in t))
@example(text="run.seed 5")
def test_an_override_without_a_value_is_one_sentence(text):
    with pytest.raises(InputError) as info:
        parse_override(text)
    one_sentence(str(info.value))


@SETTINGS
@given(parts=st.lists(st.text().filter(lambda p: "=" not in p and "." not in p), min_size=1, max_size=4).filter(
    lambda parts: any(not p.strip() for p in parts)))
@example(parts=["run", "", "seed"])
@example(parts=["run", "\n"])
def test_an_override_with_an_empty_key_part_is_one_sentence(parts):
    with pytest.raises(InputError) as info:
        parse_override(".".join(parts) + "=1")
    one_sentence(str(info.value))


# -- overrides in a validated recipe -----------------------------------------------------------------------------

PATHS = st.text(st.characters(blacklist_categories=("Cs",)))
#: Fields of the diffusion recipe with values they accept (the shared run/optim/data sections included).
FIELDS = {
    "run.seed": INTEGERS,
    "run.max_steps": st.integers(1, 2**63 - 1),
    "run.grad_clip": st.floats(min_value=0),
    "run.precision": st.sampled_from(["float32", "bf16", "auto"]),
    "run.device": PATHS,
    "run.tensorboard": st.booleans(),
    "optim.lr": st.floats(min_value=0, exclude_min=True),
    "optim.betas": st.tuples(FLOATS, FLOATS),
    "data.train": PATHS,
    "data.cache_dir": PATHS,
    "ema_decay": st.floats(min_value=0, max_value=1, exclude_min=True, exclude_max=True),
    "model.init": PATHS,
    "model.guidance_dropout": st.floats(0, 1),
    "model.unet_overrides": st.dictionaries(st.text(min_size=1, max_size=12), SCALARS, max_size=3),
    "model.defaults": st.dictionaries(st.text(min_size=1, max_size=12), VALUES, max_size=3),
    "model.reprogram.probabilities": st.tuples(FLOATS, FLOATS, FLOATS),
}


@st.composite
def overrides(draw):
    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, min_size=1, max_size=6))
    return {key: draw(FIELDS[key]) for key in keys}


def field(recipe, key: str):
    value = recipe
    for part in key.split("."):
        value = getattr(value, part)
    return value


def resolved(chosen: dict) -> DiffusionRecipe:
    data = apply_overrides({"target": "diffusion"}, [f"{key}={toml_literal(value)}" for key, value in chosen.items()])
    return validate_recipe(DiffusionRecipe, data, "recipe.toml")


@SETTINGS
@given(chosen=overrides())
def test_an_override_lands_in_the_recipe_unchanged(chosen):
    recipe = resolved(chosen)
    for key, value in chosen.items():
        assert field(recipe, key) == value, key


@SETTINGS
@given(chosen=overrides())
@example(chosen={"data.train": "sons/\U0001f50a \x7f\u2028.tsv"})
@example(chosen={"model.unet_overrides": {"model channels": 8, "a.b": 1, "": 2, "x\ny": True}})
@example(chosen={"model.defaults": {"steps": [], "extra": {"a b": 1}}})
@example(chosen={"model.defaults": {"0": float("inf"), "1": float("-inf")}})  # JSON drops them; TOML keeps them
def test_the_recipe_written_to_a_run_folder_reads_back_the_same(chosen):
    recipe = resolved(chosen)
    text = recipe_to_toml(recipe)
    again = validate_recipe(DiffusionRecipe, tomllib.loads(text), "recipe.toml")
    assert again == recipe, text


# -- unknown keys and wrong types --------------------------------------------------------------------------------

KNOWN = {"run": set(DiffusionRecipe.model_fields["run"].annotation.model_fields),
         "optim": set(DiffusionRecipe.model_fields["optim"].annotation.model_fields),
         "data": set(DiffusionRecipe.model_fields["data"].annotation.model_fields),
         "model": set(DiffusionRecipe.model_fields["model"].annotation.model_fields)}
KEYS = st.text(min_size=1, max_size=30).filter(lambda k: k.strip() and "." not in k and "=" not in k)


@SETTINGS
@given(section=st.sampled_from(sorted(KNOWN)), key=KEYS)
@example(section="run", key="max_step")
@example(section="optim", key="l\u2028r\x85")
def test_an_unknown_key_is_one_sentence_naming_it(section, key):
    if key.strip() in KNOWN[section]:
        return
    data = apply_overrides({"target": "diffusion"}, [f"{section}.{key}=1"])
    with pytest.raises(InputError) as info:
        validate_recipe(DiffusionRecipe, data, "recipe.toml")
    message = str(info.value)
    one_sentence(message)
    assert f"{section}." in message and "not permitted" in message


@SETTINGS
@given(key=KEYS)
def test_an_unknown_section_is_one_sentence(key):
    if key.strip() in DiffusionRecipe.model_fields:
        return
    data = apply_overrides({"target": "diffusion"}, [f"{key}.x=1"])
    with pytest.raises(InputError) as info:
        validate_recipe(DiffusionRecipe, data, "recipe.toml")
    one_sentence(str(info.value))


WRONG = {  # values of the wrong type for each field
    "run.max_steps": st.one_of(st.floats(allow_nan=False).filter(lambda f: not f.is_integer()),
                               st.lists(INTEGERS, max_size=2), st.text(st.characters(whitelist_categories=("L",)), min_size=1),
                               st.integers(max_value=0)),
    "run.precision": st.one_of(INTEGERS, st.text().filter(lambda t: t not in ("float32", "bf16", "auto"))),
    "run.tensorboard": st.one_of(st.lists(st.booleans(), min_size=1, max_size=2),
                                 st.dictionaries(st.text(max_size=4), INTEGERS, min_size=1, max_size=2)),
    "optim.lr": st.one_of(st.floats(max_value=0), st.lists(FLOATS, max_size=2),
                          st.text(st.characters(whitelist_categories=("L",)), min_size=1).filter(
                              lambda t: t.lower() not in ("inf", "infinity", "nan"))),
    "optim.betas": st.one_of(st.lists(FLOATS, min_size=3, max_size=4), FLOATS, st.text(max_size=3)),
    "data.train": st.one_of(INTEGERS, FLOATS, st.lists(st.text(max_size=3), max_size=2)),
    "model.unet_overrides": st.one_of(INTEGERS, st.text(), st.lists(INTEGERS, max_size=2)),
    "model.reprogram": st.one_of(INTEGERS, st.text()),
}


@SETTINGS
@given(key=st.sampled_from(sorted(WRONG)), data=st.data())
@example(key="data.train", data=None)
def test_a_value_of_the_wrong_type_is_one_sentence_naming_the_field(key, data):
    value = 3 if data is None else data.draw(WRONG[key])
    recipe = apply_overrides({"target": "diffusion"}, [f"{key}={toml_literal(value)}"])
    with pytest.raises(InputError) as info:
        validate_recipe(DiffusionRecipe, recipe, "recipe.toml")
    message = str(info.value)
    one_sentence(message)
    assert key in message, message


@pytest.mark.parametrize("data, override, fragment", [
    ({"target": "diffusion"}, "target.x=1", "'target', which is a value, not a section"),
    ({"target": "diffusion", "run": {"seed": 1}}, "run.seed.x=1", "'seed', which is a value, not a section"),
    ({"target": "diffusion", "run": {"se\ned": 1}}, "run.se\ned.x=1", "'se\\ned', which is a value"),
])
def test_an_override_into_a_value_is_one_sentence(data, override, fragment):
    with pytest.raises(InputError) as info:
        apply_overrides(data, [override])
    one_sentence(str(info.value))
    assert fragment in str(info.value)


def test_the_cli_reports_an_unknown_key_in_one_line_and_prints_what_it_resolved():
    from tests.conftest import assert_clean_error, run_cli

    result = run_cli("train", "diffusion", "--set", "run.max_step=5", "--print-recipe")
    assert_clean_error(result, "run.max_step", "not permitted")
    path = "sons/\U0001f50a \u2028 \"q\".tsv"
    result = run_cli("train", "diffusion", "--set", f"data.train={toml_literal(path)}", "--print-recipe")
    assert result.returncode == 0, result.stderr
    assert tomllib.loads(result.stdout)["data"]["train"] == path
