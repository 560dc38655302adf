"""Runs writing into one folder at once never overwrite each other's files.

Output names are reserved with ``O_CREAT | O_EXCL`` (mka_core/outputs/files.py): the kernel
lets exactly one process create a name. Two real `mka generate` processes are released at
the same instant into the reservation of the same name; many processes then race for one
name directly.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import soundfile as sf

from mka_core.outputs.files import OutputFiles


def test_two_generate_runs_into_one_folder_keep_both_outputs(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    args = ("generate", "--model", tiny_model_dir, "rain", "--duration", "0.3", "--steps", "1", "--seed", "7",
            "-o", f"{out}/")
    runs = [cli(*args, pause_at="mka_core.outputs.files:OutputFiles.publish_unique") for _ in range(2)]
    for run in runs:
        run.wait_until_paused()
    for run in runs:
        run.release()  # both publish under the same name, rain_7.wav, at once
    results = [run.finish() for run in runs]
    for code, _, err in results:
        assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["rain_7-2.wav", "rain_7-2.wav.json", "rain_7.wav", "rain_7.wav.json"]
    for wav in ("rain_7.wav", "rain_7-2.wav"):
        assert sf.info(str(out / wav)).frames == 4800
        assert json.loads((out / f"{wav}.json").read_text())["file"] == wav


def _publish_many(folder: str, start, count: int, queue) -> None:
    start.wait()
    files = OutputFiles()
    names = []
    for _ in range(count):
        audio = f"audio of {os.getpid()} #{len(names)}".encode()
        path = files.publish_unique(Path(folder), "rain", 0, audio, lambda path: {".json": path.name.encode()})
        names.append(path.name)
    queue.put(names)


def test_processes_racing_for_one_name_each_get_their_own(tmp_path):
    context = multiprocessing.get_context("fork")
    processes, per_process = 8, 12
    start, queue = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_publish_many, args=(str(tmp_path), start, per_process, queue))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    names = [name for _ in workers for name in queue.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len(names) == len(set(names)) == processes * per_process
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names + [f"{name}.json" for name in names])
    for name in names:  # each file is whole and the sidecar made for its name sits beside it
        assert (tmp_path / name).read_bytes().startswith(b"audio of ")
        assert (tmp_path / f"{name}.json").read_text() == name
    assert "rain_0.wav" in names and f"rain_0-{processes * per_process}.wav" in names
