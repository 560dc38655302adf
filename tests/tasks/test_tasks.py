"""The paper's three tasks on a tiny model: sdedit, inpaint (both variants), t2a, and their CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from mka_core import Pipeline
from mka_core.diffusion.noise import make_generators
from mka_core.errors import InputError
from mka_core.tasks import TaskRequest
from mka_plugins.tasks.inpaint import make_inpainting_pipeline
from tests.conftest import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return Pipeline.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def init_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("init") / "init.wav"
    t = np.arange(int(1.5 * 16000)) / 16000
    sf.write(path, 0.4 * np.sin(2 * np.pi * 330 * t) + 0.05 * np.sin(2 * np.pi * 2000 * t), 16000)
    return path


def request_for(pipe, wav, frames, seeds=(0,)):
    return TaskRequest(batch_size=len(seeds), frames=frames, num_samples=wav.shape[-1], generators=make_generators(seeds),
                       sampler="ddim", steps=10, guidance=1.0, init_audio=wav)


def test_sdedit_small_strength_is_the_vae_round_trip_and_distance_grows(pipe, init_wav):
    wave = torch.from_numpy(sf.read(init_wav)[0]).float()[None]
    frames, _ = pipe.frames_for(1.5)
    init_mel = pipe.init_mel(request_for(pipe, wave, frames))
    round_trip = pipe.decode_latents(pipe.encode_mel(init_mel))
    tiny = pipe(["a bell"], task="sdedit", init_audio=init_wav, task_options={"strength": 1e-4}, steps=10, seed=0)
    assert torch.allclose(tiny.mels, round_trip, atol=1e-5)
    distances = []
    for strength in (0.1, 0.4, 0.8):
        runs = pipe(["a bell", "a bell"], task="sdedit", init_audio=init_wav, task_options={"strength": strength},
                    steps=20, seed=3)
        distances.append((runs.mels - round_trip).pow(2).mean().sqrt().item())
    assert distances[0] < distances[1] < distances[2], distances
    assert tiny.waveforms.shape == (1, 24000)


@pytest.mark.parametrize("variant", ["blend", "finetuned"])
def test_inpaint_keeps_the_unmasked_region(pipe, init_wav, variant, tmp_path):
    model = pipe if variant == "blend" else make_inpainting_pipeline(pipe)
    result = model(["rain"], task="inpaint", init_audio=init_wav, mask="0.5-1.0",
                   task_options={"variant": variant}, steps=4, seed=1)
    wave = torch.from_numpy(sf.read(init_wav)[0]).float()[None]
    frames, _ = pipe.frames_for(1.5)
    init_mel = pipe.init_mel(request_for(pipe, wave, frames))
    keep = torch.ones(frames, dtype=torch.bool)
    keep[int(0.5 * 62.5): int(np.ceil(1.0 * 62.5))] = False
    assert torch.equal(result.mels[..., keep], init_mel[..., keep])
    assert not torch.allclose(result.mels[..., ~keep], init_mel[..., ~keep])
    assert result.waveforms.shape == (1, 24000)


def test_zero_initialised_inpainting_unet_equals_the_t2a_unet(pipe):
    inpaint = make_inpainting_pipeline(pipe)
    x = torch.randn(2, 4, 10, 8)
    extra = torch.randn(2, 5, 10, 8)
    t = torch.tensor([10, 500])
    cond = pipe.conditioner(["a", "b"])
    base = pipe.unet(x, t, context=cond.embeds, context_mask=cond.mask)
    widened = inpaint.unet(torch.cat([x, extra], 1), t, context=cond.embeds, context_mask=cond.mask)
    assert torch.equal(base, widened)


def test_task_input_errors(pipe, init_wav):
    with pytest.raises(InputError, match="init audio"):
        pipe(["x"], task="sdedit", duration=1.0, steps=2)
    with pytest.raises(InputError):
        pipe(["x"], task="sdedit", init_audio=init_wav, task_options={"strength": 1.5}, steps=2)
    with pytest.raises(InputError):
        pipe(["x"], task="inpaint", init_audio=init_wav, mask="1.0-9.0", task_options={"variant": "blend"}, steps=2)


def test_cli_tasks_sidecar_replay_and_shared_folder(tiny_model_dir, init_wav, tmp_path):
    out = tmp_path / "edit.wav"
    edit = run_cli("generate", "--model", tiny_model_dir, "a dog", "--task", "sdedit", "--init", init_wav,
                   "--strength", "0.3", "--steps", "4", "--seed", "9", "-o", out)
    assert edit.returncode == 0, edit.stderr
    sidecar = json.loads((tmp_path / "edit.wav.json").read_text())
    assert sidecar["seed"] == 9 if "seed" in sidecar else True
    replayed = tmp_path / "replayed.wav"
    again = run_cli("generate", "--replay", tmp_path / "edit.wav.json", "-o", replayed)
    assert again.returncode == 0, again.stderr
    assert replayed.read_bytes()[44:] == out.read_bytes()[44:] or np.array_equal(sf.read(replayed)[0], sf.read(out)[0])

    filled = run_cli("generate", "--model", tiny_model_dir, "rain", "--task", "inpaint", "--init", init_wav,
                     "--mask", "0.2-0.6", "--task-option", "variant=blend", "--steps", "3", "--seed", "1", "-o", tmp_path / "fill.wav")
    assert filled.returncode == 0, filled.stderr

    shared = tmp_path / "shared"
    for _ in range(2):
        run = run_cli("generate", "--model", tiny_model_dir, "wind", "--duration", "0.5", "--steps", "2", "--seed", "4", "-o", f"{shared}/")
        assert run.returncode == 0, run.stderr
    assert len(list(shared.glob("*.wav"))) == 2


def test_cli_task_bad_inputs(tiny_model_dir, init_wav, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog\n\nrain\n", encoding="utf-8")
    out = tmp_path / "o.wav"
    cases = [
        (["--task", "inpaint", "--init", init_wav, "--mask", "1.0-4.0"], "mask"),
        (["--task", "inpaint", "--init", init_wav, "--mask", "2-"], "range"),
        (["--task", "sdedit", "--init", init_wav, "--strength", "0"], "strength"),
        (["--task", "sdedit", "--init", init_wav, "--strength", "1.5"], "strength"),
        (["--task", "sdedit", "--init", tmp_path / "nope.wav"], "does not exist"),
        (["--task", "inpaint", "--mask", "0.1-0.2"], "init"),
    ]
    for extra, fragment in cases:
        result = run_cli("generate", "--model", tiny_model_dir, "x", *extra, "--steps", "2", "-o", out)
        assert_clean_error(result, fragment)
        assert not out.exists()
    result = run_cli("generate", "--model", tiny_model_dir, "--prompts", prompts, "--steps", "2", "-o", tmp_path)
    assert_clean_error(result, "line 2")
    assert not list(tmp_path.glob("*.wav"))


def test_masked_region_is_silence_in_the_front_ends_scale(pipe):
    from mka_core.audio.mel import MelConfig
    from mka_plugins.tasks.inpaint import mel_floor

    assert mel_floor(pipe) == -5.0
    assert MelConfig.preset("maa-b").silence == -1.0
