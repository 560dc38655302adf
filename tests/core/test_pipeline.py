"""The pipeline end to end on a tiny random model: lengths, seeds, batches, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from mka_core import Pipeline
from mka_core.errors import InputError
from tests.conftest import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return Pipeline.from_pretrained(tiny_model_dir, device="cpu")


def test_exact_duration_and_rate(pipe):
    for duration in (0.5, 1.0, 1.37):
        result = pipe(["a bell ringing"], duration=duration, steps=3, seed=0)
        assert result.sample_rate == 16000
        assert result.waveforms.shape == (1, round(duration * 16000))
        assert torch.isfinite(result.waveforms).all()


def test_seeds_are_reproducible_and_batches_equal_singles(pipe):
    a = pipe(["a dog", "rain"], duration=1.0, steps=3, seed=11)
    b = pipe(["a dog", "rain"], duration=1.0, steps=3, seed=11)
    assert torch.equal(a.waveforms, b.waveforms)
    assert not torch.allclose(a.waveforms[0], a.waveforms[1])
    for i, prompt in enumerate(["a dog", "rain"]):
        single = pipe([prompt], duration=1.0, steps=3, seed=11 + i)
        assert (single.waveforms[0] - a.waveforms[i]).abs().max() < 1e-5
    assert [m["seed"] for m in a.metadata] == [11, 12]


def test_candidates_get_consecutive_seeds(pipe):
    result = pipe(["a dog"], duration=0.5, steps=2, seed=5, n=3)
    assert result.waveforms.shape[0] == 3 and [m["seed"] for m in result.metadata] == [5, 6, 7]


def test_reload_is_bit_identical(pipe, tmp_path):
    out = pipe.save_pretrained(tmp_path / "copy")
    again = Pipeline.from_pretrained(out, device="cpu")
    for name in ("unet", "vae"):
        a, b = getattr(pipe, name).state_dict(), getattr(again, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = pipe(["wind"], duration=0.8, steps=3, seed=2).waveforms
    y = again(["wind"], duration=0.8, steps=3, seed=2).waveforms
    assert torch.equal(x, y)
    index = json.loads((out / "model_index.json").read_text())
    assert set(index["components"]) == {"conditioner", "vae", "unet", "vocoder"}
    assert index["components"]["conditioner"]["plugin"] == "bert"
    assert index["components"]["vocoder"]["distribution"] == "mka"


def test_bad_python_inputs(pipe):
    for duration in (0, -1, float("nan"), 1e6):
        with pytest.raises(InputError):
            pipe(["x"], duration=duration, steps=2)
    with pytest.raises(InputError, match="Unknown sampler"):
        pipe(["x"], duration=0.5, steps=2, sampler="nope")


def test_cli_new_model_and_generate(tmp_path):
    model = tmp_path / "m"
    made = run_cli("new-model", "--preset", "tiny", "--cond", "bert", "--out", model)
    assert made.returncode == 0, made.stderr
    out = tmp_path / "x.wav"
    gen = run_cli("generate", "--model", model, "a bell ringing", "--duration", "1.25", "--steps", "3", "--seed", "4", "-o", out)
    assert gen.returncode == 0, gen.stderr
    audio, rate = sf.read(out)
    assert rate == 16000 and audio.ndim == 1 and audio.shape[0] == 20000
    python = Pipeline.from_pretrained(model, device="cpu")(["a bell ringing"], duration=1.25, steps=3, seed=4)
    expected = np.clip(python.waveforms[0].numpy(), -1, 1)
    assert np.abs(audio - expected).max() < 2 / 32768


def test_info_base_numbers():
    result = run_cli("info", "--preset", "base", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert abs(info["parameters"]["unet"] / 160.2e6 - 1) < 0.01
    assert abs(info["parameters"]["vae"] / 69e6 - 1) < 0.03
    assert info["latent_shape"] == [4, 10, 78] and info["duration"] == 9.984


def test_info_tiny_preset():
    result = run_cli("info", "--preset", "tiny", "--duration", "1", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["parameters"]["vocoder"] == 0 and 0 < info["parameters"]["unet"] < 5e6
    assert info["mel_shape"] == [1, 80, 64] and info["output_samples"] == 16000


def test_version_and_env():
    assert run_cli("--version").stdout.startswith("mka ")
    env = run_cli("env", "--json")
    assert env.returncode == 0 and "torch" in json.loads(env.stdout)


@pytest.mark.parametrize("args,fragment", [
    (["info", "--preset", "huge"], "Unknown preset"),
    (["new-model", "--preset", "gigantic", "--cond", "bert", "--out", "{tmp}/m"], "Unknown preset"),
    (["generate", "--model", "{model}", "x", "--duration", "0", "-o", "{tmp}/a.wav"], "duration"),
    (["generate", "--model", "{model}", "x", "--duration", "-3", "-o", "{tmp}/a.wav"], "duration"),
    (["generate", "--model", "{model}", "x", "--duration", "100000", "-o", "{tmp}/a.wav"], "duration"),
    (["generate", "--model", "{model}", "x", "--dtype", "float8", "-o", "{tmp}/a.wav"], "dtype"),
    (["generate", "--model", "{model}", "x", "--device", "tpu", "-o", "{tmp}/a.wav"], "device"),
    (["generate", "--model", "{model}", "x", "--task", "sdedit", "--init", "{tmp}/missing.wav", "-o", "{tmp}/a.wav"], "does not exist"),
    (["generate", "--model", "{model}", "x", "--task", "sdedit", "--init", "{tmp}/empty.wav", "-o", "{tmp}/a.wav"], "empty"),
    (["generate", "--model", "{model}", "x", "--task", "sdedit", "--init", "{tmp}/junk.wav", "-o", "{tmp}/a.wav"], "Cannot read"),
])
def test_cli_bad_input_is_one_sentence(args, fragment, tmp_path, tiny_model_dir):
    sf.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 20)
    filled = [a.format(tmp=tmp_path, model=tiny_model_dir) for a in args]
    result = run_cli(*filled)
    assert_clean_error(result, fragment)
    assert not (tmp_path / "a.wav").exists()


def test_recorded_sampler_options_reach_the_sampler(pipe, tmp_path):
    from mka_core.pipeline import GenerationDefaults

    plain = pipe(["hum"], duration=0.5, steps=4, sampler="ddim", seed=1)
    config = pipe.config.model_copy(update={"defaults": GenerationDefaults(sampler="ddim", steps=4,
                                                                         sampler_options={"final_alpha": "reference"})})
    reference = Pipeline(config, pipe.conditioner, pipe.vae, pipe.unet, pipe.vocoder, device="cpu")
    saved = Pipeline.from_pretrained(reference.save_pretrained(tmp_path / "ref"), device="cpu")
    assert saved.config.defaults.sampler_options == {"final_alpha": "reference"}
    ref_out = saved(["hum"], duration=0.5, seed=1)
    assert not torch.equal(ref_out.latents, plain.latents)
    assert torch.equal(ref_out.latents, reference(["hum"], duration=0.5, seed=1).latents)
