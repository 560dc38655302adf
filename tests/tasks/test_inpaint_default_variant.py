"""Inpainting on a model without an inpainting U-Net: the default variant is the one that can run.

The embedded default model and every ``mka new-model`` folder have a text-to-audio U-Net, so
``inpaint`` without a variant runs ``blend`` there, says so with one warning and records it;
asking for ``finetuned`` on such a model stays an error.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import soundfile as sf

from mka_core import Pipeline
from mka_core.errors import InputError
from mka_plugins.tasks.inpaint import make_inpainting_pipeline
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    return Pipeline.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def init_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("init") / "street.wav"
    t = np.arange(int(1.5 * 16000)) / 16000
    sf.write(path, 0.4 * np.sin(2 * np.pi * 330 * t), 16000)
    return path


def inpaint(model, init_wav, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = model(["rain"], task="inpaint", init_audio=init_wav, mask="0.5-1.0", steps=2, seed=1,
                       task_options=options)
    return result, [str(w.message) for w in caught]


def test_default_variant_on_a_text_to_audio_model_is_blend_and_says_so(pipe, init_wav):
    result, messages = inpaint(pipe, init_wav)
    assert result.metadata[0]["variant"] == "blend"
    assert result.metadata[0]["variant_chosen"] == "automatic"
    notes = [m for m in messages if "inpaint" in m and "blend" in m]
    assert len(notes) == 1, messages
    # The same request with the variant named gives the same audio, without the note.
    asked, messages = inpaint(pipe, init_wav, variant="blend")
    assert asked.metadata[0]["variant_chosen"] == "asked"
    assert not [m for m in messages if "inpaint" in m]
    assert np.array_equal(asked.waveforms.numpy(), result.waveforms.numpy())


def test_default_variant_on_an_inpainting_model_is_finetuned_without_a_note(pipe, init_wav):
    result, messages = inpaint(make_inpainting_pipeline(pipe), init_wav)
    assert result.metadata[0]["variant"] == "finetuned"
    assert result.metadata[0]["variant_chosen"] == "default"
    assert not [m for m in messages if "inpaint" in m]


def test_finetuned_on_a_text_to_audio_model_stays_an_error(pipe, init_wav):
    with pytest.raises(InputError, match="variant=finetuned") as raised:
        inpaint(pipe, init_wav, variant="finetuned")
    assert "--task-option" not in str(raised.value)  # no CLI flag in an error the web app shows too


def test_cli_inpaint_without_a_variant_warns_once_and_records_it(tiny_model_dir, init_wav, tmp_path):
    import json

    out = tmp_path / "fill.wav"
    done = run_cli("generate", "--model", tiny_model_dir, "rain", "--init", init_wav, "--mask", "0.2-0.6",
                   "--steps", "2", "--seed", "1", "-o", out)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("mka: warning: inpaint:")]
    assert len(notes) == 1, done.stderr
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert sidecar["metadata"]["variant"] == "blend"
    assert sidecar["metadata"]["variant_chosen"] == "automatic"
