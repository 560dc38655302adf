"""clap-text backend=laion: LAION-CLAP's text tower through the laion-clap package, offline.

The checkpoint is built here the way OFFLINE-NOTES describes (the package's own ``create_model``
with its hub-bound ``RobertaModel`` swapped for a local random one, a byte-level BPE tokenizer
trained on the spot) and saved in the published layout, so the loading path under test is the
one real LAION-CLAP files take.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import soundfile as sf
import torch

from mka_core.errors import InputError, WeightsError
from mka_core.plugins import manager
from tests.conftest import run_cli

pytest.importorskip("laion_clap")

PROMPTS = ["a dog barks twice", "rain falls on a tin roof", ""]


@functools.cache
def notes_checkpoint() -> Path:
    """A random LAION-CLAP checkpoint in the package's layout (shared by this session's tests)."""
    import tokenizers
    import transformers

    from mka_plugins.conditioners.clap_text.laion import import_laion

    laion = import_laion()
    folder = Path(tempfile.mkdtemp(prefix="mka-tiny-clap-"))
    atexit.register(shutil.rmtree, folder, True)  # about 150 MB: never leave it behind
    bpe = tokenizers.ByteLevelBPETokenizer()
    corpus = ["a dog barks twice", "rain falls on a tin roof", "a bell rings", "birds chirp in the morning"] * 5
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    bpe.save_model(str(folder))  # vocab.json + merges.txt, next to the checkpoint
    vocab = len(json.loads((folder / "vocab.json").read_text()))
    # roberta-base's sizes except depth and widths; its layer-norm epsilon (1e-5, not the config default).
    config = transformers.RobertaConfig(vocab_size=vocab, hidden_size=768, num_hidden_layers=1, num_attention_heads=12,
                                        intermediate_size=64, max_position_embeddings=80, layer_norm_eps=1e-5)

    class Stub:
        @staticmethod
        def from_pretrained(*_args, **_kwargs):
            return transformers.RobertaModel(config)

    torch.manual_seed(0)
    with mock.patch.object(laion.model, "RobertaModel", Stub):
        model, _ = laion.factory.create_model("HTSAT-tiny", "roberta", device=torch.device("cpu"))
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    # Checkpoints written under transformers < 4.31 carry this buffer; loading must not trip on it.
    state["module.text_branch.embeddings.position_ids"] = torch.arange(80)[None]
    torch.save({"epoch": 3, "state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}},
               folder / "tiny-630k.pt")
    return folder / "tiny-630k.pt"


@pytest.fixture(scope="module")
def checkpoint():
    path = notes_checkpoint()
    yield path


def laion(**options):
    return manager.get("conditioner", "clap-text")(backend="laion", **options)


def expected_text_embedding(path: Path, texts):
    """RoBERTa pooler output -> Linear, ReLU, Linear -> L2 normalise, from the raw tensors."""
    import transformers

    raw = torch.load(path, weights_only=True)["state_dict"]
    state = {k[len("module."):]: v for k, v in raw.items()}
    tokenizer = transformers.RobertaTokenizer(vocab=str(path.parent / "vocab.json"), merges=str(path.parent / "merges.txt"))
    config = transformers.RobertaConfig(vocab_size=len(tokenizer), hidden_size=768, num_hidden_layers=1,
                                        num_attention_heads=12, intermediate_size=64, max_position_embeddings=80,
                                        layer_norm_eps=1e-5)
    roberta = transformers.RobertaModel(config).eval()
    roberta.load_state_dict({k[len("text_branch."):]: v for k, v in state.items()
                             if k.startswith("text_branch.") and not k.endswith("position_ids")})
    batch = tokenizer(list(texts), padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        pooled = roberta(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output
        hidden = torch.relu(pooled @ state["text_projection.0.weight"].T + state["text_projection.0.bias"])
        out = hidden @ state["text_projection.2.weight"].T + state["text_projection.2.bias"]
    return torch.nn.functional.normalize(out, dim=-1)


# -- options and space (no package import needed) -------------------------------------------------------


def test_laion_options_have_their_own_defaults_and_space():
    cls = manager.get("conditioner", "clap-text")
    options = cls.Options(backend="laion")
    assert options.weights == "laion-clap-630k-audioset" and options.dim == 512
    space = cls.space_from_options(options)
    assert (space.name, space.dim, space.tokens) == ("laion-clap", 512, "global")
    assert cls.Options().backend == "reference" and cls.Options().dim == 1024
    with pytest.raises(InputError, match="512"):
        cls(backend="laion", weights=None, dim=1024)
    with pytest.raises(Exception, match="backend"):
        cls.Options(backend="laoin")


def test_missing_default_weights_name_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MKA_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="630k-audioset-best.pt") as info:
        laion()
    assert str(tmp_path / "weights" / "laion-clap-630k-audioset") in str(info.value)
    with pytest.raises(WeightsError, match="does not exist"):
        laion(weights=str(tmp_path / "nowhere.pt"))


# -- encoding ----------------------------------------------------------------------------------------------


def test_encode_is_the_global_normalised_clap_text_embedding(checkpoint):
    cond = laion(weights=str(checkpoint))
    assert cond.space.name == "laion-clap" and cond.space.dim == 512 and cond.space.tokens == "global"
    out = cond(PROMPTS)
    assert out.embeds.shape == (3, 1, 512) and out.mask.shape == (3, 1) and bool(out.mask.all())
    assert torch.allclose(out.embeds.norm(dim=-1), torch.ones(3, 1), atol=1e-5)
    assert torch.allclose(out.embeds[:, 0], expected_text_embedding(checkpoint, PROMPTS), atol=1e-5)
    assert not torch.allclose(out.embeds[0], out.embeds[1], atol=1e-3)  # the tokenizer is not an empty one
    for i, prompt in enumerate(PROMPTS):
        assert torch.allclose(cond([prompt]).embeds[0], out.embeds[i], atol=1e-5)
    assert torch.allclose(cond.null_condition(2).embeds, out.embeds[2:3].expand(2, 1, 512), atol=1e-6)
    assert cond.trainable_parameters() == []
    with pytest.warns(UserWarning, match="truncated"):
        cond(["word " * 200])


def test_the_package_gives_the_same_embedding(checkpoint):
    """The package's own get_text_embedding on a model holding the same tensors agrees."""
    from mka_plugins.conditioners.clap_text.laion import import_laion

    cond = laion(weights=str(checkpoint))
    model = cond.tower.clap
    batch = cond.tower.tokenize(PROMPTS, 77)
    theirs = import_laion().model.CLAP.get_text_embedding(model, dict(batch))
    assert torch.allclose(cond(PROMPTS).embeds[:, 0], theirs, atol=1e-6)


