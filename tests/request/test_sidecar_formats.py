"""Sidecars record the GenerationRequest as it ran; sidecars written before it (format 1) still replay."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from mka_core.outputs.sidecar import file_sha256
from tests.conftest import assert_clean_error, run_cli

#: A format-1 sidecar exactly as mka wrote it before the GenerationRequest (request in the
#: RecordedRequest shape: init {path, sha256}, device and dtype inside the request).
OLD_SIDECAR = """{
  "format": "mka-generation",
  "format_version": 1,
  "mka_version": "0.1.0",
  "file": "old.wav",
  "index": 1,
  "input_index": 1,
  "candidate": 0,
  "seed": 8,
  "input": "rain on a tin roof",
  "model": {"path": "MODEL", "index_sha256": null},
  "request": {
    "inputs": ["a bell", "rain on a tin roof"],
    "cond": "bert",
    "task": "sdedit",
    "task_options": {"strength": 0.5},
    "init": {"path": "INIT", "sha256": "INIT_SHA"},
    "mask": null,
    "duration": 0.3,
    "steps": 2,
    "sampler": "dpm++2m",
    "guidance": 3.0,
    "seed": SEED,
    "n": 1,
    "device": "cpu",
    "dtype": "float32"
  },
  "sample_rate": 16000,
  "num_samples": 4800,
  "duration": 0.3,
  "rank": null,
  "score": null,
  "metadata": {"task": "sdedit", "input": "rain on a tin roof", "input_index": 1, "candidate": 0, "seed": 8}
}
"""


@pytest.fixture()
def init_wav(tmp_path):
    path = tmp_path / "init.wav"
    t = np.arange(8000) / 16000
    sf.write(path, 0.3 * np.sin(2 * np.pi * 330 * t), 16000)
    return path


def old_sidecar(tmp_path, model, init, seed=7) -> str:
    text = (OLD_SIDECAR.replace("MODEL", str(model)).replace("INIT_SHA", file_sha256(init))
            .replace("INIT", str(init)).replace("SEED", str(seed)))
    path = tmp_path / "old.wav.json"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_format_1_sidecar_replays_the_output_it_describes(tiny_model_dir, init_wav, tmp_path):
    made = run_cli("generate", "--model", tiny_model_dir, "a bell", "rain on a tin roof", "--init", init_wav,
                   "--strength", "0.5", "--duration", "0.3", "--steps", "2", "--seed", "7", "-o", tmp_path / "new/")
    assert made.returncode == 0, made.stderr
    replayed = run_cli("generate", "--replay", old_sidecar(tmp_path, tiny_model_dir, init_wav), "-o",
                       tmp_path / "again.wav")
    assert replayed.returncode == 0, replayed.stderr
    expected, _ = sf.read(tmp_path / "new" / "rain-on-a-tin-roof_8.wav")
    assert np.array_equal(sf.read(tmp_path / "again.wav")[0], expected)
    # The replay's own sidecar is format 2: the request as a GenerationRequest, the files and runtime apart.
    sidecar = json.loads((tmp_path / "again.wav.json").read_text())
    assert sidecar["format_version"] == 2 and sidecar["index"] == 1 and sidecar["seed"] == 8
    assert sidecar["request"]["init_audio"] == str(init_wav) and sidecar["request"]["seed"] == 7
    assert sidecar["files"] == {str(init_wav.resolve()): file_sha256(init_wav)}
    assert sidecar["runtime"]["device"] == "cpu" and sidecar["runtime"]["dtype"] == "float32"


def test_a_format_1_sidecar_whose_init_audio_changed_says_so(tiny_model_dir, init_wav, tmp_path):
    sidecar = old_sidecar(tmp_path, tiny_model_dir, init_wav)
    sf.write(init_wav, np.zeros(8000), 16000)
    assert_clean_error(run_cli("generate", "--replay", sidecar, "-o", tmp_path / "x.wav"), "changed since")


def test_a_format_1_sidecar_outside_todays_rules_says_exactly_why(tiny_model_dir, init_wav, tmp_path):
    # mka before the GenerationRequest accepted --seed -1; the seed rule now refuses it, by name.
    sidecar = old_sidecar(tmp_path, tiny_model_dir, init_wav, seed=-1)
    result = run_cli("generate", "--replay", sidecar, "-o", tmp_path / "x.wav")
    assert_clean_error(result, "old.wav.json", "seed -1", "out of range")


def test_a_sidecar_from_a_newer_mka_is_refused(tmp_path):
    path = tmp_path / "new.json"
    path.write_text(json.dumps({"format": "mka-generation", "format_version": 3}), encoding="utf-8")
    assert_clean_error(run_cli("generate", "--replay", path), "newer mka")


def test_a_new_sidecar_records_exactly_the_request_and_replays(tiny_model_dir, tmp_path):
    made = run_cli("generate", "--model", tiny_model_dir, "a bell", "-n", "2", "--duration", "0.3", "--steps", "2",
                   "--guidance", "2.5", "--sampler-option", "spacing=linear", "--seed", "3", "-o", tmp_path / "out/")
    assert made.returncode == 0, made.stderr
    sidecar = json.loads((tmp_path / "out" / "a-bell_4.wav.json").read_text())
    assert sidecar["request"] == {
        "cond": "bert", "cond_options": {}, "task": "t2a", "task_options": {}, "sampler": "dpm++2m",
        "sampler_options": {"spacing": "linear"}, "steps": 2, "guidance": 2.5, "duration": 0.3, "seed": 3, "n": 2,
        "inputs": ["a bell"], "init_audio": None, "mask": None,
        "output": {"out": str(tmp_path / "out/"), "spectrogram": False},
    }
    assert (sidecar["index"], sidecar["seed"], sidecar["files"]) == (1, 4, {})
    again = run_cli("generate", "--replay", tmp_path / "out" / "a-bell_4.wav.json", "-o", tmp_path / "again.wav")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.wav").read_bytes() == (tmp_path / "out" / "a-bell_4.wav").read_bytes()


def test_files_given_by_relative_path_are_recorded_absolute_and_replay_from_elsewhere(tiny_model_dir, init_wav,
                                                                                        tmp_path):
    made = run_cli("generate", "--model", tiny_model_dir, "rain", "--init", init_wav.name, "--mask", "0.1-0.2",
                   "--task-option", "variant=blend", "--duration", "0.3", "--steps", "2", "--seed", "1", "-o",
                   "edit.wav", cwd=init_wav.parent)
    assert made.returncode == 0, made.stderr
    sidecar = json.loads((init_wav.parent / "edit.wav.json").read_text())
    assert sidecar["request"]["init_audio"] == str(init_wav.resolve()) and sidecar["request"]["task"] == "inpaint"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = run_cli("generate", "--replay", init_wav.parent / "edit.wav.json", "-o", "again.wav", cwd=elsewhere)
    assert again.returncode == 0, again.stderr
    assert (elsewhere / "again.wav").read_bytes() == (init_wav.parent / "edit.wav").read_bytes()
