"""LAION-CLAP audio-text scoring (the clap-text plugin's load_scorer) and `mka generate --rank-with`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from mka_core.errors import WeightsError
from mka_core.plugins import manager
from tests.conftest import assert_clean_error, run_cli

pytest.importorskip("laion_clap")

from tests.plugins.test_clap_laion import notes_checkpoint


@pytest.fixture(scope="module")
def checkpoint():
    return notes_checkpoint()


@pytest.fixture(scope="module")
def scorer(checkpoint):
    return manager.get("conditioner", "clap-text").load_scorer(checkpoint)


def test_scorer_embeds_as_the_package_api_does(checkpoint, scorer):
    """The package's CLAP_Module (built offline, holding the same tensors) gives the same embeddings."""
    import laion_clap
    import transformers

    from mka_plugins.conditioners.clap_text.laion import import_laion

    clap_model_module = import_laion().model  # the package's top-level clap_module.model, the one it builds from

    config = transformers.RobertaConfig(**{k: v for k, v in scorer.clap.text_branch.config.to_dict().items()
                                           if k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                                    "intermediate_size", "max_position_embeddings", "layer_norm_eps")})

    class Stub:
        @staticmethod
        def from_pretrained(*_args, **_kwargs):
            return transformers.RobertaModel(config)

    with mock.patch.object(clap_model_module, "RobertaModel", Stub):
        module = laion_clap.CLAP_Module(enable_fusion=False, device="cpu")
    raw = torch.load(checkpoint, weights_only=True)["state_dict"]
    module.model.load_state_dict({k[len("module."):]: v for k, v in raw.items() if not k.endswith("position_ids")})

    clips = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 48000)).astype(np.float32)
    theirs = torch.from_numpy(module.get_audio_embedding_from_data(clips))
    ours = scorer.embed_audio(torch.from_numpy(clips), sample_rate=48000)
    assert ours.shape == (2, 512) and torch.allclose(ours, theirs, atol=1e-5)

    texts = ["a dog barks", "rain on a roof"]
    tokenize = lambda batch: dict(scorer.tokenizer(batch, padding="max_length", truncation=True, max_length=77,
                                                   return_tensors="pt"))
    theirs_text = torch.from_numpy(module.get_text_embedding(texts, tokenizer=tokenize))
    assert torch.allclose(scorer.embed_text(texts), theirs_text, atol=1e-5)


def test_scores_are_cosines_deterministic_and_batch_independent(scorer):
    rng = np.random.default_rng(1)
    waves = torch.from_numpy(rng.uniform(-0.3, 0.3, (2, 16000)).astype(np.float32))
    prompts = ["a dog barks", "rain"]
    scores = scorer(waves, prompts)
    audio = scorer.embed_audio(waves)
    assert scores.shape == (2,) and torch.allclose(scores, (audio * scorer.embed_text(prompts)).sum(-1), atol=1e-6)
    assert bool(((scores >= -1) & (scores <= 1)).all())
    assert torch.allclose(scorer(waves[1:2], prompts[1:2]), scores[1:2], atol=1e-6)
    per_clip = scorer.score_candidates([waves[0], waves[1]], [["a dog barks", "rain"], ["rain"]])
    expected_other = float(audio[0] @ scorer.embed_text(["rain"])[0])
    assert np.allclose(per_clip[0], [scores[0].item(), expected_other], atol=1e-6)
    assert np.allclose(per_clip[1], [scores[1].item()], atol=1e-6)

    # Longer than the model's 10 s window: the package crops at random; the scorer pins it and
    # leaves numpy's global generator alone.
    long = torch.from_numpy(rng.uniform(-0.3, 0.3, (1, 16000 * 11)).astype(np.float32))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = scorer(long, ["x"])
    assert np.array_equal(np.random.get_state()[1], before)
    assert torch.equal(scorer(long, ["x"]), first)


def test_a_text_only_folder_cannot_score(checkpoint, tmp_path):
    cls = manager.get("conditioner", "clap-text")
    cls(backend="laion", weights=str(checkpoint)).save_pretrained(tmp_path / "text")
    file = tmp_path / "text" / "laion_clap_text.safetensors"
    with pytest.raises(WeightsError, match="HTSAT"):
        cls.load_scorer(file)


def generated(model_dir, n=4, seed=5):
    from mka_core.generate import generate
    from mka_core.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(model_dir, device="cpu")
    return generate(pipe, ["a dog barks"], n=n, seed=seed, steps=2, duration=0.5)


def test_rank_with_clap_orders_candidates_by_clap_score(tiny_model_dir, checkpoint, scorer, tmp_path):
    from mka_core.ranking import best_candidates, rank_candidates

    result = generated(tiny_model_dir)
    expected = scorer(result.waveforms, ["a dog barks"] * 4)
    ranking = rank_candidates(result.waveforms, ["a dog barks"] * 4, scorer)
    assert best_candidates(ranking) == [int(torch.argmax(expected))]

    out = tmp_path / "out"
    run = run_cli("generate", "--model", tiny_model_dir, "a dog barks", "--n", "4", "--seed", "5", "--steps", "2",
                  "--duration", "0.5", "--rank-with", checkpoint, "-o", f"{out}/")
    assert run.returncode == 0, run.stderr
    sidecars = [json.loads(p.read_text()) for p in sorted(out.glob("*.wav.json"))]
    assert len(sidecars) == 4
    by_seed = {s["seed"]: s for s in sidecars}
    for i in range(4):
        assert by_seed[5 + i]["score"] == pytest.approx(float(expected[i]), abs=1e-5)
    best = min(sidecars, key=lambda s: s["rank"])
    assert best["rank"] == 1 and best["seed"] == 5 + int(torch.argmax(expected))
    assert sorted(s["rank"] for s in sidecars) == [1, 2, 3, 4]
    assert best["score"] == max(s["score"] for s in sidecars)


def test_rank_with_clap_names_the_default_weights_folder(tiny_model_dir, checkpoint, tmp_path, monkeypatch):
    from mka_core.ranking import load_clap_scorer

    home = tmp_path / "home"
    folder = home / "weights" / "laion-clap-630k-audioset"
    missing = run_cli("generate", "--model", tiny_model_dir, "a dog barks", "--n", "2", "--rank-with", "clap",
                      "-o", f"{tmp_path}/out/", env={"MKA_HOME": str(home)})
    assert_clean_error(missing, "630k-audioset-best.pt", str(folder))
    folder.mkdir(parents=True)
    os.symlink(checkpoint, folder / "630k-audioset-best.pt")
    for name in ("vocab.json", "merges.txt"):
        os.symlink(Path(checkpoint).parent / name, folder / name)
    monkeypatch.setenv("MKA_HOME", str(home))
    scorer = load_clap_scorer("clap")
    assert scorer.source == str(folder / "630k-audioset-best.pt")


def test_rank_with_a_missing_checkpoint_is_a_clean_error(tiny_model_dir, tmp_path):
    result = run_cli("generate", "--model", tiny_model_dir, "a dog", "--n", "2", "--rank-with", tmp_path / "no.pt",
                     "-o", f"{tmp_path}/o/")
    assert_clean_error(result, "no such CLAP checkpoint")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
