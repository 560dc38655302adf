"""`mka train light-decoder`: a conv decoder distilled from the VAE decoder, and the pipeline's --decoder switch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import assert_clean_error, run_cli

SMALL = ("--set", "data.crop_frames=32", "--set", "run.batch_size=3", "--set", "run.log_every=1",
         "--set", "optim.warmup_steps=0", "--set", "model.decoder=tiny")


@pytest.fixture(scope="module")
def light_run(tmp_path_factory, tiny_model_dir, sound_manifest) -> Path:
    run = tmp_path_factory.mktemp("light") / "run"
    done = run_cli("train", "light-decoder", "--teacher", tiny_model_dir, "--data", sound_manifest, "--steps", "6",
                   *SMALL, "--out", run)
    assert done.returncode == 0, done.stderr[-3000:]
    return run


def test_export_is_the_teacher_folder_plus_a_light_decoder(light_run, tiny_model_dir):
    export = light_run / "export"
    index = json.loads((export / "model_index.json").read_text())
    teacher = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["components"]["light_decoder"]["class"] == "mka_core.models.light_decoder.LightDecoder"
    assert "light_decoder" not in teacher["components"]
    assert index["pipeline"]["decoder"] == "vae"  # model.make_default is off in the recipes
    assert (export / "light_decoder" / "model.safetensors").is_file()
    from mka_core.weights import load_safetensors

    for part in ("vae", "unet"):  # the teacher's components are kept unchanged
        ours, theirs = (load_safetensors(d / part / "model.safetensors") for d in (export, tiny_model_dir))
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    metrics = [json.loads(line) for line in (light_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "l1" in m] == [1, 2, 3, 4, 5, 6]


def test_the_loss_pulls_the_light_decoder_onto_the_vae_decoder(tiny_model_dir, sound_manifest, tmp_path):
    """The target's own teacher pairs and loss, a few dozen Adam steps on one batch: the light
    decoder's mel L1 to the VAE decoder's mel on the same latents falls well below where it started."""
    from training.targets.base import TrainContext
    from training.targets.light_decoder import LightDecoderRecipe, LightDecoderTarget, mel_distances

    recipe = LightDecoderRecipe.model_validate({
        "data": {"train": str(sound_manifest), "crop_frames": 32},
        "model": {"teacher": str(tiny_model_dir), "decoder": "tiny"}})
    target = LightDecoderTarget(recipe, TrainContext(device=torch.device("cpu"), run_dir=tmp_path))
    target.setup()
    batch = target.collate([target.train_data[(k, k)] for k in range(3)])
    z, teacher_mel, mel = target.teacher_pair(batch, torch.Generator().manual_seed(0))
    assert teacher_mel.shape == mel.shape == (3, 1, 80, 32) and z.shape == (3, 4, 10, 4)
    light = target.raw("light_decoder")
    optimizer = torch.optim.Adam(light.parameters(), lr=3e-3)
    with torch.no_grad():
        before = mel_distances(light(z), teacher_mel)
    for _ in range(40):
        loss, logs = target.losses(light(z), teacher_mel, mel)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = mel_distances(light(z), teacher_mel)
    assert after["mel_l1"] < 0.7 * before["mel_l1"] and after["lsd_db"] < before["lsd_db"]
    assert set(logs) == {"l1", "multires", "loss"}


def test_pipeline_decodes_with_the_light_decoder_in_the_vae_decoders_shape(light_run):
    from mka_core.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(light_run / "export", device="cpu")
    assert pipe.decoder == "vae" and pipe.describe()["decoder"] == "vae"
    z = torch.randn(2, *pipe.latent_shape(48), generator=torch.Generator().manual_seed(2))
    vae_mel = pipe.decode_latents(z)
    light_mel = pipe.use_decoder("light").decode_latents(z)
    assert light_mel.shape == vae_mel.shape == (2, 1, 80, 48)
    assert not torch.allclose(light_mel, vae_mel)
    calls = []
    original = pipe.vae.decode
    pipe.vae.decode = lambda *a, **k: calls.append(1) or original(*a, **k)
    result = pipe(["a steady low tone"], duration=1.0, steps=2, seed=3)
    assert not calls  # the VAE decoder never ran
    assert result.waveforms.shape == (1, 16000) and torch.isfinite(result.waveforms).all()


def test_mka_generate_decoder_flag_and_sidecar(light_run, tiny_model_dir, tmp_path):
    out = tmp_path / "clip.wav"
    done = run_cli("generate", "a steady low tone", "--model", light_run / "export", "--decoder", "light",
                   "--duration", "0.5", "--steps", "2", "--seed", "1", "-o", out)
    assert done.returncode == 0, done.stderr[-2000:]
    sidecar = json.loads(Path(str(out) + ".json").read_text())
    assert sidecar["metadata"]["decoder"] == "light"

    replay = tmp_path / "again.wav"
    done = run_cli("generate", "--replay", Path(str(out) + ".json"), "-o", replay)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(Path(str(replay) + ".json").read_text())["metadata"]["decoder"] == "light"
    assert replay.read_bytes() == out.read_bytes()

    done = run_cli("generate", "a tone", "--model", tiny_model_dir, "--decoder", "light", "--duration", "0.5",
                   "--steps", "1", "-o", tmp_path / "none.wav")
    assert_clean_error(done, "has no light decoder", "mka train light-decoder")
    assert not (tmp_path / "none.wav").exists()


def test_recorded_default_decoder_and_a_missing_component(light_run, tmp_path):
    from mka_core.errors import WeightsError
    from mka_core.pipeline import Pipeline

    folder = tmp_path / "light-default"
    shutil.copytree(light_run / "export", folder)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["pipeline"]["decoder"] = "light"
    index_path.write_text(json.dumps(index))
    pipe = Pipeline.from_pretrained(folder, device="cpu")
    assert pipe.decoder == "light"
    resaved = pipe.save_pretrained(tmp_path / "resaved")
    assert json.loads((resaved / "model_index.json").read_text())["pipeline"]["decoder"] == "light"

    shutil.rmtree(folder / "light_decoder")
    with pytest.raises(WeightsError, match="light_decoder is missing"):
        Pipeline.from_pretrained(folder, device="cpu")


def test_a_light_decoder_must_fit_the_vae(tiny_model_dir):
    from mka_core.errors import InputError
    from mka_core.models.light_decoder import LightDecoder, LightDecoderConfig
    from mka_core.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(tiny_model_dir, device="cpu")
    wrong = LightDecoder(LightDecoderConfig(latent_channels=8, downsampling=(8, 8), ch=8))
    with pytest.raises(InputError, match="8-channel latents"):
        Pipeline(pipe.config, pipe.conditioner, pipe.vae, pipe.unet, pipe.vocoder, device="cpu", light_decoder=wrong)
    with pytest.raises(ValueError, match="powers of 2"):
        LightDecoderConfig(downsampling=(6, 8))
    with pytest.raises(InputError, match="Unknown light-decoder preset 'huge'"):
        LightDecoder.for_vae(pipe.vae, "huge")
    with pytest.raises(InputError, match="model.decoder_overrides"):
        LightDecoder.for_vae(pipe.vae, "tiny", ch=0)


def test_bad_recipe_values_are_one_sentence(tiny_model_dir, sound_manifest, tmp_path):
    done = run_cli("train", "light-decoder", "--teacher", tiny_model_dir, "--data", sound_manifest, "--steps", "1",
                   "--set", "data.crop_frames=36", "--out", tmp_path / "run")
    assert_clean_error(done, "multiple of the VAE's 8-frame")
    done = run_cli("train", "light-decoder", "--data", sound_manifest, "--steps", "1", "--out", tmp_path / "run2")
    assert_clean_error(done, "--teacher MODEL")


def test_eval_resynthesize_light_goes_through_the_light_decoder(light_run, tiny_model_dir, sound_manifest):
    from mka_core.errors import InputError
    from mka_core.pipeline import Pipeline
    from training.data.manifest import read_manifest
    from training.evaluation.evaluate import resynthesized_pairs

    pipe = Pipeline.from_pretrained(light_run / "export", device="cpu")
    rows = read_manifest(sound_manifest)[:2]
    calls = []
    original = pipe.light_decoder.forward
    pipe.light_decoder.forward = lambda z: calls.append(z.shape) or original(z)
    light = [pair for batch in resynthesized_pairs(pipe, rows, "light") for pair in batch]
    assert len(calls) == 2 and pipe.decoder == "vae"  # the pipeline's own choice is restored
    vae = [pair for batch in resynthesized_pairs(pipe, rows, "vae") for pair in batch]
    assert len(calls) == 2
    assert [p.generated.shape for p in light] == [p.generated.shape for p in vae]
    assert not torch.equal(light[0].generated, vae[0].generated)

    plain = Pipeline.from_pretrained(tiny_model_dir, device="cpu")
    with pytest.raises(InputError, match="no light decoder"):
        next(iter(resynthesized_pairs(plain, rows, "light")))
