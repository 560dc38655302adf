"""Every `mka train` target on the CPU: its loss falls on a fixed small set, and what it exports
is a pipeline that `mka generate` loads and runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import run_cli


def metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if "valid/" not in line]


def valid_first_last(run_dir: Path, key: str) -> tuple[float, float]:
    """The validation loss on the fixed set before training and after the last step."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    values = [(r["step"], r[f"valid/{key}"]) for r in records if f"valid/{key}" in r]
    assert values[0][0] == 0 and len(values) >= 2, values
    return values[0][1], values[-1][1]


def first_last(run_dir: Path, key: str, window: int = 3) -> tuple[float, float]:
    values = [m[key] for m in metrics(run_dir) if key in m]
    assert len(values) >= 2 * window, values
    return sum(values[:window]) / window, sum(values[-window:]) / window


def train(target: str, out: Path, *args: str):
    result = run_cli("train", target, *args, "--out", out, "--set", "run.log_every=1")
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def generate_from(model: Path, tmp: Path, *args: str) -> Path:
    wav = tmp / "out.wav"
    result = run_cli("generate", "--model", model, "--duration", "1", "--steps", "3", "-o", wav, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert wav.is_file() and wav.stat().st_size > 1000
    return wav


def test_diffusion_loss_falls_and_exports(tmp_path, sound_manifest, tiny_model_dir):
    run = tmp_path / "run"
    train("diffusion", run, "--data", sound_manifest, "--steps", "40", "--set", f"model.vae={tiny_model_dir}",
          "--set", "optim.lr=2e-3", "--set", "optim.warmup_steps=0", "--set", "data.crop_frames=64",
          "--set", "run.batch_size=6")
    first, last = first_last(run, "loss", window=5)
    assert last < 0.8 * first, (first, last)
    assert (run / "recipe.toml").is_file() and (run / "samples").is_dir()
    assert list((run / "samples").glob("step-*/sample-0.wav")) and list((run / "samples").glob("step-*/sample-0.png"))
    generate_from(run / "export", tmp_path, "a steady low tone")


def test_vae_loss_falls_with_the_adversarial_term(tmp_path, sound_manifest):
    run = tmp_path / "run"
    train("vae", run, "--data", sound_manifest, "--steps", "30", "--set", "model.disc_start=20",
          "--set", "model.r1_weight=0.1", "--set", "data.crop_frames=32", "--set", "run.batch_size=3",
          "--set", "optim.lr=2e-3", "--set", "model.vae_overrides={ch=16, norm_groups=8}",
          "--valid", sound_manifest, "--set", "run.validate_every=30")
    first, last = valid_first_last(run, "rec")
    assert last < 0.8 * first, (first, last)  # measured: 2.57 -> 1.86
    assert any("d" in m and "g" in m for m in metrics(run)), "the discriminator never switched on"
    export = run / "export"
    index = json.loads((export / "model_index.json").read_text())
    assert index["pipeline"]["origin"].startswith("trained-vae")
    vae_config = json.loads((export / "vae" / "config.json").read_text())
    assert vae_config["config"]["scale_factor"] != 1.0  # measured from the first batch
    generate_from(export, tmp_path, "anything")


def test_decoder_only_fine_tuning_keeps_the_latent_space(tmp_path, sound_manifest, tiny_model_dir):
    """model.freeze_encoder: the exported VAE encodes exactly as the starting one (encoder,
    quant_conv, scale factor), so a diffusion model trained on those latents stays valid, while the
    decoder learns."""
    from training.targets.common import load_vae

    run = tmp_path / "run"
    train("vae", run, "--data", sound_manifest, "--steps", "30", "--set", f"model.init={tiny_model_dir}",
          "--set", "model.freeze_encoder=true", "--set", f"model.pipeline={tiny_model_dir}",
          "--set", "data.crop_frames=32", "--set", "run.batch_size=3", "--set", "optim.lr=2e-3",
          "--set", "optim.warmup_steps=0", "--valid", sound_manifest, "--set", "run.validate_every=30")
    first, last = valid_first_last(run, "rec")
    assert last < 0.9 * first, (first, last)
    before, after = load_vae(str(tiny_model_dir)), load_vae(str(run / "export"))
    state_before, state_after = before.state_dict(), after.state_dict()
    for name, value in state_before.items():
        if name.startswith(("encoder.", "quant_conv.")) or name == "scale_factor":
            assert torch.equal(value, state_after[name]), f"{name} changed although the encoder is frozen"
    changed = [n for n in state_before if n.startswith("decoder.") and not torch.equal(state_before[n], state_after[n])]
    assert changed, "the decoder did not learn"
    mel = torch.randn(1, 1, 80, 32)
    assert torch.equal(before.encode_latents(mel, sample=False), after.encode_latents(mel, sample=False))
    # the rest of the exported pipeline is the starting one (its U-Net reads these latents)
    unet_before = load_file(str(tiny_model_dir / "unet" / "model.safetensors"))
    unet_after = load_file(str(run / "export" / "unet" / "model.safetensors"))
    assert unet_before.keys() == unet_after.keys()
    assert all(torch.equal(unet_before[k], unet_after[k]) for k in unet_before)
    generate_from(run / "export", tmp_path, "anything")


def test_fine_tuning_with_the_gan_from_a_folder_is_reproducible(tmp_path, sound_manifest, tiny_model_dir):
    """Two runs of the same recipe from model.init (each its own process) end at the same weights,
    the discriminator's random initialisation included."""
    exports = []
    for name in ("a", "b"):
        run = tmp_path / name
        result = run_cli("train", "vae", "--data", sound_manifest, "--steps", "4", "--set", f"model.init={tiny_model_dir}",
                         "--set", "model.freeze_encoder=true", "--set", "model.disc_start=0",
                         "--set", "data.crop_frames=32", "--set", "run.batch_size=2", "--out", run, subprocess_run=True)
        assert result.returncode == 0, result.stderr[-3000:]
        exports.append(load_file(str(run / "export" / "vae" / "model.safetensors")))
    assert exports[0].keys() == exports[1].keys()
    assert all(torch.equal(exports[0][k], exports[1][k]) for k in exports[0])


def test_freezing_the_encoder_needs_a_starting_vae(tmp_path, sound_manifest):
    result = run_cli("train", "vae", "--data", sound_manifest, "--steps", "1", "--set", "model.freeze_encoder=true",
                     "--out", tmp_path / "run")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "model.init" in result.stderr
    assert not (tmp_path / "run" / "export").exists()


def test_multi_window_discriminator_option(tmp_path, sound_manifest):
    run = tmp_path / "run"
    train("vae", run, "--data", sound_manifest, "--steps", "4", "--set", "model.disc_start=0",
          "--set", 'model.disc="multi-window"', "--set", "model.disc_windows=[16, 32]",
          "--set", "data.crop_frames=32", "--set", "run.batch_size=2", "--set", "model.vae_overrides={ch=16, norm_groups=8}")
    assert all("d" in m for m in metrics(run))


def test_vocoder_mel_loss_falls_and_exports(tmp_path, sound_manifest):
    run = tmp_path / "run"
    train("vocoder", run, "--data", sound_manifest, "--steps", "40", "--set", "optim.lr=2e-3",
          "--set", "run.batch_size=4", "--set", "model.segment_frames=16",
          "--valid", sound_manifest, "--set", "run.validate_every=40")
    first, last = valid_first_last(run, "mel_l1")
    assert last < 0.8 * first, (first, last)
    index = json.loads((run / "export" / "model_index.json").read_text())
    assert index["pipeline"]["vocoder"] == "hifigan"
    generate_from(run / "export", tmp_path, "anything")


def test_bigvgan_vocoder_trains_with_its_discriminators(tmp_path, sound_manifest):
    run = tmp_path / "run"
    train("vocoder", run, "--data", sound_manifest, "--steps", "2", "--set", 'model.vocoder="bigvgan"',
          "--set", "run.batch_size=2", "--set", "model.segment_frames=16")
    assert all("d" in m and "mel_l1" in m for m in metrics(run))
    assert json.loads((run / "export" / "model_index.json").read_text())["pipeline"]["vocoder"] == "bigvgan"


def test_inpaint_finetune_starts_at_the_t2a_model_and_exports(tmp_path, sound_manifest, tiny_model_dir):
    run = tmp_path / "run"
    train("inpaint", run, "--data", sound_manifest, "--steps", "30", "--set", f"model.init={tiny_model_dir}",
          "--set", "optim.lr=2e-3", "--set", "optim.warmup_steps=0", "--set", "data.crop_frames=64",
          "--set", "run.batch_size=6")
    first, last = first_last(run, "loss", window=5)
    assert last < 0.85 * first, (first, last)
    export = run / "export"
    index = json.loads((export / "model_index.json").read_text())
    assert index["pipeline"]["defaults"]["task"] == "inpaint"
    unet = json.loads((export / "unet" / "config.json").read_text())["config"]
    assert unet["in_channels"] == 9
    row = (sound_manifest.parent / "audio" / "tone0.wav")
    generate_from(export, tmp_path, "--task", "inpaint", "--init", str(row), "--mask", "0.3-0.6", "a steady low tone")


def test_conditioner_alignment_into_a_models_space(tmp_path, sound_manifest, tiny_model_dir):
    run = tmp_path / "run"
    train("conditioner", run, "t5", "--set", "model.random_student=true", "--set", f"model.pipeline={tiny_model_dir}",
          "--data", sound_manifest, "--steps", "30")
    first, last = first_last(run, "loss")
    assert last < 0.7 * first, (first, last)
    export = run / "export"
    index = json.loads((export / "model_index.json").read_text())
    original = json.loads((tiny_model_dir / "model_index.json").read_text())
    assert index["pipeline"]["conditioner"] == "adapter"
    assert index["pipeline"]["space"] == original["pipeline"]["space"]
    generate_from(export, tmp_path, "a steady low tone")


def test_broken_rows_are_reported_and_the_good_ones_train(tmp_path, sound_manifest, tiny_model_dir):
    from training.data.manifest import read_manifest, write_manifest

    write_manifest(tmp_path / "good.tsv", read_manifest(sound_manifest), relative_to_manifest=False)
    lines = (tmp_path / "good.tsv").read_text().splitlines()
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage")
    lines += ["missing\tx\tsomething\t/nonexistent/a.wav\t\t\t",
              f"corrupt\tx\tsomething\t{tmp_path / 'corrupt.wav'}\t\t\t",
              f"nocaption\tx\t\t{sound_manifest.parent / 'audio' / 'tone0.wav'}\t\t\t"]
    manifest = tmp_path / "broken.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    result = train("diffusion", run, "--data", manifest, "--steps", "2", "--set", f"model.vae={tiny_model_dir}",
                   "--set", "data.crop_frames=32", "--set", "run.batch_size=2")
    dropped = (run / "dropped-train.tsv").read_text()
    for name, reason in (("missing", "missing file"), ("corrupt", "unreadable audio"), ("nocaption", "empty caption")):
        assert f"{name}\t" in dropped and reason in dropped
    assert "3 dropped" in result.stdout + result.stderr


