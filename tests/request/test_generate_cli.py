"""`mka generate` says what it is doing: loading the model, the precision that runs, its share under torchrun."""

from __future__ import annotations

import json

from tests.conftest import assert_clean_error, run_cli

SHORT = ("--duration", "0.3", "--steps", "1", "--seed", "0")


def test_a_line_on_stderr_while_the_model_loads(tiny_model_dir, tmp_path):
    result = run_cli("generate", "--model", tiny_model_dir, "a bell", *SHORT, "-o", tmp_path / "a.wav")
    assert result.returncode == 0, result.stderr
    assert f"mka: loading the model {tiny_model_dir}" in result.stderr


def test_float16_on_a_cpu_warns_that_it_is_slow_and_the_sidecar_says_float16(tiny_model_dir, tmp_path):
    result = run_cli("generate", "--model", tiny_model_dir, "a bell", *SHORT, "--device", "cpu", "--dtype", "float16",
                     "-o", tmp_path / "a.wav")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("mka: warning:")]
    assert any("float16 on a CPU is much slower than float32" in line for line in warnings), result.stderr
    runtime = json.loads((tmp_path / "a.wav.json").read_text())["runtime"]
    assert runtime == {"device": "cpu", "dtype": "float16", "requested_dtype": None}


def test_bfloat16_on_a_cpu_without_it_warns_and_the_sidecar_records_float32(tiny_model_dir, tmp_path, monkeypatch):
    from mka_core.models import precision

    # This machine's CPU may have bfloat16 instructions: play one without them.
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    monkeypatch.delenv(precision.FORCE_ENV, raising=False)
    result = run_cli("generate", "--model", tiny_model_dir, "a bell", *SHORT, "--device", "cpu", "--dtype", "bfloat16",
                     "-o", tmp_path / "a.wav")
    assert result.returncode == 0, result.stderr
    assert "mka: warning: bfloat16 was requested, but this CPU has no bfloat16 instructions, so mka runs float32" \
        in result.stderr
    runtime = json.loads((tmp_path / "a.wav.json").read_text())["runtime"]
    assert runtime == {"device": "cpu", "dtype": "float32", "requested_dtype": "bfloat16"}


def test_float32_on_a_cpu_has_no_precision_warning(tiny_model_dir, tmp_path):
    result = run_cli("generate", "--model", tiny_model_dir, "a bell", *SHORT, "--device", "cpu", "-o", tmp_path / "a.wav")
    assert result.returncode == 0, result.stderr
    assert "float16" not in result.stderr and "bfloat16" not in result.stderr


def test_under_torchrun_a_seed_is_required(tiny_model_dir, tmp_path):
    result = run_cli("generate", "--model", tiny_model_dir, "a", "b", "--duration", "0.3", "-o", tmp_path / "out/",
                     env={"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    assert_clean_error(result, "torchrun", "--seed")
    assert not (tmp_path / "out").exists()


def test_a_rank_with_nothing_to_make_exits_cleanly_without_loading(tiny_model_dir, tmp_path):
    # One output, two processes: rank 0's share is empty.
    result = run_cli("generate", "--model", tiny_model_dir, "a bell", *SHORT, "-o", tmp_path / "out/",
                     env={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert result.returncode == 0, result.stderr
    assert "rank 0 of 2 has no outputs to make" in result.stderr and "loading" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_sampler_and_conditioner_options_are_one_sentence(tiny_model_dir, tmp_path):
    bad_sampler = run_cli("generate", "--model", tiny_model_dir, "a bell", *SHORT, "--sampler-option", "bogus=1",
                          "-o", tmp_path / "a.wav")
    assert_clean_error(bad_sampler, "bogus")
    bad_task = run_cli("generate", "--model", tiny_model_dir, "a bell", *SHORT, "--task", "sdedit",
                       "--task-option", "strength=7", "-o", tmp_path / "a.wav")
    assert_clean_error(bad_task, "strength")
    assert not (tmp_path / "a.wav").exists()
