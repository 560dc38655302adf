"""`mka eval` and `mka eval train-classifier` end to end on a tiny pipeline and a tiny classifier."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.conftest import assert_clean_error, run_cli
from tests.training.eval_sounds import write_labelled_set
from training.data.manifest import read_manifest


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval-sounds")
    return {
        "train": write_labelled_set(folder, per_class=8, seed=1, name="train.tsv"),
        "valid": write_labelled_set(folder, per_class=3, seed=2, name="valid.tsv"),
        # Short references keep generation (VAE decode and Griffin-Lim on a CPU) quick.
        "reference": write_labelled_set(folder, per_class=2, seconds=0.5, seed=3, name="reference.tsv"),
        "unlabelled": write_labelled_set(folder, per_class=2, seconds=0.5, seed=3, name="unlabelled.tsv", labels=False),
    }


@pytest.fixture(scope="module")
def classifier_dir(sounds, tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "tones-vs-noise"
    result = run_cli("eval", "train-classifier", "--manifest", sounds["train"], "--valid", sounds["valid"], "--out", out,
                     "--epochs", "3", "--preset", "tiny", "--crop-seconds", "0.5", "--batch-size", "8", "--lr", "3e-3",
                     "--quiet")
    assert result.returncode == 0, result.stderr
    assert "held-out accuracy" in result.stdout
    return out


def test_train_classifier_writes_a_loadable_classifier_with_its_training_record(classifier_dir):
    record = json.loads((classifier_dir / "classifier.json").read_text())
    assert record["classifier"] == "mel-cnn"
    assert record["config"]["classes"] == ["noise", "tone"]
    training = record["training"]
    assert training["valid_clips"] == 6 and training["train_clips"] == 16 and len(training["history"]) == 3
    assert training["valid_accuracy"] >= 0.8
    assert (classifier_dir / "classifier.safetensors").is_file()


def test_train_classifier_refuses_to_overwrite_and_needs_labels(classifier_dir, sounds, tmp_path):
    result = run_cli("eval", "train-classifier", "--manifest", sounds["train"], "--out", classifier_dir, "--epochs", "1")
    assert_clean_error(result, "already holds a classifier", "--overwrite")
    result = run_cli("eval", "train-classifier", "--manifest", sounds["unlabelled"], "--out", tmp_path / "c")
    assert_clean_error(result, "no 'labels' column")
    result = run_cli("eval", "train-classifier", "--manifest", sounds["train"], "--out", tmp_path / "c", "--epochs", "0")
    assert_clean_error(result, "--epochs must be at least 1")
    assert not (tmp_path / "c").exists()


def test_eval_generates_scores_and_rescores_the_saved_audio(tiny_model_dir, classifier_dir, sounds, tmp_path):
    report_path, audio_dir = tmp_path / "report.json", tmp_path / "generated"
    result = run_cli("eval", "--model", tiny_model_dir, "--manifest", sounds["reference"], "--classifier", classifier_dir,
                     "--steps", "1", "--seed", "5", "--batch-size", "4", "--out", report_path,
                     "--save-audio", audio_dir, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "FD (classifier embeddings)" in result.stdout and "n/a" in result.stdout  # no CLAP model in tests
    report = json.loads(report_path.read_text())
    scores = report["metrics"]
    assert report["count"] == 4 and report["mode"] == "generate"
    assert report["settings"]["steps"] == 1 and report["settings"]["seed"] == 5
    assert scores["fd"] >= 0 and scores["fd_real_floor"] >= 0 and scores["fd_halves"] >= 0 and scores["kl"] >= 0
    assert 0 <= scores["accuracy"] <= 1 and scores["accuracy_reference"] >= 0.75  # the classifier knows the references
    assert scores["clap"] is None and report["clap"]["available"] is False and report["clap"]["reason"]
    items = report["items"]
    assert [item["name"] for item in items] == [row.name for row in read_manifest(sounds["reference"])]
    assert all(isinstance(item["correct"], bool) and math.isfinite(item["kl"]) for item in items)

    # The saved clips have the references' lengths, and a manifest that scores them again.
    generated = read_manifest(audio_dir / "generated.tsv")
    assert [row.name for row in generated] == [item["name"] for item in items]
    import soundfile as sf

    assert all(sf.info(row.audio_path).frames == 8000 for row in generated)
    assert generated[0].extra["seed"] == "5" and generated[3].extra["seed"] == "8"  # row i uses seed + i

    again = tmp_path / "again.json"
    result = run_cli("eval", "--manifest", sounds["reference"], "--generated", audio_dir, "--classifier", classifier_dir,
                     "--out", again, "--clap", "none", "--quiet")
    assert result.returncode == 0, result.stderr
    rescored = json.loads(again.read_text())
    assert rescored["mode"] == "generated" and rescored["count"] == 4
    # Same clips (saved as 16-bit PCM): the same verdicts and nearly the same scores.
    assert rescored["metrics"]["accuracy"] == scores["accuracy"]
    assert rescored["metrics"]["kl"] == pytest.approx(scores["kl"], abs=1e-2)
    assert rescored["metrics"]["fd_real_floor"] == pytest.approx(scores["fd_real_floor"], rel=1e-6)


def test_scoreboard_reports_clap_when_a_scorer_is_available(classifier_dir, sounds):
    from training.evaluation.classifier import load_classifier
    from training.evaluation.evaluate import ClapSetting, Scoreboard, stored_pairs

    rows = read_manifest(sounds["reference"])

    def scorer(waves, prompts):  # a stand-in CLAP: louder clips match better
        assert len(prompts) == waves.shape[0]
        return waves.abs().mean(dim=1)

    board = Scoreboard(load_classifier(classifier_dir), ClapSetting(scorer=scorer, source="fake"), accuracy=True)
    for batch in stored_pairs(rows, {row.name: row.audio_path for row in rows}, batch_size=3):
        board.add(batch)
    scores = board.metrics()
    # Generated == reference here: zero KL, equal CLAP and accuracy on both sides.
    assert scores["kl"] == pytest.approx(0.0, abs=1e-9)
    assert scores["clap"] == pytest.approx(scores["clap_reference"]) and scores["clap"] > 0
    assert scores["accuracy"] == scores["accuracy_reference"]
    assert scores["fd"] == pytest.approx(0.0, abs=1e-6)


def test_bad_inputs_give_clean_errors(tiny_model_dir, classifier_dir, sounds, tmp_path):
    base = ["eval", "--model", tiny_model_dir, "--classifier", classifier_dir, "--out", tmp_path / "r.json"]
    no_caption = tmp_path / "no_caption.tsv"
    no_caption.write_text("name\taudio_path\nx\ta.wav\n")
    assert_clean_error(run_cli(*base, "--manifest", no_caption), "lacks the column", "caption")
    assert_clean_error(run_cli(*base, "--manifest", sounds["unlabelled"], "--accuracy"), "no 'labels' column")
    # No --classifier: the shipped real-recording classifier, which does not know these test labels.
    assert_clean_error(run_cli(*base[:3], "--manifest", sounds["reference"]), "does not know", "--classifier")
    assert_clean_error(run_cli(*base[:3], "--manifest", sounds["reference"], "--classifier", "nope"),
                       "neither a classifier folder nor a registered audio classifier")
    assert_clean_error(run_cli(*base, "--manifest", sounds["reference"], "--generated", tmp_path, "--steps", "2"),
                       "--generated", "--steps")
    assert_clean_error(run_cli(*base, "--manifest", sounds["reference"], "--limit", "0"), "--limit")

    other = tmp_path / "other.tsv"
    other.write_text(sounds["reference"].read_text().replace("\ttone", "\tdog"))
    assert_clean_error(run_cli(*base, "--manifest", other), "label 'dog'", "does not know")
    empty = tmp_path / "empty_caption.tsv"
    lines = sounds["reference"].read_text().splitlines()
    header = lines[0].split("\t")
    fields = lines[1].split("\t")
    fields[header.index("caption")] = ""
    empty.write_text("\n".join([lines[0], "\t".join(fields)]) + "\n")
    assert_clean_error(run_cli(*base, "--manifest", empty), "empty caption")
    scoring = ["eval", "--classifier", classifier_dir, "--out", tmp_path / "r.json", "--manifest", sounds["reference"]]
    assert_clean_error(run_cli(*scoring, "--generated", tmp_path / "missing"), "does not exist")
    assert_clean_error(run_cli(*scoring, "--generated", tmp_path), "no audio files")
    assert not (tmp_path / "r.json").exists()


def test_unlabelled_references_are_scored_without_accuracy(tiny_model_dir, classifier_dir, sounds, tmp_path):
    rows = read_manifest(sounds["unlabelled"])
    folder = tmp_path / "gen"
    folder.mkdir()
    import shutil

    for row in rows[:3]:  # one reference has no generated clip
        shutil.copy(row.audio_path, folder / f"{row.name}.wav")
    result = run_cli("eval", "--manifest", sounds["unlabelled"], "--generated", folder, "--classifier", classifier_dir,
                     "--out", tmp_path / "r.json", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["metrics"]["accuracy"] is None and report["count"] == 3 and report["unmatched_references"] == 1
    assert report["metrics"]["fd_real_floor"] is None and report["metrics"]["fd_halves"] is None  # under 4 clips
    assert report["metrics"]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(torch.tensor(report["metrics"]["fd"]))


def test_resynthesize_scores_the_vocoder_and_the_vae_on_the_references_own_mels(tiny_model_dir, classifier_dir,
                                                                               sounds, tmp_path):
    base = ["eval", "--model", tiny_model_dir, "--manifest", sounds["reference"], "--classifier", classifier_dir,
            "--clap", "none", "--quiet"]
    reports = {}
    for path in ("vocoder", "vae"):
        out = tmp_path / f"{path}.json"
        result = run_cli(*base, "--resynthesize", path, "--out", out)
        assert result.returncode == 0, result.stderr
        reports[path] = json.loads(out.read_text())
        assert reports[path]["mode"] == f"resynthesize-{path}" and reports[path]["count"] == 4
        assert reports[path]["settings"]["resynthesize"] == path
    # Griffin-Lim rebuilds the references' own mels closely: the classifier hears what it heard
    # in the originals. The tiny preset's VAE is untrained, so its round trip loses the content.
    copy, vae = reports["vocoder"]["metrics"], reports["vae"]["metrics"]
    assert copy["accuracy"] == copy["accuracy_reference"] and copy["kl"] < 0.05
    assert copy["fd"] < vae["fd"] and copy["kl"] < vae["kl"]

    assert_clean_error(run_cli(*base, "--resynthesize", "vocoder", "--steps", "2"), "--resynthesize", "--steps")
    assert_clean_error(run_cli("eval", *base[3:], "--resynthesize", "vae", "--generated", tmp_path), "--generated",
                       "--resynthesize")
    result = run_cli(*base, "--resynthesize", "unet")
    assert result.returncode != 0 and "invalid choice" in result.stderr and "Traceback" not in result.stderr
