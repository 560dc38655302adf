"""Nothing is lost on a crash: kill -9 mid-run and resume gives the uninterrupted run's weights;
SIGINT checkpoints and stops; torchrun trains with DDP (gloo) and rank 0 alone writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.checkpoint import latest_checkpoint, load_checkpoint

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MKA_LOAD_PLUGINS": ""}


def train_argv(manifest: Path, vae: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mka_core.cli.main", "train", "diffusion", "--data", str(manifest),
            "--set", f"model.vae={vae}", "--steps", "20", "--set", "run.checkpoint_every=10",
            "--set", "data.crop_frames=32", "--set", "run.batch_size=3", "--set", "optim.warmup_steps=5",
            "--set", "run.log_every=1", "--out", str(out), *extra]


def final_state(run: Path) -> dict:
    step, state = load_checkpoint(latest_checkpoint(run))
    assert step == 20
    return state


def wait_for(predicate, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_kill_9_and_resume_matches_an_uninterrupted_run(tmp_path, sound_manifest, tiny_model_dir):
    straight = tmp_path / "straight"
    done = subprocess.run(train_argv(sound_manifest, tiny_model_dir, straight), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(train_argv(sound_manifest, tiny_model_dir, crashed), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (crashed / "checkpoints" / "step-00000010" / "state.json").is_file(), proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    checkpoint = latest_checkpoint(crashed)
    assert checkpoint is not None and checkpoint.name == "step-00000010", "killed after the run had finished"

    resumed = subprocess.run(train_argv(sound_manifest, tiny_model_dir, crashed, "--resume"), env=ENV,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    a, b = final_state(straight), final_state(crashed)
    for group in ("modules", "ema"):
        flat_a = {k: v for k, v in a[group]["unet"].items() if isinstance(v, torch.Tensor)} if group == "modules" \
            else a[group]["unet"]["weights"]
        flat_b = b[group]["unet"] if group == "modules" else b[group]["unet"]["weights"]
        for key, tensor in flat_a.items():
            assert torch.allclose(tensor, flat_b[key], atol=1e-6, rtol=0), (group, key)
    # the optimiser moved on identically too
    assert a["optimizers"]["main"]["state"].keys() == b["optimizers"]["main"]["state"].keys()
    assert a["micro_batches"] == b["micro_batches"] == 20


def test_sigint_writes_a_checkpoint_and_stops_cleanly(tmp_path, sound_manifest, tiny_model_dir):
    run = tmp_path / "run"
    argv = train_argv(sound_manifest, tiny_model_dir, run)
    argv[argv.index("20")] = "100000"
    proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (run / "metrics.jsonl").is_file() and len((run / "metrics.jsonl").read_text().splitlines()) >= 3,
             proc=proc)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    checkpoint = latest_checkpoint(run)
    assert checkpoint is not None and int(checkpoint.name.split("-")[1]) >= 3
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")], "a temporary folder was left"
    assert "--resume" in stderr


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun is not installed")
def test_torchrun_two_processes_train_with_gloo_and_one_writes(tmp_path, sound_manifest, tiny_model_dir):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    run = tmp_path / "ddp"
    argv = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "mka_core.cli.main", "train", "diffusion",
            "--data", str(sound_manifest), "--set", f"model.vae={tiny_model_dir}", "--steps", "4",
            "--set", "run.checkpoint_every=4", "--set", "data.crop_frames=32", "--set", "run.batch_size=2",
            "--set", "run.log_every=1", "--out", str(run)]
    done = subprocess.run(argv, env={**ENV, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoints = sorted((run / "checkpoints").iterdir())
    assert [p.name for p in checkpoints] == ["step-00000004"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "valid/" not in line]
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # one writer, not two
    assert (run / "export" / "model_index.json").is_file()


def test_resuming_from_a_checkpoint_of_another_model_shape_is_one_sentence(tmp_path, sound_manifest, tiny_model_dir):
    from tests.conftest import assert_clean_error, run_cli

    first = tmp_path / "first"
    common = ["train", "diffusion", "--data", sound_manifest, "--set", f"model.vae={tiny_model_dir}",
              "--set", "data.crop_frames=32", "--set", "run.batch_size=2", "--set", "run.checkpoint_every=1"]
    done = run_cli(*common, "--steps", "1", "--out", first)
    assert done.returncode == 0, done.stderr
    checkpoint = latest_checkpoint(first)
    wider = run_cli(*common, "--steps", "2", "--set", "model.unet_overrides={model_channels=64}",
                    "--out", tmp_path / "second", "--resume", checkpoint)
    assert_clean_error(wider, "does not fit this run's model", str(checkpoint))
