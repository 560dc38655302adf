"""`mka new-model` writes random weights: the folder records it, and generating with it says so once."""

from __future__ import annotations

import json
import warnings

from mka_core import Pipeline
from tests.conftest import run_cli


def test_new_model_records_untrained_and_generate_warns_once(tmp_path):
    model = tmp_path / "fresh"
    made = run_cli("new-model", "--preset", "tiny", "--cond", "bert", "--seed", "3", "--out", model)
    assert made.returncode == 0, made.stderr
    assert "untrained" in made.stdout
    index = json.loads((model / "model_index.json").read_text())
    assert index["pipeline"]["origin"] == "untrained:new-model:tiny"

    done = run_cli("generate", "--model", model, "a dog", "a cat", "--n", "2", "--duration", "0.5", "--steps", "2",
                   "--seed", "0", "-o", f"{tmp_path / 'out'}/")
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "random weights from new-model" in line]
    assert len(notes) == 1, done.stderr
    assert notes[0].startswith("mka: warning:") and "mka train" in notes[0] and str(model) in notes[0]

    # A request that fails shows its error alone: the note comes with outputs.
    failed = run_cli("generate", "--model", model, "a dog", "--sampler", "nope", "--steps", "1", "-o", tmp_path / "f.wav")
    assert failed.returncode == 2 and "random weights" not in failed.stderr, failed.stderr

    pipe = Pipeline.from_pretrained(model, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe(["a dog"], duration=0.5, steps=1, seed=0)
        pipe(["a cat"], duration=0.5, steps=1, seed=0)
    assert len([w for w in caught if "random weights from new-model" in str(w.message)]) == 1


def test_a_model_not_made_by_new_model_generates_without_the_note(tiny_model_dir):
    pipe = Pipeline.from_pretrained(tiny_model_dir, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe(["a dog"], duration=0.5, steps=1, seed=0)
    assert not [w for w in caught if "new-model" in str(w.message)]


def test_every_new_model_flag_is_documented_for_plugin_authors():
    import argparse
    from pathlib import Path

    from mka_core.cli import new_model

    parser = argparse.ArgumentParser()
    new_model.add_arguments(parser)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = doc.split("`mka new-model`: a model folder for your conditioner", 1)[1].split("\n## ", 1)[0]
    flags = [s for action in parser._actions for s in action.option_strings if s.startswith("--") and s != "--help"]
    assert flags
    for flag in flags:
        assert f"| `{flag}" in section, f"docs/plugins.md's new-model table lacks {flag}"
