"""Family A (maa1_full.ckpt + BigVGAN) and family-B ta40multi (same layout) -> mka, at full size."""

from __future__ import annotations

import json

import pytest
import torch

from tests.convert import _reference_defs as ref
from tests.convert.conftest import cli
from tests.convert.test_maa_b import assert_every_tensor_accounted, assert_module_equals_checkpoint, checkpoint_state
from tests.convert.test_parity import TOLERANCE, rel

PROMPT = "a bird chirps while a dog barks far away"


@pytest.fixture(scope="module")
def converted_maa1(maa1_ckpt, bigvgan_dir, tokenizer_dir, fakes):
    out = fakes / "converted-maa1"
    if not out.exists():
        code, stdout, err = cli("convert", "maa1", "--ckpt", maa1_ckpt, "--vocoder", bigvgan_dir,
                                "--tokenizer", tokenizer_dir, "--out", out)
        assert code == 0, err
        (fakes / "converted-maa1.stdout").write_text(stdout)
    return out, (fakes / "converted-maa1.stdout").read_text()


@pytest.fixture(scope="module")
def maa1_pipe(converted_maa1):
    from mka_core.pipeline import Pipeline

    return Pipeline.from_pretrained(converted_maa1[0], device="cpu")


def test_every_tensor_of_both_files_is_used_or_ignored(converted_maa1, maa1_ckpt, bigvgan_dir):
    out, stdout = converted_maa1
    report = json.loads((out / "conversion_report.json").read_text())
    records = assert_every_tensor_accounted(report, checkpoint_state(maa1_ckpt))
    assert "transformers <= 4.30" in records["cond_stage_model.caption_encoder.base.embeddings.position_ids"]["reason"]
    for key, record in records.items():
        if key.startswith("cond_stage_model.caption_encoder.projection."):
            assert record["fate"] == "used" and record["target"].startswith("conditioner:")
        if key.startswith("model.diffusion_model."):
            assert record["target"] == "unet:" + key[len("model.diffusion_model."):]
    assert records["scale_factor"]["target"] == "vae:scale_factor"
    vocoder = report["sources"][1]
    generator = torch.load(bigvgan_dir / "best_netG.pt", weights_only=True)["generator"]
    assert vocoder["totals"]["tensors"] == vocoder["totals"]["used_tensors"] == len(generator) == 784
    assert len(report["checkpoint"]["sha256"]) == 64
    assert "maa1_full.ckpt (state_dict): every tensor accounted for" in stdout
    assert "best_netG.pt (generator): every tensor accounted for" in stdout


def test_every_mka_tensor_is_filled_from_the_files(maa1_pipe, converted_maa1, maa1_ckpt, bigvgan_dir):
    from mka_core.models.vocoders.weight_norm import effective_weight

    state = checkpoint_state(maa1_ckpt)
    report = json.loads((converted_maa1[0] / "conversion_report.json").read_text())
    pipe = maa1_pipe
    assert report["filled"]["unet"] == len(pipe.unet.state_dict()) == 434
    assert_module_equals_checkpoint(pipe.unet, state, "model.diffusion_model.")
    assert pipe.vae.scale_factor_value == pytest.approx(0.8125)
    assert pipe.vae.scale_factor.shape == ()
    assert torch.equal(pipe.schedule.alphas_cumprod, state["alphas_cumprod"])
    generator = torch.load(bigvgan_dir / "best_netG.pt", weights_only=True)["generator"]
    ours = pipe.vocoder.state_dict()
    assert len(ours) == report["filled"]["vocoder"]
    for conv in ("conv_pre", "ups.3.0", "resblocks.17.convs2.2", "conv_post"):
        folded = effective_weight(generator[f"{conv}.weight_g"].float(), generator[f"{conv}.weight_v"].float())
        assert torch.allclose(ours[f"{conv}.weight"].float(), folded, rtol=1e-6, atol=1e-7), conv
    assert torch.equal(ours["activation_post.upsample.filter"], generator["activation_post.upsample.filter"].float())
    defaults = pipe.config.defaults
    assert (defaults.sampler, defaults.steps, defaults.guidance, defaults.task) == ("ddim", 100, 3.0, "t2a")
    assert pipe.config.mel.scaling == "log10" and pipe.config.vocoder == "bigvgan"


def reference_ids(tokenizer_dir, texts):
    import transformers

    tokenizer = transformers.BertTokenizer(vocab=str(tokenizer_dir / "vocab.txt"), do_lower_case=True)
    return tokenizer(texts, max_length=77, truncation=True, padding="max_length", return_tensors="pt")["input_ids"]


def test_text_encoder_context_matches_the_reference(maa1_pipe, maa1_ckpt, tokenizer_dir):
    state = checkpoint_state(maa1_ckpt)
    ids = reference_ids(tokenizer_dir, [PROMPT, ""])
    assert ids[1, :3].tolist() == [101, 102, 0]
    with torch.no_grad():
        theirs = ref.bert_projection(state, "cond_stage_model.caption_encoder.", ids)
        ours = maa1_pipe.conditioner([PROMPT]).embeds
        null = maa1_pipe.conditioner.null_condition(1).embeds
    assert ours.shape == (1, 77, 1024)
    assert rel(ours[0], theirs[0]) < TOLERANCE
    assert rel(null[0], theirs[1]) < TOLERANCE  # the null condition is the encoding of "", not zeros


def test_converted_model_generates_offline(converted_maa1, tmp_path):
    import soundfile as sf

    wav = tmp_path / "bird.wav"
    code, _, err = cli("generate", "--model", converted_maa1[0], PROMPT, "--duration", "0.5", "--steps", "2",
                       "--seed", "3", "-o", wav)
    assert code == 0, err
    audio, rate = sf.read(wav)
    assert rate == 16000 and audio.shape == (8000,) and abs(audio).max() > 0


def test_ta40multi_is_the_same_layout_on_the_family_b_front_end(maa1_ckpt, tokenizer_dir, tmp_path):
    from mka_core.convert.maa_b import convert_maa_b

    conversion = convert_maa_b(maa1_ckpt, "t2a", staging=tmp_path, tokenizer=tokenizer_dir)
    pipe = conversion.pipeline
    for ledger in conversion.ledgers:
        ledger.check_complete()
    assert pipe.config.mel.scaling == "db_unit" and (pipe.config.mel.fmin, pipe.config.mel.fmax) == (125.0, 7600.0)
    assert pipe.config.defaults.guidance == 1.5 and pipe.vae.config.resolution == 848
    assert pipe.config.vocoder == "griffin-lim" and pipe.vocoder.config.mel == pipe.config.mel
    result = pipe([PROMPT], steps=1, duration=0.3, seed=0)
    assert result.waveforms.shape == (1, 4800) and torch.isfinite(result.waveforms).all()