@pytest.mark.parametrize("args, fragment", [
    (("train", "nosuchtarget", "--out", "x"), "no trainable target"),
    (("train", "diffusion", "--out", "x"), "manifest"),
    (("train", "diffusion", "--set", "optim.nosuch=1", "--out", "x"), "optim.nosuch"),
    (("train", "diffusion", "--set", "optim.lr", "--out", "x"), "section.key=value"),
    (("train", "diffusion", "--set", "run.max_steps=-3", "--out", "x"), "run.max_steps"),
    (("train", "vae", "--recipe", "/nonexistent.toml", "--out", "x"), "does not exist"),
    (("train", "diffusion", "--preset", "huge", "--out", "x"), "no built-in recipe"),
])
def test_bad_training_requests_get_one_sentence(tmp_path, args, fragment):
    from tests.conftest import assert_clean_error

    args = tuple(str(tmp_path / "x") if a == "x" else a for a in args)
    assert_clean_error(run_cli(*args), fragment)
    assert not (tmp_path / "x").exists(), "a failed start left a run folder behind"


def test_every_value_is_overridable_and_the_resolved_recipe_is_printed():
    result = run_cli("train", "diffusion", "--print-recipe", "--set", "optim.lr=3e-5", "--steps", "7",
                     "--set", "model.guidance_dropout=0.2")
    assert result.returncode == 0, result.stderr
    assert "lr = 3e-05" in result.stdout and "max_steps = 7" in result.stdout and "guidance_dropout = 0.2" in result.stdout


