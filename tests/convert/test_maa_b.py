"""Family B: inpaint7 and ta54 in their exact layouts -> mka folders that load and generate offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mka_core.errors import InputError, WeightsError
from tests.convert.conftest import TINY_CLIP_1024, cli, tiny_clip_state
from tests.convert._fake_checkpoints import layout


def load_report(folder):
    return json.loads((folder / "conversion_report.json").read_text())


def checkpoint_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_every_tensor_accounted(report, state):
    source = report["sources"][0]
    records = {r["key"]: r for r in source["tensors"]}
    assert set(state) <= set(records)
    assert all(r["fate"] in ("used", "ignored") for r in records.values())
    assert all(r.get("reason") for r in records.values() if r["fate"] == "ignored")
    assert source["totals"]["tensors"] == len(records)
    return records


def assert_module_equals_checkpoint(module, state, prefix):
    ours = module.state_dict()
    for key, value in ours.items():
        ref = state[prefix + key].float()
        assert torch.equal(value.float(), ref), key


# -- inpaint7 ---------------------------------------------------------------------------------------


def test_inpaint7_every_tensor_used_or_ignored_with_reason(converted_inpaint7, inpaint7_ckpt):
    out, stdout = converted_inpaint7
    state = checkpoint_state(inpaint7_ckpt)
    records = assert_every_tensor_accounted(load_report(out), state)
    shared = [r for k, r in records.items() if k.startswith("cond_stage_model.")]
    assert len(shared) == 348 and all("shares first_stage_model" in r["reason"] for r in shared)
    assert records["alphas_cumprod"]["fate"] == "used"
    assert all(records[k]["fate"] == "ignored" for k in ("betas", "posterior_variance", "sqrt_alphas_cumprod"))
    optimizer = [r for k, r in records.items() if k.startswith("<optimizer_states")]
    assert optimizer and all(r["reason"] == "optimizer state (training only)" for r in optimizer)
    assert "every tensor accounted for" in stdout and "Wrote" in stdout


def test_inpaint7_fills_every_mka_tensor_with_the_checkpoint_values(converted_inpaint7, inpaint7_ckpt):
    from mka_core.pipeline import Pipeline

    out, _ = converted_inpaint7
    state = checkpoint_state(inpaint7_ckpt)
    pipe = Pipeline.from_pretrained(out, device="cpu")
    report = load_report(out)
    assert report["filled"]["unet"] == len(pipe.unet.state_dict()) == 230
    assert_module_equals_checkpoint(pipe.unet, state, "model.diffusion_model.")
    vae_state = {k: v for k, v in pipe.vae.state_dict().items() if k != "scale_factor"}
    for key, value in vae_state.items():
        assert torch.equal(value, state["first_stage_model." + key].float()), key
    assert pipe.vae.scale_factor_value == 1.0  # no scale_by_std: the reference's plain 1.0
    config = pipe.unet.config
    assert (config.in_channels, config.context_dim, config.attention_type, config.resblock_updown) == (
        9, None, "legacy_attention_block", True)
    assert [g.name for g in config.resolved_input_groups()] == ["x_t", "masked_latent", "mask"]
    schedule = pipe.config.schedule
    assert (schedule.beta_schedule, schedule.beta_start, schedule.beta_end) == ("scaled_linear", pytest.approx(0.0015),
                                                                               pytest.approx(0.0205))
    # The checkpoint's float32 alphas_cumprod, bit for bit.
    assert torch.equal(pipe.schedule.alphas_cumprod, state["alphas_cumprod"])
    assert pipe.config.mel.scaling == "db_unit" and pipe.config.defaults.task == "inpaint"
    assert pipe.config.conditioner == "unconditional" and pipe.config.vocoder == "griffin-lim"


def test_inpaint7_inpaints_offline(converted_inpaint7):
    from mka_core.pipeline import Pipeline

    out, _ = converted_inpaint7
    pipe = Pipeline.from_pretrained(out, device="cpu")
    t = torch.arange(12800) / 16000
    wave = 0.3 * torch.sin(2 * torch.pi * 440 * t)
    result = pipe(init_audio=wave, mask="0.25-0.5", steps=2, seed=0)
    assert result.waveforms.shape == (1, 12800) and torch.isfinite(result.waveforms).all()
    # Outside the mask the output mel is the input's mel (composited in mel space).
    mel_in = pipe.mel(wave[None])
    frames = 15  # 0.24 s, before the masked region starts
    assert torch.allclose(result.mels[..., :frames], mel_in[..., :frames].cpu(), atol=1e-5)
    with pytest.raises(InputError, match="takes no condition"):
        pipe(["a dog"], init_audio=wave, mask="0.25-0.5", steps=2, seed=0)


# -- ta54 (image to audio) ----------------------------------------------------------------------------------


def test_ta54_cond_stage_layout_is_open_clip_vit_h_14():
    """The released layout's cond stage keys (text tower, plus the possibly deleted image tower) are
    exactly open_clip's ViT-H-14 state dict, so the converter's prefix strip maps them one to one."""
    from mka_core.convert.openclip import PREFIX, expected_state, model_config

    spec = layout("ta54_img2audio")
    ref = {k[len(PREFIX):]: v[0] for k, v in {**spec["tensors"], **spec["uncertain"]}.items() if k.startswith(PREFIX)}
    ours = {k: list(v.shape) for k, v in expected_state(model_config("ViT-H-14")).items()}
    assert ours == ref


def test_ta54_converts_into_the_clip_space(converted_ta54, ta54_ckpt, tiny_clip_model_name):
    from mka_core.convert.openclip import WEIGHTS_FILE
    from mka_core.weights import load_safetensors

    out, _ = converted_ta54
    state = checkpoint_state(ta54_ckpt)
    records = assert_every_tensor_accounted(load_report(out), state)
    clip_keys = [k for k in state if k.startswith("cond_stage_model.model.")]
    assert all(records[k]["fate"] == "used" and records[k]["target"].startswith("conditioner:") for k in clip_keys)
    saved = load_safetensors(out / "conditioner" / WEIGHTS_FILE)
    assert len(saved) == len(clip_keys)
    for key in clip_keys:
        assert torch.equal(saved[key[len("cond_stage_model.model."):]], state[key].float()), key
    index = json.loads((out / "model_index.json").read_text())["pipeline"]
    assert index["conditioner"] == "clip-text"
    assert index["space"] == {"name": f"openclip:{tiny_clip_model_name}/laion2b_s32b_b79k", "dim": 1024, "tokens": "global"}
    assert index["defaults"]["guidance"] == 3.0 and index["defaults"]["sampler"] == "ddim"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    from tests.plugins.test_conditioners_end_to_end import write_video

    folder = tmp_path_factory.mktemp("media")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / "photo.png")
    write_video(folder / "clip.mp4")
    return folder


@pytest.mark.parametrize("cond, item", [("clip-image", "photo.png"), ("clip-video", "clip.mp4")])
def test_ta54_generates_from_an_image_and_a_video(converted_ta54, media, tmp_path, cond, item):
    import soundfile as sf

    out, _ = converted_ta54
    wav = tmp_path / f"{cond}.wav"
    code, _, err = cli("generate", "--model", out, "--cond", cond, media / item, "--duration", "0.5", "--steps", "2",
                       "--seed", "1", "-o", wav)
    assert code == 0, err
    audio, rate = sf.read(wav)
    assert rate == 16000 and audio.shape == (8000,) and np.isfinite(audio).all()


def test_ta54_without_its_image_tower_needs_clip_weights(tmp_path, pool):
    """A checkpoint whose image tower was deleted converts only with --clip (open_clip local-dir folder)."""
    from mka_core.convert.accounting import Ledger
    from mka_core.convert.openclip import CONFIG_FILE, WEIGHTS_FILE, convert_openclip
    from mka_core.weights import load_safetensors, save_safetensors

    text_only = tiny_clip_state(pool, visual=False)
    with pytest.raises(WeightsError, match="--clip DIR"):
        convert_openclip(text_only, Ledger("ta54", text_only), tmp_path / "a", source="ta54", model_cfg=TINY_CLIP_1024)
    clip_dir = tmp_path / "clip"
    clip_dir.mkdir()
    full = {k[len("cond_stage_model.model."):]: v.float() for k, v in tiny_clip_state(pool).items()}
    donor = {k: (v + 1 if k.startswith("visual.") else v) for k, v in full.items()}
    save_safetensors(donor, clip_dir / WEIGHTS_FILE)
    (clip_dir / CONFIG_FILE).write_text(json.dumps({"model_cfg": TINY_CLIP_1024, "preprocess_cfg": {}}))
    ledger = Ledger("ta54", text_only)
    extra, info = convert_openclip(text_only, ledger, tmp_path / "b", source="ta54", model_cfg=TINY_CLIP_1024,
                                   clip_dir=clip_dir)
    ledger.check_complete()
    extra[0].check_complete()
    saved = load_safetensors(tmp_path / "b" / WEIGHTS_FILE)
    assert all(torch.equal(saved[k], donor[k]) for k in donor if k.startswith("visual."))
    assert all(torch.equal(saved[k], full[k]) for k in full if not k.startswith("visual."))
    assert info["image_tower_from"] == str(clip_dir)


def test_family_b_vocoders_get_the_log10_mel(converted_inpaint7):
    """The family-B front end's [-1, 1] mel must reach any vocoder as the log10 mel it takes."""
    from mka_core.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(converted_inpaint7[0], device="cpu")
    t = torch.arange(8192) / 16000
    mel = pipe.mel(0.3 * torch.sin(2 * torch.pi * 440 * t)[None])  # [-1, 1], what the VAE sees
    assert mel.min() >= -1 and mel.max() <= 1
    expected = pipe.vocoder(pipe.mel_frontend.to_log10(mel)[:, 0])
    assert torch.allclose(pipe.vocode(mel), expected, atol=1e-6)
