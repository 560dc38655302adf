"""`mka data real` end to end on small folders of recordings that the tests generate."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import assert_clean_error, run_cli
from training.data.manifest import COLUMNS, read_manifest
from training.data.real.clips import WINDOW_SAMPLES

LABELS = """
[class.rain]
np = ["{J} rain", "rain falling"]
clause = ["rain falls", "it is raining"]
role = "ambience"

[class.footsteps]
np = ["footsteps on {SURFACE}", "someone walking on {SURFACE}"]
clause = ["someone walks on {SURFACE}"]
surfaces = { gravel = ["gravel"], wood = ["a wooden floor"] }
role = "oneshot"
sequence = [3, 6]
gap = [0.3, 0.5]

[class.cow]
np = ["a cow mooing", "a cow"]
clause = ["a cow moos"]

[class.dog_bark]
np = ["a dog barking"]
clause = ["a dog barks"]
synth = "dog_bark"

[[rule]]
pattern = "*/music/*"
drop = "music"

[[rule]]
pattern = "*/rain/*"
class = "rain"

[[rule]]
regex = "steps/(?P<surface>gravel|wood)_"
class = "footsteps"

[[rule]]
pattern = "*/cow/*"
class = "cow"
"""


def _noise(rng, seconds, rate, colour=0.0):
    n = int(seconds * rate)
    x = rng.standard_normal(n)
    if colour:
        x = np.cumsum(x) * colour
        x -= np.convolve(x, np.ones(400) / 400, mode="same")
    return (0.2 * x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def _step(rng, rate):
    n = int(rng.uniform(0.15, 0.3) * rate)
    t = np.arange(n) / rate
    return (0.6 * rng.standard_normal(n) * np.exp(-t * rng.uniform(20, 60))).astype(np.float32)


def _moo(rng, rate, seconds):
    """A voiced call: random harmonic weights, a pitch glide and a breathy noise part."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = rng.uniform(80, 220) * (1 + rng.uniform(-0.3, 0.3) * t / seconds)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(rng.uniform(0, 1) * np.sin(k * phase) for k in range(1, 9))
    wave = wave + rng.uniform(0.05, 0.6) * rng.standard_normal(t.size)
    envelope = np.sin(np.pi * t / seconds) ** rng.uniform(0.5, 3)
    return (0.3 * wave / np.abs(wave).max() * envelope).astype(np.float32)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """Two sources: 'farm' (CC0) and 'gpl' (GPL, left out), with every kind of file to drop."""
    root = tmp_path_factory.mktemp("recordings")
    rng = np.random.default_rng(0)
    farm = root / "farm"
    for k in range(3):  # three long ambiences, at 44.1 kHz stereo
        stereo = np.stack([_noise(rng, 24.0, 44100, 0.05)] * 2, axis=1)
        (farm / "rain").mkdir(parents=True, exist_ok=True)
        sf.write(farm / "rain" / f"rain_{k}.wav", stereo, 44100)
    (farm / "steps").mkdir()
    for k in range(10):
        sf.write(farm / "steps" / f"{'gravel' if k % 2 else 'wood'}_{k}.wav", _step(rng, 48000), 48000)
    (farm / "cow").mkdir()
    for k in range(4):
        sf.write(farm / "cow" / f"moo_{k}.ogg", _moo(rng, 22050, rng.uniform(2.0, 3.5)), 22050)
    # A lossy re-encoding and a resampled copy of a cow: duplicates of moo_0.
    moo, rate = sf.read(farm / "cow" / "moo_0.ogg", dtype="float32")
    sf.write(farm / "cow" / "moo_copy.wav", moo * 0.8, rate)
    (farm / "music").mkdir()
    sf.write(farm / "music" / "song.wav", _moo(rng, 16000, 3.0), 16000)
    (farm / "misc").mkdir()
    sf.write(farm / "misc" / "unlabelled.wav", _step(rng, 16000), 16000)
    sf.write(farm / "cow" / "silent.wav", np.zeros(32000, np.float32), 16000)
    sf.write(farm / "cow" / "tiny.wav", _step(rng, 16000)[:400] * 0 + 0.5 * np.hanning(400), 16000)
    (farm / "cow" / "broken.ogg").write_bytes(b"OggS" + b"\x00" * 64)
    gpl = root / "gpl" / "cow"
    gpl.mkdir(parents=True)
    sf.write(gpl / "moo_gpl.wav", _moo(rng, 16000, 2.5), 16000)
    (root / "labels.toml").write_text(LABELS)
    (root / "sources.toml").write_text(
        '[[source]]\nname = "farm"\nroot = "farm"\nlicence = "CC0"\nauthor = "Farm Recorder"\n\n'
        '[[source]]\nname = "gpl"\nroot = "gpl"\nlicence = "GPL-2+"\n')
    return root


