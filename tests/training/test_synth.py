"""The procedural sound-event corpus: classes, clips, captions, splits, files and the CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mka_core.errors import InputError
from tests.conftest import assert_clean_error, run_cli
from training.data.manifest import COLUMNS, read_manifest
from training.data.synth import (
    CLASSES,
    ClipSpec,
    generate_corpus,
    make_caption,
    plan_corpus,
    render_clip,
)
from training.data.synth.captions import FRAMES, compose_caption
from training.data.synth.dsp import active_level
from training.data.synth.scenes import MODES, sample_scene, streams

SR = 16000
LISTENER_NAMES = {"siren", "dog_bark", "bell", "clock_tick", "rain", "wind", "engine", "footsteps", "birds",
                  "thunder", "knocking", "whistle", "applause", "dripping", "alarm", "drums"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small corpus with short clips (every class, every mode), made once for this module."""
    out = tmp_path_factory.mktemp("synth") / "corpus"
    generate_corpus(out, 32, seed=11, min_duration=1.0, max_duration=1.5, holdout_fraction=0.2, valid_fraction=0.1)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- classes and single clips -------------------------------------------------------------------

def test_the_sixteen_named_classes_are_all_there():
    assert len(CLASSES) >= 16 and len(set(CLASSES)) == len(CLASSES)
    assert LISTENER_NAMES <= set(CLASSES)


@pytest.mark.parametrize("name", CLASSES)
def test_each_class_renders_a_finite_audible_clip_of_the_asked_length(name):
    wave = render_clip(ClipSpec((name,), "single", 5.0), seed=3)
    assert wave.dtype == np.float32 and wave.shape == (5 * SR,)
    assert np.isfinite(wave).all()
    assert np.abs(wave).max() <= 1.0
    assert active_level(wave) > 10 ** (-40 / 20)  # louder than -40 dBFS while it sounds
    again = render_clip(ClipSpec((name,), "single", 5.0), seed=3)
    assert np.array_equal(wave, again)
    assert not np.array_equal(wave, render_clip(ClipSpec((name,), "single", 5.0), seed=4))


def test_render_clip_accepts_a_name_a_list_and_a_dict():
    assert render_clip("bell", 0).shape == (8 * SR,)
    both = render_clip(["rain", "bell"], 0)
    assert both.shape == (8 * SR,)
    spec = {"classes": ["bell", "rain"], "mode": "background", "duration": 6}
    assert np.array_equal(render_clip(spec, 5), render_clip(ClipSpec(("bell", "rain"), "background", 6.0), 5))


