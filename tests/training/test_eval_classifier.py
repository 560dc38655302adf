"""The built-in mel-CNN classifier: training on tones vs noise, save/load, the plugin path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mka_core.errors import InputError
from tests.training.eval_sounds import make_clip, write_labelled_set
from training.data.manifest import read_manifest
from training.evaluation.classifier import (AudioClassifier, ClassifierOutput, MelCnn, MelCnnClassifier, MelCnnConfig,
                                            load_classifier)
from training.evaluation.train_classifier import (TrainSettings, check_labels, class_names, load_labelled_mels,
                                                  train_classifier)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clf-data")
    train_rows = read_manifest(write_labelled_set(folder, per_class=8, seed=1, name="train.tsv"))
    valid_rows = read_manifest(write_labelled_set(folder, per_class=5, seed=2, name="valid.tsv"))
    classes = class_names(train_rows, "train.tsv")
    config = MelCnnConfig.preset("tiny").model_copy(update={"classes": classes})
    train = load_labelled_mels(train_rows, classes, config)
    valid = load_labelled_mels(valid_rows, classes, config)
    settings = TrainSettings(epochs=4, batch_size=8, lr=3e-3, crop_seconds=0.5, gain_db=6.0, seed=0, device="cpu")
    model, summary = train_classifier(train, valid, config, settings)
    return model, summary, classes


def test_training_on_tones_versus_noise_reaches_high_held_out_accuracy(trained):
    model, summary, classes = trained
    assert classes == ["noise", "tone"]
    assert summary["valid_accuracy"] >= 0.9, summary["history"]
    assert summary["valid_clips"] == 10 and summary["train_clips"] == 16
    assert summary["history"][-1]["train_loss"] < summary["history"][0]["train_loss"]


def test_the_classifier_labels_fresh_clips_and_embeds_them(trained):
    model, _, classes = trained
    clf = MelCnnClassifier(model, device="cpu")
    waves = [torch.from_numpy(make_clip(kind, 1.3, seed=900 + i)) for i, kind in enumerate(["tone", "noise"] * 3)]
    out = clf.embed(waves)
    assert out.embeddings.shape == (6, model.config.embed_dim)
    assert out.probabilities.shape == (6, 2)
    top = [classes[i] for i in out.probabilities.argmax(dim=1).tolist()]
    assert top == ["tone", "noise"] * 3


def test_a_clip_scores_the_same_alone_and_in_a_mixed_length_batch(trained):
    clf = MelCnnClassifier(trained[0], device="cpu")
    a, b = torch.from_numpy(make_clip("tone", 1.0, 5)), torch.from_numpy(make_clip("noise", 0.7, 6))
    together = clf.embed([a, b, a])
    alone = clf.embed([b])
    torch.testing.assert_close(together.probabilities[1], alone.probabilities[0])
    torch.testing.assert_close(together.embeddings[0], together.embeddings[2])


def test_save_and_load_give_identical_outputs(trained, tmp_path):
    model, summary, _ = trained
    clf = MelCnnClassifier(model, device="cpu")
    clf.save(tmp_path / "clf", training=summary)
    assert sorted(p.name for p in (tmp_path / "clf").iterdir()) == ["classifier.json", "classifier.safetensors"]
    loaded = load_classifier(tmp_path / "clf", device="cpu")
    assert loaded.classes == clf.classes and loaded.name == "clf"
    wave = [torch.from_numpy(make_clip("tone", 1.0, 7))]
    torch.testing.assert_close(loaded.embed(wave).embeddings, clf.embed(wave).embeddings)


def test_broken_classifier_folders_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not a classifier folder"):
        load_classifier(tmp_path, device="cpu")
    (tmp_path / "classifier.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_classifier(tmp_path, device="cpu")
    with pytest.raises(InputError, match="neither a classifier folder nor a registered"):
        load_classifier("no-such-classifier", device="cpu")


def test_labels_are_checked(tmp_path):
    rows = read_manifest(write_labelled_set(tmp_path, per_class=1, labels=False))
    with pytest.raises(InputError, match="no 'labels' column"):
        class_names(rows, "set.tsv")
    rows = read_manifest(write_labelled_set(tmp_path, per_class=1, name="l.tsv"))
    with pytest.raises(InputError, match="label 'tone', which the classifier does not know"):
        check_labels(rows, "l.tsv", known=["noise", "dog"])


def test_mel_cnn_takes_any_length_and_a_preset_name_is_checked():
    model = MelCnn(MelCnnConfig.preset("tiny").model_copy(update={"classes": ["a", "b", "c"]})).eval()
    for frames in (20, 333):
        embedding, logits = model(torch.randn(2, 1, 80, frames))
        assert embedding.shape == (2, 32) and logits.shape == (2, 3)
    with pytest.raises(InputError, match="valid presets"):
        MelCnnConfig.preset("huge")


class LoudnessClassifier(AudioClassifier):
    """A third-party classifier: 'loud' or 'quiet' by RMS, embedding = (rms, peak)."""

    name = "loudness"
    classes = ["quiet", "loud"]
    multi_label = False

    @classmethod
    def load(cls, source, device):
        return cls()

    def embed(self, waves):
        rms = torch.stack([w.float().pow(2).mean().sqrt() for w in waves])
        peak = torch.stack([w.float().abs().max() for w in waves])
        loud = torch.sigmoid((rms - 0.1) * 50)
        return ClassifierOutput(torch.stack([rms, peak], 1), torch.stack([1 - loud, loud], 1))


def register_audio_classifiers(register):  # the hook's signature, as a plugin module defines it
    register(LoudnessClassifier)


def test_a_plugin_classifier_is_found_by_name_and_by_folder(tmp_path):
    from mka_core.plugins import manager
    from mka_core.plugins.hookspecs import hookimpl

    class Plugin:
        @hookimpl
        def register_audio_classifiers(self, register):
            register_audio_classifiers(register)

    manager.register_in_process(Plugin(), name="loudness-plugin")
    assert "loudness" in manager.names("audio-classifier")
    clf = load_classifier("loudness", device="cpu")
    out = clf.embed([torch.full((16000,), 0.5), torch.full((16000,), 0.01)])
    assert out.probabilities.argmax(1).tolist() == [1, 0]
    (tmp_path / "classifier.json").write_text('{"classifier": "loudness"}')
    assert isinstance(load_classifier(tmp_path, device="cpu"), LoudnessClassifier)
    (tmp_path / "classifier.json").write_text('{"classifier": "not-installed-classifier"}')
    with pytest.raises(InputError, match="not-installed-classifier"):
        load_classifier(tmp_path, device="cpu")
    assert np.isfinite(out.embeddings.numpy()).all()


def test_the_shipped_real_classifier_loads_by_name_and_knows_the_real_corpus_classes():
    from training.evaluation.classifier import DEFAULT_CLASSIFIER, SHIPPED_CLASSIFIERS, load_classifier

    assert DEFAULT_CLASSIFIER == "real"
    classifier = load_classifier("real")
    assert {"dog_bark", "siren", "engine", "birds", "piano"} <= set(classifier.classes)
    assert len(classifier.classes) >= 30
    # Trained on real rows only: the classes with no real recording in the corpus are not among them.
    assert "whistle" not in classifier.classes and "knocking" not in classifier.classes
    licence = (SHIPPED_CLASSIFIERS["real"] / "LICENSE.txt").read_text()
    assert "CC-BY-SA-4.0" in licence
    # A second of a 440 Hz tone goes through it: one finite distribution over its classes.
    tone = 0.3 * torch.sin(2 * torch.pi * 440 * torch.arange(16000) / 16000)
    out = classifier.embed([tone])
    assert out.probabilities.shape == (1, len(classifier.classes)) and torch.isfinite(out.probabilities).all()