def test_unsafe_and_misfit_checkpoints_are_refused(checkpoint, tmp_path):
    shutil.copy(checkpoint.parent / "vocab.json", tmp_path)
    shutil.copy(checkpoint.parent / "merges.txt", tmp_path)
    raw = torch.load(checkpoint, weights_only=True)
    marker = tmp_path / "executed"
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": raw["state_dict"], "hook": _Exploit(str(marker))}, unsafe)
    with pytest.raises(WeightsError, match="Refusing"):
        laion(weights=str(unsafe))
    assert not marker.exists()

    broken = dict(raw["state_dict"])
    del broken["module.text_projection.2.bias"]
    torch.save({"state_dict": broken}, tmp_path / "broken.pt")
    with pytest.raises(WeightsError, match="text_projection.2.bias"):
        laion(weights=str(tmp_path / "broken.pt"))


class _Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_missing_tokenizer_is_named(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MKA_HOME", str(tmp_path / "home"))
    lonely = tmp_path / "ckpt" / "model.pt"
    lonely.parent.mkdir()
    os.symlink(checkpoint, lonely)
    with pytest.raises(WeightsError, match="vocab.json and merges.txt"):
        laion(weights=str(lonely))
    cond = laion(weights=str(lonely), tokenizer=str(checkpoint.parent))
    assert torch.allclose(cond(PROMPTS).embeds[:, 0], expected_text_embedding(checkpoint, PROMPTS), atol=1e-5)


def test_save_and_reload_offline_without_the_checkpoint(checkpoint, tmp_path):
    cond = laion(weights=str(checkpoint))
    cond.save_pretrained(tmp_path / "c")
    saved = json.loads((tmp_path / "c" / "conditioner.json").read_text())
    assert saved["options"]["backend"] == "laion" and saved["options"]["weights"] == "."
    assert not any(p.suffix == ".pt" for p in (tmp_path / "c").rglob("*"))  # only safetensors written
    again = manager.get("conditioner", "clap-text").from_pretrained(tmp_path / "c")
    assert again.space == cond.space
    assert torch.equal(again(PROMPTS).embeds, cond(PROMPTS).embeds)


# -- a pipeline in the laion-clap space ----------------------------------------------------------------------


def test_generate_with_clap_text_on_a_pipeline_in_the_laion_space(checkpoint, tmp_path):
    model = tmp_path / "model"
    made = run_cli("new-model", "--preset", "tiny", "--cond", "clap-text", "--cond-option", "backend=laion",
                   "--cond-option", f"weights={checkpoint}", "--out", model)
    assert made.returncode == 0, made.stderr
    from mka_core.pipeline import Pipeline

    space = Pipeline.from_pretrained(model, device="cpu").config.space
    assert (space.name, space.dim, space.tokens) == ("laion-clap", 512, "global")
    out = tmp_path / "bell.wav"
    gen = run_cli("generate", "--model", model, "--cond", "clap-text", "a bell rings", "--duration", "1",
                  "--steps", "2", "--seed", "3", "-o", out)
    assert gen.returncode == 0, gen.stderr
    audio, rate = sf.read(out)
    assert rate == 16000 and audio.shape == (16000,)


def test_tiny_random_laion_tower_saves_and_reloads(tmp_path):
    cls = manager.get("conditioner", "clap-text")
    cond = cls.build_random("tiny", 0, backend="laion")
    assert cond.space.name == "laion-clap" and cond.space.tokens == "global"
    out = cond(PROMPTS)
    assert out.embeds.shape == (3, 1, 512) and not torch.allclose(out.embeds[0], out.embeds[1], atol=1e-3)
    cond.save_pretrained(tmp_path / "tiny")
    again = cls.from_pretrained(tmp_path / "tiny")
    assert torch.equal(again(PROMPTS).embeds, out.embeds)
    assert torch.equal(cls.build_random("tiny", 0, backend="laion")(PROMPTS).embeds, out.embeds)  # seeded
