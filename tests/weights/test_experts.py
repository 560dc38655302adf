"""The built-in caption experts on tiny random weights, pulled from the local hub, in `mka data caption`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import run_cli
from training.data.manifest import ManifestRow, read_manifest, write_manifest

pytest.importorskip("laion_clap")

SR = 16000
CLASSES = ["Dog", "Bell", "Rain", "Engine", "Speech"]


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)).astype(np.float32)


@pytest.fixture(scope="module")
def clap_files(tmp_path_factory):
    from mka_plugins.conditioners.clap_text.tiny import write_tiny_checkpoint

    import tokenizers

    from mka_plugins.conditioners.clap_text.tiny import TINY_CORPUS, TINY_SPECIALS

    folder = tmp_path_factory.mktemp("tiny-clap")
    path = write_tiny_checkpoint(folder, seed=2)
    # roberta-base's repo holds vocab.json + merges.txt: the tiny tokenizer's, trained as tiny.py trains it.
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(TINY_CORPUS) * 4, vocab_size=320, min_frequency=1, special_tokens=list(TINY_SPECIALS),
                            show_progress=False)
    bpe_dir = folder / "bpe"
    bpe_dir.mkdir()
    bpe.save_model(str(bpe_dir))
    return {"lukewys/laion_clap": {"630k-audioset-best.pt": path.read_bytes()},
            "FacebookAI/roberta-base": {n: (bpe_dir / n).read_bytes() for n in ("vocab.json", "merges.txt")}}


@pytest.fixture(scope="module")
def panns_dir(tmp_path_factory):
    """Cnn14 in the public checkpoint's layout with a 5-class head, random values, and its label list."""
    from mka_plugins.classifiers.panns import Cnn14

    folder = tmp_path_factory.mktemp("panns")
    torch.manual_seed(0)
    model = Cnn14(num_classes=len(CLASSES))
    torch.save({"model": {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}},
               folder / "Cnn14_mAP=0.431.pth")
    rows = ["index,mid,display_name"] + [f'{i},/m/{i},"{name}"' for i, name in enumerate(CLASSES)]
    (folder / "class_labels_indices.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_compose_captions_uses_the_reprogramming_templates():
    from training.experts.panns_tags import compose_captions
    from training.data.reprogram import TEMPLATES

    one = compose_captions(["Dog"])
    assert one == ["a dog sound", "a dog sound is heard", "there is a dog sound", "you can hear a dog sound"]
    three = compose_captions(["Dog", "Bell", "Rain"])
    assert len(three) == len(TEMPLATES) and "a dog sound followed by a bell sound and a rain sound" in three
    assert "an engine sound before a speech sound" in compose_captions(["Engine", "Speech"])


def test_data_caption_with_the_built_in_experts_and_pulled_weights(hub, clap_files, panns_dir, tmp_path):
    for repo, files in clap_files.items():
        hub.repos[("model", repo)] = files
    pulled = run_cli("weights", "pull", "laion-clap-630k-audioset", "--allow-network")
    assert pulled.returncode == 0, pulled.stderr
    placed = run_cli("weights", "pull", "panns-cnn14", "--from", panns_dir)
    assert placed.returncode == 0, placed.stderr
    home = tmp_path / "home" / "weights"
    assert (home / "laion-clap-630k-audioset" / "630k-audioset-best.pt").is_file()
    assert (home / "roberta-base" / "merges.txt").is_file() and (home / "panns-cnn14" / "class_labels_indices.csv").is_file()

    corpus_rows, rows = [], []
    for name, freq, caption in [("c1", 300.0, "a low engine hums"), ("c2", 1200.0, "a bell rings"),
                                ("c3", 3000.0, "a whistle blows")]:
        sf.write(tmp_path / f"{name}.wav", tone(freq), SR)
        corpus_rows.append(ManifestRow(name=name, caption=caption, audio_path=str(tmp_path / f"{name}.wav")))
    for name, freq in [("q1", 320.0), ("q2", 2900.0)]:
        sf.write(tmp_path / f"{name}.wav", tone(freq, 1.5), SR)
        rows.append(ManifestRow(name=name, caption="sound", audio_path=str(tmp_path / f"{name}.wav")))
    corpus = write_manifest(tmp_path / "corpus.tsv", corpus_rows)
    manifest = write_manifest(tmp_path / "in.tsv", rows)

    done = run_cli("data", "caption", manifest, "--out", tmp_path / "out.tsv", "--corpus", corpus, "--threshold", "-1",
                   "--report", tmp_path / "report.json", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "replaced 2 of 2 captions" in done.stdout

    # Independently: the same pulled weights, the retrieval order, the tags' captions and the CLAP rule.
    from mka_core.plugins import manager
    from training.experts.panns_tags import compose_captions

    scorer = manager.get("conditioner", "clap-text").load_scorer(home / "laion-clap-630k-audioset")
    tagger = manager.get("audio-classifier", "panns-cnn14").load(home / "panns-cnn14")
    corpus_emb = scorer.embed_audio([sf.read(r.audio_path, dtype="float32")[0] for r in corpus_rows])
    report = {r["name"]: r for r in json.loads((tmp_path / "report.json").read_text())}
    written = {r.name: r for r in read_manifest(tmp_path / "out.tsv")}
    for row in rows:
        wave = sf.read(row.audio_path, dtype="float32")[0]
        sims = (scorer.embed_audio([wave]) @ corpus_emb.T)[0]
        retrieved = [corpus_rows[j].caption for j in torch.argsort(sims, descending=True).tolist()]
        probs = tagger.embed([torch.from_numpy(wave)]).probabilities[0]
        tagged = compose_captions([CLASSES[i] for i in probs.topk(3).indices.tolist()])
        candidates = retrieved + [c for c in tagged if c not in retrieved]
        got = report[row.name]["candidates"]
        assert [c["caption"] for c in got] == candidates
        assert {c["expert"] for c in got} == {"clap-retrieval", "panns-tags"}
        scores = scorer.score_candidates([wave], [candidates])[0]
        best = int(np.argmax(scores))
        assert written[row.name].caption == candidates[best]
        assert float(written[row.name].extra["caption_score"]) == pytest.approx(scores[best], abs=1e-4)


def test_experts_without_weights_name_the_pull(hub, tmp_path):
    from mka_core.errors import WeightsError
    from training.experts.panns_tags import PannsTagsExpert

    with pytest.raises(WeightsError, match="mka weights pull panns-cnn14"):
        PannsTagsExpert()
