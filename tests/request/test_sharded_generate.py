"""`mka generate --prompts FILE` under torchrun writes exactly the files one process writes."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(args: list[str], cwd, launcher: list[str]) -> subprocess.CompletedProcess:
    # torchrun gives each process one CPU thread (OMP_NUM_THREADS=1); the single run gets the
    # same, since a CPU's arithmetic depends on how many threads share a reduction.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    return subprocess.run([*launcher, "generate", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_two_processes_write_the_files_and_sidecars_of_one(tiny_model_dir, tmp_path):
    candidates = 2
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog barking\nbell ringing\nwind in the trees\n", encoding="utf-8")
    args = ["--model", str(tiny_model_dir), "--prompts", str(prompts), "-n", str(candidates), "--seed", "11",
            "--duration", "0.3", "--steps", "2", "--spectrogram", "-o", "out/"]
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    single.mkdir()
    sharded.mkdir()
    one = _run(args, single, [sys.executable, "-m", "mka_core.cli.main"])
    assert one.returncode == 0, one.stderr
    two = _run(args, sharded, [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               "-m", "mka_core.cli.main"])
    assert two.returncode == 0, two.stdout + two.stderr
    assert "rank 0 of 2" in two.stdout and "rank 1 of 2" in two.stdout
    expected = sorted(p.name for p in (single / "out").iterdir())
    assert len(expected) == 3 * candidates * 3  # wav, json, png per output
    assert sorted(p.name for p in (sharded / "out").iterdir()) == expected
    for name in expected:
        assert (sharded / "out" / name).read_bytes() == (single / "out" / name).read_bytes(), name
