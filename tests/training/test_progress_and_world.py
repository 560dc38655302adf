"""What `mka train` tells a person: plain progress lines when stderr is a log file, the world
size and backend under torchrun, losses averaged over ranks, and a note when a checkpoint
resumes with another effective batch."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from training.checkpoint import latest_checkpoint, load_checkpoint
from training.progress import TrainProgress

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MKA_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1"}
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))


def tiny_run(manifest: Path, vae: Path, out: Path, steps: int) -> list[str]:
    return ["train", "diffusion", "--data", str(manifest), "--set", f"model.vae={vae}", "--steps", str(steps),
            "--set", "data.crop_frames=32", "--set", "run.batch_size=2", "--set", "run.checkpoint_every=2",
            "--out", str(out)]


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_plain_lines_at_the_first_and_last_step_and_each_interval():
    stream = _Stream(tty=False)
    with TrainProgress(True, 5, 0, stream=stream, interval=3600) as progress:
        for step in range(1, 6):
            progress.update(step, {"loss": 0.5 / step, "kl": 2.0})
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["mka train: step 1/5 (20.0%)", "mka train: step 5/5 (100.0%)"]
    assert "loss 0.5" in lines[0] and "kl 2" in lines[0] and "steps/s" in lines[0] and "ETA" in lines[0]
    assert "done in" in lines[1]

    every = _Stream(tty=False)
    with TrainProgress(True, 3, 0, stream=every, interval=0) as progress:
        for step in range(1, 4):
            progress.update(step, {"loss": 1.0})
    assert len(every.getvalue().splitlines()) == 3


def test_no_plain_lines_on_a_terminal_or_off_rank_0():
    for stream, enabled in ((_Stream(tty=True), True), (_Stream(tty=False), False)):
        with TrainProgress(enabled, 2, 0, stream=stream, interval=0) as progress:
            progress.update(1, {"loss": 1.0})
            progress.update(2, {"loss": 1.0})
        assert "mka train: step" not in stream.getvalue()


def test_a_resumed_run_counts_from_its_checkpoint():
    stream = _Stream(tty=False)
    with TrainProgress(True, 10, 6, stream=stream, interval=3600) as progress:
        for step in range(7, 11):
            progress.update(step, {})
    assert [line.split(",")[0] for line in stream.getvalue().splitlines()] == [
        "mka train: step 7/10 (70.0%)", "mka train: step 10/10 (100.0%)"]


def test_redirected_mka_train_prints_progress_lines(tmp_path, sound_manifest, tiny_model_dir):
    done = subprocess.run([sys.executable, "-m", "mka_core.cli.main",
                           *tiny_run(sound_manifest, tiny_model_dir, tmp_path / "run", 3)],
                          env={**ENV, "MKA_PROGRESS_SECONDS": "0"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("mka train: step")]
    assert [line.split(",")[0].split(" (")[0] for line in lines] == [f"mka train: step {i}/3" for i in (1, 2, 3)]
    assert all("loss " in line and "steps/s" in line for line in lines), lines


def _reduce_worker(rank: int, init_file: str, results) -> None:
    import torch
    import torch.distributed as dist

    from training.distributed import DistInfo, all_reduce_logs

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        info = DistInfo(rank=rank, world=2, backend="gloo")
        results.put((rank, all_reduce_logs({"loss": 1.0 + rank, "kl": 10.0 * rank}, info, torch.device("cpu"))))
    finally:
        dist.destroy_process_group()


def test_logged_values_are_the_mean_over_ranks(tmp_path):
    context = mp.get_context("spawn")
    results = context.Queue()
    procs = [context.Process(target=_reduce_worker, args=(rank, str(tmp_path / "init"), results)) for rank in (0, 1)]
    for proc in procs:
        proc.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert got[0] == got[1] == {"loss": 1.5, "kl": 5.0}
    assert list(got[0]) == ["loss", "kl"]  # the target's order is kept for display


@pytest.mark.skipif(not Path(TORCHRUN).exists() and shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_torchrun_reports_its_world_and_a_one_process_resume_warns(tmp_path, sound_manifest, tiny_model_dir):
    run = tmp_path / "ddp"
    ddp = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "mka_core.cli.main",
                          *tiny_run(sound_manifest, tiny_model_dir, run, 2)],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    world_lines = [line for line in ddp.stdout.splitlines() if line.startswith("distributed:")]
    assert len(world_lines) == 1, ddp.stdout  # rank 0 alone
    assert "2 processes" in world_lines[0] and "backend gloo" in world_lines[0]
    assert "2 per process = 4 samples per step" in world_lines[0]
    _, state = load_checkpoint(latest_checkpoint(run))
    assert state["batch_shape"] == {"world_size": 2, "batch_size_per_rank": 2, "grad_accum": 1}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "valid/" not in line]
    assert [r["step"] for r in records] == [2]  # the last step is always logged, by rank 0 alone

    resumed = subprocess.run([sys.executable, "-m", "mka_core.cli.main",
                              *tiny_run(sound_manifest, tiny_model_dir, run, 3), "--resume"],
                             env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    notes = [line for line in resumed.stderr.splitlines() if "effective batch changed" in line]
    assert len(notes) == 1 and notes[0].startswith("mka: warning:"), resumed.stderr
    assert "= 4 samples per step" in notes[0] and "= 2 samples per step" in notes[0]
    assert "distributed:" not in resumed.stdout
    _, state = load_checkpoint(latest_checkpoint(run))
    assert state["batch_shape"]["world_size"] == 1
