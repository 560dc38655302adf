"""Bad init audio through `mka generate --init`: handled correctly, or one sentence and no output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import assert_clean_error
from tests.reliability import corpus
from tests.reliability.conftest import generate, leftovers


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def sdedit(model, init, out, *extra):
    return generate(model, "a dog barking", "--init", init, "--strength", "0.5", *extra, "-o", out / "x.wav")


def read_output(out):
    audio, rate = sf.read(out / "x.wav", dtype="float32")
    assert rate == 16000 and audio.ndim == 1 and np.isfinite(audio).all()
    return audio


@pytest.mark.parametrize("builder,fragments", [
    (corpus.truncated_wav, ["Cannot read", "as audio"]),
    (corpus.header_corrupted_wav, ["Cannot read", "as audio"]),
    (corpus.zero_length_wav, ["empty", "0 samples"]),
    (lambda p: corpus.nonfinite_wav(p, math.nan), ["NaN or infinite"]),
    (lambda p: corpus.nonfinite_wav(p, math.inf), ["NaN or infinite"]),
], ids=["truncated-header", "corrupted-header", "zero-length", "nan", "inf"])
def test_unusable_audio_is_one_sentence(tiny_model_dir, tmp_path, out, builder, fragments):
    init = builder(tmp_path / "in.wav")
    result = sdedit(tiny_model_dir, init, out)
    assert_clean_error(result, "in.wav", *fragments)
    assert leftovers(out) == []


def test_not_audio_at_all(tiny_model_dir, tmp_path, out):
    text = tmp_path / "notes.wav"
    text.write_text("these are my notes, not a recording\n")
    assert_clean_error(sdedit(tiny_model_dir, text, out), "notes.wav", "Cannot read")
    assert_clean_error(sdedit(tiny_model_dir, tmp_path, out), "folder")
    assert_clean_error(sdedit(tiny_model_dir, tmp_path / "missing.wav", out), "does not exist")
    assert leftovers(out) == []


@pytest.mark.parametrize("builder", [corpus.one_sample_wav, corpus.lying_header_wav],
                         ids=["one-sample", "data-cut-short"])
def test_too_short_audio_names_the_file_and_the_fix(tiny_model_dir, tmp_path, out, builder):
    init = builder(tmp_path / "in.wav")
    result = sdedit(tiny_model_dir, init, out)
    assert_clean_error(result, "init audio", "in.wav", "s long", "--duration")
    assert leftovers(out) == []
    # The fix the message offers works: the clip is padded with silence to the duration asked for.
    padded = sdedit(tiny_model_dir, init, out, "--duration", "0.3")
    assert padded.returncode == 0, padded.stderr
    assert read_output(out).shape == (4800,)


def test_too_long_audio_is_refused_unless_a_duration_is_given(tiny_model_dir, tmp_path, out):
    """Only what the request uses is decoded; without --duration the model's limit applies."""
    long = corpus.write_wav(tmp_path / "long.wav", np.zeros((121 * 4000, 1), np.float32), rate=4000)
    assert_clean_error(sdedit(tiny_model_dir, long, out), "long.wav", "longer than", "--duration")
    assert leftovers(out) == []
    result = sdedit(tiny_model_dir, long, out, "--duration", "0.3")
    assert result.returncode == 0, result.stderr
    assert read_output(out).shape == (4800,)


def test_eight_channels_at_192_khz_work_as_sdedit_init(tiny_model_dir, tmp_path, out):
    init = corpus.many_channels_high_rate_wav(tmp_path / "studio.wav")
    assert sf.info(str(init)).channels == 8 and sf.info(str(init)).samplerate == 192_000
    result = sdedit(tiny_model_dir, init, out)
    assert result.returncode == 0, result.stderr
    assert read_output(out).shape == (4800,)  # 0.3 s at the model's 16 kHz, mono


@pytest.mark.parametrize("task", ["sdedit", "inpaint"])
def test_silence_works_as_init(tiny_model_dir, tmp_path, out, task):
    init = corpus.silence_wav(tmp_path / "silence.wav", 0.5)
    extra = (["--strength", "0.3"] if task == "sdedit"
             else ["--mask", "0.1-0.3", "--task-option", "variant=blend"])
    result = generate(tiny_model_dir, "rain", "--init", init, *extra, "-o", out / "x.wav")
    assert result.returncode == 0, result.stderr
    assert read_output(out).shape == (8000,)
    assert "Traceback" not in result.stderr and "warning" not in result.stderr.lower()