def test_clip_specs_from_labels_strings_and_dicts():
    assert ClipSpec.coerce("bell;rain") == ClipSpec(("bell", "rain"), "while", 8.0)
    assert ClipSpec.coerce({"labels": "bell;rain", "mode": "then", "duration": 5}) == ClipSpec(("bell", "rain"), "then", 5.0)
    assert ClipSpec.coerce({"class": "bell"}) == ClipSpec(("bell",), "single", 8.0)
    for bad in ({"colour": "red"}, {"classes": "bell", "duration": "long"}, 7, []):
        with pytest.raises(InputError):
            ClipSpec.coerce(bad)
    for seed in (-1, 2.5):
        with pytest.raises(InputError, match="seed"):
            render_clip("bell", seed)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"classes": ("violin",)}, "Unknown sound class"),
    ({"classes": ("bell",), "mode": "sideways"}, "mode"),
    ({"classes": ("bell",), "mode": "then"}, "2 distinct"),
    ({"classes": ("bell", "bell"), "mode": "while"}, "2 distinct"),
    ({"classes": ("bell", "rain"), "mode": "single"}, "1 distinct"),
    ({"classes": ("bell",), "duration": 0.1}, "seconds"),
])
def test_bad_clip_specs_are_input_errors(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        ClipSpec(**kwargs)


def test_then_composition_puts_the_first_class_first():
    # Bell alone over the first half, knocking alone over the second: the halves differ from
    # renders of each class, but each half is audible.
    wave = render_clip(ClipSpec(("bell", "knocking"), "then", 8.0), seed=2)
    assert active_level(wave[: 3 * SR]) > 0.003 and active_level(wave[5 * SR:]) > 0.003
    scene = sample_scene(ClipSpec(("bell", "knocking"), "then", 8.0), streams(2)[0])
    first, second = scene.events
    assert first.name == "bell" and first.start == 0 and first.stop <= second.start
    assert second.name == "knocking" and second.stop == 8 * SR


def test_background_sound_sits_well_below_the_lead():
    scene = sample_scene(ClipSpec(("siren", "rain"), "background", 6.0), streams(9)[0])
    assert scene.events[1].role == "background" and scene.events[1].gain_db <= -10.0


# --- captions -----------------------------------------------------------------------------------

def _captions(split: str, count: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(count):
        mode = MODES[k % len(MODES)]
        names = tuple(rng.choice(CLASSES, 1 if mode == "single" else 2, replace=False))
        spec = ClipSpec(names, mode, 5.0)
        scene_rng, _, caption_rng = streams(1000 + k)
        scene = sample_scene(spec, scene_rng)
        out.append(compose_caption(mode, [(e.name, e.params["tags"]) for e in scene.events], scene.tags, split,
                                   caption_rng))
    return out


def test_heldout_captions_never_repeat_a_train_caption_or_frame():
    train = _captions("train", 800)
    heldout = _captions("heldout", 800)
    assert not {c for c, _ in train} & {c for c, _ in heldout}
    assert all(".t" in t for _, t in train) and all(".h" in t for _, t in heldout)
    for mode, sets in FRAMES.items():
        assert not set(sets["train"]) & set(sets["heldout"]), mode
    # Many distinct phrasings: captions are not a handful of fixed strings.
    assert len({c for c, _ in train}) > 700


def test_captions_reflect_the_parameters():
    heavy_words, light_words = ("heavy", "pouring", "torrential", "downpour", "rainstorm"), ("light", "drizzl", "gentle")
    seen_heavy = seen_light = 0
    for seed in range(300):
        scene = sample_scene(ClipSpec(("rain",), "single", 5.0), streams(seed)[0])
        caption = make_caption(ClipSpec(("rain",), "single", 5.0), seed).lower()
        intensity = scene.events[0].params["intensity"]
        if any(word in caption for word in heavy_words):
            seen_heavy += 1
            assert intensity > 0.66, caption
        if any(word in caption for word in light_words):
            seen_light += 1
            assert intensity < 0.33, caption
    assert seen_heavy > 20 and seen_light > 20
    for seed in range(200):
        scene = sample_scene(ClipSpec(("siren",), "single", 5.0), streams(seed)[0])
        caption = make_caption(ClipSpec(("siren",), "single", 5.0), seed).lower()
        if "high-pitched" in caption or "shrill" in caption:
            assert scene.events[0].params["tags"]["pitch"] == "high", caption


def test_each_class_has_many_phrasings():
    for name in CLASSES:
        captions = {make_caption(ClipSpec((name,), "single", 5.0), seed) for seed in range(60)}
        assert len(captions) >= 25, (name, sorted(captions)[:5])


# --- the corpus on disk -------------------------------------------------------------------------

def test_corpus_files_manifests_and_audio(corpus):
    for name in ("train.tsv", "valid.tsv", "heldout.tsv", "classes.json", "synth.json"):
        assert (corpus / name).is_file(), name
    assert json.loads((corpus / "classes.json").read_text()) == CLASSES
    meta = json.loads((corpus / "synth.json").read_text())
    assert meta["seed"] == 11 and meta["n"] == 32 and meta["version"] >= 1
    header = (corpus / "train.tsv").read_text().splitlines()[0].split("\t")
    assert header[: len(COLUMNS)] == list(COLUMNS) and "labels" in header
    rows = {split: read_manifest(corpus / f"{split}.tsv") for split in ("train", "valid", "heldout")}
    assert {k: len(v) for k, v in rows.items()} == {"train": 23, "valid": 3, "heldout": 6}
    everything = [row for split_rows in rows.values() for row in split_rows]
    assert len({row.name for row in everything}) == 32
    for row in everything:
        assert row.caption and row.mel_path == "" and row.dataset == "mka-synth"
        assert row.labels and set(row.labels) <= set(CLASSES)
        info = sf.info(row.audio_path)
        assert info.samplerate == SR and info.channels == 1
        assert 1.0 <= info.duration <= 1.5 and abs(info.duration - row.duration) < 1e-3
        wave, _ = sf.read(row.audio_path, dtype="float32")
        assert np.isfinite(wave).all() and np.abs(wave).max() > 0.01
    assert Path(everything[0].audio_path).parent == corpus / "audio"


def test_corpus_covers_every_class_and_balances_splits(corpus):
    rows = {split: read_manifest(corpus / f"{split}.tsv") for split in ("train", "valid", "heldout")}
    assert {label for row in rows["train"] for label in row.labels} == set(CLASSES)
    for split, split_rows in rows.items():
        # The lead class goes round the list: counts differ by at most one within a split.
        leads = Counter(row.labels[0] for row in split_rows)
        counts = [leads.get(name, 0) for name in CLASSES]
        assert max(counts) - min(counts) <= 1, (split, leads)
    modes = Counter(row.extra["mode"] for split_rows in rows.values() for row in split_rows)
    assert modes["single"] > 0 and sum(modes.values()) - modes["single"] > 0


def test_heldout_split_uses_only_unseen_phrasings(corpus):
    train = read_manifest(corpus / "train.tsv") + read_manifest(corpus / "valid.tsv")
    heldout = read_manifest(corpus / "heldout.tsv")
    assert not {r.caption for r in train} & {r.caption for r in heldout}
    assert not {r.extra["template"] for r in train} & {r.extra["template"] for r in heldout}


def test_a_manifest_row_can_be_rerendered_from_its_columns(corpus):
    row = read_manifest(corpus / "train.tsv")[5]
    spec = ClipSpec(tuple(row.labels), row.extra["mode"], row.duration)
    on_disk, _ = sf.read(row.audio_path, dtype="float32")
    again = render_clip(spec, int(row.extra["seed"]))
    assert np.max(np.abs(on_disk - again)) < 1.5 / 32768  # PCM16 rounding only


def test_same_seed_same_bytes_whatever_the_workers(tmp_path, corpus):
    generate_corpus(tmp_path / "b", 32, seed=11, workers=2, min_duration=1.0, max_duration=1.5,
                    holdout_fraction=0.2, valid_fraction=0.1)
    assert _files(corpus) == _files(tmp_path / "b")
    generate_corpus(tmp_path / "c", 2, seed=12, min_duration=1.0, max_duration=1.5)
    assert _files(tmp_path / "c")["audio/synth_000000.wav"] != _files(corpus)["audio/synth_000000.wav"]


def test_single_only_and_a_class_subset(tmp_path):
    generate_corpus(tmp_path, 12, seed=1, single_only=True, classes=["bell", "rain", "siren"], min_duration=1.0,
                    max_duration=1.0, holdout_fraction=0.25, valid_fraction=0.0)
    rows = read_manifest(tmp_path / "train.tsv") + read_manifest(tmp_path / "heldout.tsv")
    assert len(rows) == 12 and all(row.extra["mode"] == "single" and len(row.labels) == 1 for row in rows)
    assert Counter(row.labels[0] for row in rows) == {"bell": 4, "rain": 4, "siren": 4}
    assert read_manifest(tmp_path / "valid.tsv") == []
    assert json.loads((tmp_path / "classes.json").read_text()) == ["bell", "rain", "siren"]


def test_a_smaller_rerun_removes_the_stale_clips(tmp_path):
    generate_corpus(tmp_path, 5, seed=0, min_duration=1.0, max_duration=1.0)
    generate_corpus(tmp_path, 3, seed=0, min_duration=1.0, max_duration=1.0)
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == [f"synth_00000{i}.wav" for i in range(3)]


def test_plan_is_balanced_for_a_large_corpus():
    plans = plan_corpus(3200, seed=4)
    for split in ("train", "valid", "heldout"):
        leads = Counter(p.spec.classes[0] for p in plans if p.split == split)
        seconds = Counter(p.spec.classes[1] for p in plans if p.split == split and len(p.spec.classes) == 2)
        assert max(leads.values()) - min(leads.values()) <= 1, split
        assert max(seconds.values()) - min(seconds.values()) <= 1, (split, seconds)
        assert all(len(set(p.spec.classes)) == len(p.spec.classes) for p in plans)
    durations = [p.spec.duration for p in plans]
    assert 5.0 <= min(durations) and max(durations) <= 10.0
    assert Counter(p.spec.mode for p in plans)["single"] / len(plans) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"n": 0}, "positive"),
    ({"n": -2}, "positive"),
    ({"n": 4, "seed": -1}, "seed"),
    ({"n": 4, "holdout_fraction": 1.5}, "holdout_fraction"),
    ({"n": 4, "holdout_fraction": 0.6, "valid_fraction": 0.5}, "sum"),
    ({"n": 4, "min_duration": 6.0, "max_duration": 5.0}, "Durations"),
    ({"n": 4, "classes": ["bell", "violin"]}, "violin"),
    ({"n": 4, "workers": 0}, "workers"),
])
def test_generate_corpus_rejects_bad_settings(tmp_path, kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        generate_corpus(tmp_path / "x", **kwargs)


# --- the CLI ------------------------------------------------------------------------------------

def test_cli_writes_a_corpus(tmp_path):
    out = tmp_path / "cli"
    result = run_cli("data", "synth", "--out", out, "--n", "6", "--seed", "2", "--duration", "1.5", "2",
                     "--quiet", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "6 clips" in result.stdout
    rows = read_manifest(out / "train.tsv")
    assert rows and all(1.5 <= row.duration <= 2.0 for row in rows)
    fixed = run_cli("data", "synth", "--out", tmp_path / "fixed", "--n", "3", "--duration", "1.25", "--single-only",
                    "--quiet")
    assert fixed.returncode == 0, fixed.stderr
    rows = read_manifest(tmp_path / "fixed" / "train.tsv")
    assert all(row.duration == 1.25 and row.extra["mode"] == "single" for row in rows)


@pytest.mark.parametrize("extra, fragment", [
    (["--n", "0"], "--n"),
    (["--n", "-5"], "--n"),
    (["--n", "abc"], "--n"),
    (["--n", "3", "--seed", "-1"], "--seed"),
    (["--n", "3", "--duration", "3", "2"], "longer"),
    (["--n", "3", "--duration", "1", "2", "3"], "one value or two"),
    (["--n", "3", "--classes", "bell,violin"], "violin"),
    (["--n", "3", "--workers", "0"], "--workers"),
    (["--n", "3", "--holdout-fraction", "2"], "holdout_fraction"),
])
def test_cli_bad_input_is_one_clean_sentence(tmp_path, extra, fragment):
    assert_clean_error(run_cli("data", "synth", "--out", tmp_path / "o", "--quiet", *extra), fragment)


def test_cli_refuses_an_output_that_is_a_file(tmp_path):
    target = tmp_path / "a_file"
    target.write_text("not a folder")
    assert_clean_error(run_cli("data", "synth", "--out", target, "--n", "2", "--quiet"), "not a folder")
    assert target.read_text() == "not a folder"