@pytest.fixture(scope="module")
def corpus(recordings, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real") / "corpus"
    result = run_cli("data", "real", "--sources", recordings / "sources.toml", "--labels", recordings / "labels.toml",
                     "--out", out, "--min-clips", "6", "--synthetic-clips", "3", "--heldout", "0.3", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "classes with real audio" in result.stdout
    return out


def _rows(corpus):
    return {split: read_manifest(corpus / f"{split}.tsv") for split in ("train", "valid", "heldout")}


def test_manifest_columns_audio_and_mels(corpus):
    header = (corpus / "train.tsv").read_text().splitlines()[0].split("\t")
    assert header[:6] == list(COLUMNS)
    for column in ("labels", "origin", "licence", "source", "split", "mode", "template"):
        assert column in header
    for split, rows in _rows(corpus).items():
        for row in rows:
            info = sf.info(row.audio_path)
            assert info.samplerate == 16000 and info.channels == 1
            assert 0.05 <= row.duration <= 10.0 + 1e-6
            assert abs(info.frames / 16000 - row.duration) < 1e-3
            mel = np.load(row.mel_path)
            assert mel.shape[0] == 80 and abs(mel.shape[1] - info.frames // 256) <= 1
            assert row.caption and row.extra["licence"] and row.extra["source"] and row.extra["split"] == split


def test_windows_of_long_recordings(corpus):
    rows = [row for rows in _rows(corpus).values() for row in rows
            if row.extra["labels"] == "rain" and row.extra["origin"] == "recording"]
    # Each 24 s rain file gives two 9.984 s windows and a last piece of 4.03 s (under half a window: left out).
    per_source = defaultdict(list)
    for row in rows:
        per_source[row.extra["source"]].append(row.duration)
    assert len(per_source) == 3
    for durations in per_source.values():
        assert durations == [WINDOW_SAMPLES / 16000] * 2


def test_no_source_recording_in_two_splits(corpus):
    seen: dict[str, set] = defaultdict(set)
    for split, rows in _rows(corpus).items():
        for row in rows:
            for source in row.extra["source"].split(";"):
                if not source.startswith("mka-synth:"):
                    seen[source].add(split)
    assert seen and all(len(splits) == 1 for splits in seen.values()), seen
    assert len({next(iter(s)) for s in seen.values()}) >= 2  # the recordings did spread over splits


def test_sequences_backgrounds_and_compositions(corpus):
    rows = [row for rows in _rows(corpus).values() for row in rows]
    steps = [row for row in rows if row.extra["labels"].split(";")[0] == "footsteps"]
    assert steps and all(row.extra["origin"] in ("composed", "recording", "augmented") for row in steps)
    assert any(len(row.extra["source"].split(";")) >= 3 for row in steps)  # several one-shots in one clip
    multi = [row for row in rows if ";" in row.extra["labels"]]
    assert {row.extra["mode"] for row in multi} & {"background", "then", "while"}
    for row in multi:
        assert row.extra["mode"] in ("background", "then", "while") and row.extra["origin"] in ("composed", "augmented")
    assert any("gravel" in row.caption or "wooden" in row.caption for row in steps)
    for row in steps:  # one surface per sequence
        surfaces = {Path(source).name.split("_")[0] for source in row.extra["source"].split(";") if "/steps/" in source}
        assert len(surfaces) == 1, row.extra["source"]


def test_synthetic_and_augmented_rows_are_marked_and_train_only(corpus):
    rows = _rows(corpus)
    for split in ("valid", "heldout"):
        assert all(row.extra["origin"] in ("recording", "composed") for row in rows[split])
    synthetic = [row for row in rows["train"] if row.extra["origin"] == "synthetic"]
    assert len(synthetic) == 3 and all(row.extra["labels"] == "dog_bark" for row in synthetic)
    assert all(row.extra["source"].startswith("mka-synth:dog_bark") for row in synthetic)
    def lead(row):
        return row.extra["labels"].split(";")[0]

    real = Counter(lead(row) for row in rows["train"] if row.extra["origin"] in ("recording", "composed"))
    augmented = Counter(lead(row) for row in rows["train"] if row.extra["origin"] == "augmented")
    assert augmented  # a thin class was filled ...
    for label, count in augmented.items():  # ... up to --min-clips, with at most 3 per real clip
        assert count <= 3 * real[label] and real[label] + count <= 6
    classifier_rows = read_manifest(corpus / "classifier-train.tsv")
    assert classifier_rows and all(row.extra["origin"] in ("recording", "composed") for row in classifier_rows)
    assert len(classifier_rows) == sum(row.extra["origin"] in ("recording", "composed") for row in rows["train"])


def test_heldout_captions_use_heldout_frames(corpus):
    rows = _rows(corpus)
    assert all(".h" in row.extra["template"] for row in rows["heldout"])
    assert all(".t" in row.extra["template"] for row in rows["train"])


def test_dropped_report_and_attribution(corpus):
    dropped = {line.split("\t")[0]: line.split("\t")[2] for line in (corpus / "dropped.tsv").read_text().splitlines()[1:]}
    assert dropped["gpl/cow/moo_gpl.wav"].startswith("licence not allowed (GPL-2+)")
    assert dropped["farm/music/song.wav"] == "excluded by the label map (music)"
    assert dropped["farm/misc/unlabelled.wav"].startswith("no label")
    assert dropped["farm/cow/silent.wav"] == "silent"
    assert dropped["farm/cow/tiny.wav"].startswith("too short")
    assert dropped["farm/cow/broken.ogg"].startswith("unreadable")
    assert dropped["farm/cow/moo_copy.wav"].startswith("duplicate (of farm/cow/moo_0.ogg, fingerprint match")
    attribution = (corpus / "ATTRIBUTION.tsv").read_text().splitlines()
    assert attribution[0].split("\t") == ["file", "package", "author", "licence", "class", "split", "clips"]
    files = {line.split("\t")[0]: line.split("\t") for line in attribution[1:]}
    assert "farm/rain/rain_0.wav" in files and files["farm/rain/rain_0.wav"][2:4] == ["Farm Recorder", "CC0-1.0"]
    assert "gpl/cow/moo_gpl.wav" not in files
    assert "CC0-1.0" in (corpus / "ATTRIBUTION.md").read_text()
    report = json.loads((corpus / "real.json").read_text())
    assert report["dropped"] == len(dropped)
    assert report["dropped_by_reason"]["licence not allowed"] == 1 and report["dropped_by_reason"]["duplicate"] == 1
    assert report["recordings"]["by_licence"] == {"CC0-1.0": report["recordings"]["kept"]}
    assert set(report["classes_with_real_audio"]) == {"rain", "footsteps", "cow"}
    assert report["per_class"]["dog_bark"]["recordings"] == 0


def test_same_settings_same_corpus(recordings, corpus, tmp_path):
    again = tmp_path / "again"
    result = run_cli("data", "real", "--sources", recordings / "sources.toml", "--labels", recordings / "labels.toml",
                     "--out", again, "--min-clips", "6", "--synthetic-clips", "3", "--heldout", "0.3", "--quiet")
    assert result.returncode == 0, result.stderr
    for name in ("train.tsv", "valid.tsv", "heldout.tsv", "ATTRIBUTION.tsv", "dropped.tsv"):
        assert (again / name).read_text() == (corpus / name).read_text()
    first = sf.read(read_manifest(corpus / "train.tsv")[0].audio_path)[0]
    assert np.array_equal(first, sf.read(read_manifest(again / "train.tsv")[0].audio_path)[0])


def test_folder_mode_and_bad_input(recordings, tmp_path):
    out = tmp_path / "folder"
    result = run_cli("data", "real", "--folder", recordings / "farm", "--licence", "Expat", "--author", "Me",
                     "--labels", recordings / "labels.toml", "--out", out, "--synthetic-clips", "0", "--min-clips", "0",
                     "--no-mels", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = read_manifest(out / "train.tsv")
    assert rows and all(row.extra["licence"] == "MIT" and not row.mel_path for row in rows)
    assert "Permission is hereby granted" in (out / "ATTRIBUTION.md").read_text()  # MIT's notice travels along
    assert all(row.extra["source"].startswith("farm/") for row in rows)

    assert_clean_error(run_cli("data", "real", "--folder", recordings / "farm", "--out", tmp_path / "x"), "--licence")
    assert_clean_error(run_cli("data", "real", "--out", tmp_path / "x"), "--from-debian")
    assert_clean_error(run_cli("data", "real", "--folder", recordings / "farm", "--licence", "CC0", "--labels",
                               recordings / "labels.toml", "--out", out), "not empty", "--overwrite")
    assert_clean_error(run_cli("data", "real", "--folder", recordings / "gpl", "--licence", "GPL-2+", "--labels",
                               recordings / "labels.toml", "--out", tmp_path / "y"), "licence not allowed")
    assert not (tmp_path / "y").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    assert_clean_error(run_cli("data", "real", "--sources", recordings / "sources.toml", "--heldout", "0.9",
                               "--valid", "0.2", "--out", tmp_path / "z"), "--heldout")
    bad_map = tmp_path / "bad.toml"
    bad_map.write_text("[class.a]\nnp = ['a']\n")
    assert_clean_error(run_cli("data", "real", "--folder", recordings / "farm", "--licence", "CC0", "--labels", bad_map,
                               "--out", tmp_path / "w"), "clause")


def test_classifier_trains_on_real_rows_only(corpus, tmp_path):
    """`mka eval train-classifier --real-only` on the corpus's train split (which holds synthetic and
    augmented rows) learns only the classes real recordings cover, and is scored on held-out clips."""
    out = tmp_path / "clf"
    result = run_cli("eval", "train-classifier", "--manifest", corpus / "train.tsv", "--valid", corpus / "heldout.tsv",
                     "--real-only", "--preset", "tiny", "--epochs", "1", "--crop-seconds", "2", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    saved = json.loads((out / "classifier.json").read_text())
    text = json.dumps(saved)
    assert "dog_bark" not in text  # the synthetic-only class never reaches the classifier
    for name in ("rain", "footsteps", "cow"):
        assert f'"{name}"' in text
    assert saved.get("training", {}).get("real_only") is True or '"real_only": true' in text
    # Without an origin column, --real-only refuses instead of guessing.
    plain = tmp_path / "plain.tsv"
    plain.write_text("name\tdataset\tcaption\taudio_path\tmel_path\tduration\tlabels\n"
                     f"a\t\train\t{read_manifest(corpus / 'train.tsv')[0].audio_path}\t\t\train\n")
    assert_clean_error(run_cli("eval", "train-classifier", "--manifest", plain, "--real-only", "--out", tmp_path / "c2"),
                       "origin")
