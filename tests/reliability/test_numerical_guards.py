"""NaN and Inf are caught where they appear and reported with the stage and the likely cause.

Tiny pipelines get NaN (or Inf) injected into one component's weights; `mka generate` must
stop with one sentence naming that stage, exit non-zero and leave no file behind. A float16
overflow (weights that are fine in float32) says so and names the dtypes that have the range.
"""

from __future__ import annotations

import math

import pytest
import torch

from mka_core.errors import InputError, NumericalError
from tests.conftest import assert_clean_error
from tests.reliability import corpus
from tests.reliability.conftest import copy_model, edit_weights, generate, leftovers


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def poisoned(source, tmp_path, file: str, key: str, value: float = math.nan):
    """A copy of ``source`` whose tensor ``key`` in ``file`` is filled with ``value``."""
    model = copy_model(source, tmp_path / "model")
    edit_weights(model / file, lambda tensors: tensors[key].fill_(value))
    return model


CASES = {
    "unet-nan": ("unet/model.safetensors", "input_blocks.0.0.weight", math.nan, "sampler (U-Net)", []),
    "unet-inf": ("unet/model.safetensors", "out.2.bias", math.inf, "sampler (U-Net)", []),
    "vae-decoder": ("vae/model.safetensors", "decoder.conv_in.weight", math.nan, "VAE decoder", []),
    "vae-encoder": ("vae/model.safetensors", "encoder.conv_in.weight", math.nan, "VAE encoder", ["sdedit"]),
    "conditioner": ("conditioner/model.safetensors", "embeddings.LayerNorm.bias", math.nan, "conditioner 'bert'", []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_nan_weights_are_reported_with_their_stage(tiny_model_dir, tmp_path, out, case):
    file, key, value, stage, tasks = CASES[case]
    model = poisoned(tiny_model_dir, tmp_path, file, key, value)
    extra = []
    if "sdedit" in tasks:
        extra = ["--init", corpus.write_wav(tmp_path / "in.wav", corpus.tone(0.3)), "--strength", "0.5"]
    result = generate(model, "rain", *extra, "--duration", "0.3", "-o", out / "x.wav")
    assert_clean_error(result, f"The {stage}", "produced", "NaN/Inf", "weights contain NaN/Inf", "damaged")
    assert leftovers(out) == []


def test_nan_vocoder_weights_are_reported(tiny_hifigan_model_dir, tmp_path, out):
    model = poisoned(tiny_hifigan_model_dir, tmp_path, "vocoder/model.safetensors", "conv_post.bias")
    result = generate(model, "rain", "--duration", "0.3", "-o", out / "x.wav")
    assert_clean_error(result, "The vocoder produced", "weights contain NaN/Inf")
    assert leftovers(out) == []


def test_float16_overflow_says_so_and_the_wider_dtypes_work(tiny_model_dir, tmp_path, out):
    """Time-embedding weights x1000: activations near 4e5, fine in float32/bfloat16, past float16's 65504."""
    model = copy_model(tiny_model_dir, tmp_path / "model")

    def amplify(tensors):
        tensors["time_embed.0.weight"].mul_(1000)
        tensors["time_embed.2.weight"].mul_(1000)

    edit_weights(model / "unet" / "model.safetensors", amplify)
    base = ("rain", "--duration", "0.3", "--steps", "2", "--device", "cpu")
    result = generate(model, *base, "--dtype", "float16", "-o", out / "half.wav")
    assert_clean_error(result, "sampler (U-Net)", "float16 overflowed", "--dtype float32 or bfloat16")
    assert leftovers(out) == []
    for dtype in ("float32", "bfloat16"):
        ok = generate(model, *base, "--dtype", dtype, "-o", out / f"{dtype}.wav")
        assert ok.returncode == 0, (dtype, ok.stderr)


def test_python_api_guards_its_tensor_inputs(tiny_model_dir):
    from mka_core import Pipeline
    from mka_core.conditioning import Condition

    pipe = Pipeline.from_pretrained(tiny_model_dir, device="cpu")
    good = pipe.conditioner(["rain"])
    bad = Condition(torch.full_like(good.embeds, math.nan), good.mask)
    with pytest.raises(NumericalError, match="precomputed condition"):
        pipe(condition=bad, duration=0.3, steps=1, seed=0)
    wave = torch.zeros(4800)
    wave[10] = math.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        pipe(["rain"], task="sdedit", init_audio=wave, duration=0.3, steps=1, seed=0)
