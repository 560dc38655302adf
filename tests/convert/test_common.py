"""The shared conversion machinery on small inputs: signatures, schedule, training-only keys, output folders."""

from __future__ import annotations

import json

import pytest
import torch

from mka_core.convert.accounting import Ledger
from mka_core.convert.common import (
    REPORT_FILE,
    Conversion,
    ignore_extra_entries,
    ignore_training_entries,
    run_conversion,
    schedule_from_buffers,
)
from mka_core.convert.families import identify, require_kind
from mka_core.diffusion.schedule import ScheduleConfig
from mka_core.errors import InputError, WeightsError
from tests.convert._fake_checkpoints import layout, schedule_buffers


def meta_state(name: str) -> dict[str, torch.Tensor]:
    """A layout's keys with shape-only tensors (no memory): enough for the key signatures."""
    return {k: torch.empty(shape, device="meta") for k, (shape, _) in layout(name)["tensors"].items()}


@pytest.mark.parametrize("name, kind", [("maa1_full", "t2a"), ("ta40multi", "t2a"), ("ta54_img2audio", "i2a"),
                                        ("inpaint7", "inpaint"), ("bigvgan_16k", "bigvgan")])
def test_every_released_layout_is_recognised(name, kind):
    assert identify(meta_state(name)) == kind


def test_an_unknown_layout_is_named_as_such():
    state = {"model.diffusion_model.input_blocks.0.0.weight": torch.empty(320, 4, 3, 3, device="meta"),
             "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.empty(1, device="meta")}
    assert identify(state) is None
    with pytest.raises(WeightsError, match="matches no Make-An-Audio layout"):
        require_kind(state, "t2a", "sd.ckpt")


def test_schedule_keeps_the_float32_values_and_names_the_betas():
    buffers = schedule_buffers(0.0015, 0.0205)
    ledger = Ledger("x", buffers)
    config, note = schedule_from_buffers(buffers, ledger, ScheduleConfig(), "x")
    ledger.check_complete()
    assert config.alphas_cumprod == [float(v) for v in buffers["alphas_cumprod"]]
    assert (config.beta_schedule, round(config.beta_start, 6), round(config.beta_end, 6)) == ("scaled_linear", 0.0015, 0.0205)
    assert "0.0015 -> 0.0205" in note
    linear = dict(buffers, betas=torch.linspace(0.0001, 0.02, 1000))
    config, _ = schedule_from_buffers(linear, Ledger("x", linear), ScheduleConfig(), "x")
    assert config.beta_schedule == "linear"


def test_a_broken_schedule_is_refused():
    buffers = schedule_buffers(0.00085, 0.012)
    buffers["alphas_cumprod"] = buffers["alphas_cumprod"].flip(0)
    with pytest.raises(WeightsError, match="not a valid 1000-step schedule"):
        schedule_from_buffers(buffers, Ledger("x", buffers), ScheduleConfig(), "x")


def test_training_only_entries_get_their_reasons():
    state = {"logvar": torch.zeros(1000), "model_ema.decay": torch.tensor(0.999), "model_ema.num_updates": torch.tensor(3),
             "loss.discriminator.w": torch.zeros(2), "model.diffusion_model.x": torch.zeros(1)}
    ledger = Ledger("x", state)
    ignore_training_entries(state, ledger)
    ignore_extra_entries({"optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(2)}}}], "epoch": 3}, ledger)
    assert ledger.pending() == ["model.diffusion_model.x"]
    reasons = {k: r.reason for k, r in ledger.records.items()}
    assert "use_ema: False" in reasons["model_ema.decay"] and "training only" in reasons["logvar"]
    assert reasons["<optimizer_states.0.state.0.exp_avg>"] == "optimizer state (training only)"


def tiny_conversion(seed: int) -> Conversion:
    from mka_core.presets import build_pipeline

    ledger = Ledger("tiny.ckpt", {"w": torch.zeros(2)})
    ledger.use("w", "unet:w")
    return Conversion(pipeline=build_pipeline("tiny", cond="bert", seed=seed), ledgers=[ledger], filled={"unet": 1},
                      info={"family": "test"})


def test_output_is_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "model"
    run_conversion(lambda staging: tiny_conversion(0), out)
    first = json.loads((out / REPORT_FILE).read_text())
    assert first["family"] == "test" and first["sources"][0]["totals"]["used_tensors"] == 1
    with pytest.raises(InputError, match="--overwrite"):
        run_conversion(lambda staging: tiny_conversion(1), out)
    weights_before = (out / "unet" / "model.safetensors").read_bytes()
    run_conversion(lambda staging: tiny_conversion(1), out, overwrite=True)
    assert (out / REPORT_FILE).is_file()
    assert (out / "unet" / "model.safetensors").read_bytes() != weights_before  # the seed-1 model replaced it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging or backup folders left


def test_a_failing_build_leaves_nothing(tmp_path):
    def build(staging):
        (staging / "half-written.bin").write_bytes(b"x")
        raise WeightsError("boom")

    with pytest.raises(WeightsError):
        run_conversion(build, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_a_vocoder_trained_on_another_mel_is_named():
    from mka_core.audio.mel import MelConfig
    from mka_core.convert.vocoder import mel_mismatches

    assert mel_mismatches({"num_mels": 80, "sampling_rate": 16000, "hop_size": 256, "fmax": 8000}, MelConfig()) == []
    found = mel_mismatches({"fmin": 0, "fmax": 8000, "num_mels": 80}, MelConfig.preset("maa-b"))
    assert found == ["the vocoder was trained with fmin=0 but the model's front end uses fmin=125.0",
                     "the vocoder was trained with fmax=8000 but the model's front end uses fmax=7600.0"]
