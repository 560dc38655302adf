"""Trained weights that do not fit their conditioner are one sentence, never torch's RuntimeError.

A conditioner's ``trained.safetensors``, an adapter's projection and null condition, and the
clap-text projection are saved next to a config that fixes their shapes. A file from another
configuration (or edited by hand) used to surface as ``RuntimeError: Error(s) in loading
state_dict ...``, a multi-line message reported as a bug in mka. Each case goes through
`mka generate` on a tiny model folder: one `mka: error:` line that names the file and the
tensor, a non-zero exit, no output file.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import assert_clean_error
from tests.reliability.conftest import copy_model, edit_weights, generate, leftovers


@pytest.fixture(scope="module")
def adapter_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny bert model driven by an adapter: a second tiny bert plus a linear projection."""
    from mka_core.pipeline import Pipeline
    from mka_core.plugins import manager
    from mka_plugins.conditioners.adapter import AdapterConditioner

    manager.reset_plugins()
    pipe = Pipeline.from_pretrained(tiny_model_dir, device="cpu")
    base = manager.get("conditioner", "bert").build_random("tiny", 1)
    options = AdapterConditioner.Options(base="bert", space=pipe.conditioner.space, base_dim=base.space.dim,
                                         base_tokens=base.space.tokens)
    adapter = AdapterConditioner(options, base=base)
    adapter.set_null_condition(pipe.conditioner.null_condition(1))
    config = pipe.config.model_copy(update={"conditioner": "adapter"})
    folder = tmp_path_factory.mktemp("models") / "tiny-adapter"
    Pipeline(config, adapter, pipe.vae, pipe.unet, pipe.vocoder, device="cpu").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clap_model_dir(tmp_path_factory):
    """A tiny clap-text model whose projection is trainable: it has projection.safetensors and trained.safetensors."""
    from mka_core.pipeline import Pipeline
    from mka_core.plugins import manager
    from mka_core.presets import build_pipeline

    manager.reset_plugins()
    pipe = build_pipeline("tiny", cond="clap-text", seed=0)
    pipe.conditioner._projection_trained = False  # as before an alignment run: the projection is what trains
    folder = tmp_path_factory.mktemp("models") / "tiny-clap"
    pipe.save_pretrained(folder)
    assert (folder / "conditioner" / "trained.safetensors").is_file()
    assert (folder / "conditioner" / "projection.safetensors").is_file()
    return folder


def widen(key: str):
    def edit(tensors):
        tensors[key] = torch.zeros(*tensors[key].shape[:-1], tensors[key].shape[-1] + 3)
    return edit


def drop(key: str):
    return lambda tensors: tensors.pop(key)


def add(key: str):
    return lambda tensors: tensors.__setitem__(key, torch.zeros(3))


ADAPTER_CASES = {
    "projection of another width": (widen("projection.0.weight"), ["'projection.0.weight' has shape", "needs"]),
    "null condition of another width": (widen("null_embeds"), ["'null_embeds' has shape", "[1, T, "]),
    "no null condition": (drop("null_mask"), ["lacks the adapter's null condition"]),
    "projection tensor missing": (drop("projection.0.bias"), ["missing tensor(s)", "projection.0.bias"]),
    "unknown tensor": (add("projection.9.bias"), ["unknown tensor(s)", "projection.9.bias"]),
}


@pytest.mark.parametrize("case", list(ADAPTER_CASES))
def test_an_adapter_file_that_does_not_fit_is_one_sentence(adapter_model_dir, tmp_path, case):
    edit, fragments = ADAPTER_CASES[case]
    model = copy_model(adapter_model_dir, tmp_path / "model")
    edit_weights(model / "conditioner" / "trained.safetensors", edit)
    result = generate(model, "rain", "--duration", "0.3", "-o", tmp_path / "x.wav")
    assert_clean_error(result, "trained.safetensors", *fragments, "retrain it")
    assert leftovers(tmp_path) == []


def test_the_unedited_adapter_model_generates(adapter_model_dir, tmp_path):
    result = generate(adapter_model_dir, "rain", "--duration", "0.3", "-o", tmp_path / "x.wav")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.wav").is_file()


CLAP_CASES = {
    "trained.safetensors": (widen("projection.linear1.weight"),
                            ["does not fit conditioner 'clap-text'", "'projection.linear1.weight' has shape"]),
    "projection.safetensors": (widen("linear2.weight"),
                               ["does not fit the clap-text projection", "'linear2.weight' has shape"]),
}


@pytest.mark.parametrize("file", list(CLAP_CASES))
def test_a_conditioner_file_that_does_not_fit_is_one_sentence(clap_model_dir, tmp_path, file):
    edit, fragments = CLAP_CASES[file]
    model = copy_model(clap_model_dir, tmp_path / "model")
    edit_weights(model / "conditioner" / file, edit)
    result = generate(model, "rain", "--duration", "0.3", "-o", tmp_path / "x.wav")
    assert_clean_error(result, file, *fragments, "re-create the model folder")
    assert leftovers(tmp_path) == []


def test_an_unknown_tensor_in_trained_weights_is_refused_not_ignored(clap_model_dir, tmp_path):
    """Non-strict loading (the file holds only the trainable part) still refuses names the conditioner lacks."""
    model = copy_model(clap_model_dir, tmp_path / "model")
    edit_weights(model / "conditioner" / "trained.safetensors", add("projector"))
    result = generate(model, "rain", "--duration", "0.3", "-o", tmp_path / "x.wav")
    assert_clean_error(result, "trained.safetensors", "unknown tensor(s)", "projector")