def test_diffusion_trains_with_dynamic_reprogramming(tmp_path, sound_manifest, tiny_model_dir):
    run = tmp_path / "run"
    train("diffusion", run, "--data", sound_manifest, "--steps", "2", "--set", f"model.vae={tiny_model_dir}",
          "--set", "model.reprogram.enabled=true", "--set", "model.reprogram.probabilities=[0.0, 0.0, 1.0]",
          "--set", "data.crop_frames=32", "--set", "run.batch_size=2", "--set", "model.cache_embeddings=false")
    assert [m["step"] for m in metrics(run)] == [1, 2]


def test_latent_cache_is_keyed_by_the_vae_and_the_clip(tmp_path, sound_manifest, tiny_model_dir):
    """One cache folder shared by runs with two different VAEs holds a posterior per VAE and clip,
    each equal to what that VAE computes (a cache keyed by clip name alone fed the second run the
    first VAE's latents)."""
    import torch

    from mka_core.presets import build_pipeline
    from mka_core.weights import load_safetensors
    from training.targets.common import load_vae
    from training.targets.diffusion import latent_cache_key, tensors_fingerprint

    other = tmp_path / "other-vae"
    build_pipeline("tiny", cond="bert", seed=1).save_pretrained(other)
    cache = tmp_path / "cache"
    common = ("--data", sound_manifest, "--steps", "1", "--set", "data.crop_frames=32", "--set", "run.batch_size=2",
              "--set", "model.cache_latents=true", "--set", f"data.cache_dir={cache}")
    train("diffusion", tmp_path / "a", *common, "--set", f"model.vae={tiny_model_dir}")
    first = set((cache / "latents").glob("*.safetensors"))
    assert first
    train("diffusion", tmp_path / "b", *common, "--set", f"model.vae={other}")
    second = set((cache / "latents").glob("*.safetensors")) - first
    assert len(second) == len(first)  # nothing reused across VAEs

    vae_a, vae_b = load_vae(str(tiny_model_dir)), load_vae(str(other))
    assert tensors_fingerprint(vae_a.state_dict()) != tensors_fingerprint(vae_b.state_dict())
    assert tensors_fingerprint(vae_a.state_dict()) == tensors_fingerprint(load_vae(str(tiny_model_dir)).state_dict())
    mel = torch.randn(80, 32)
    key = latent_cache_key("vae", "clip", mel)
    assert key == latent_cache_key("vae", "clip", mel.clone())
    assert len({key, latent_cache_key("vae2", "clip", mel), latent_cache_key("vae", "clip2", mel),
                latent_cache_key("vae", "clip", mel + 1e-3)}) == 4
    for path in second:
        moments = load_safetensors(path)["moments"]
        assert moments.shape[0] == 2 * vae_b.latent_channels
