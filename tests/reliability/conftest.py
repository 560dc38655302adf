"""Shared pieces of the reliability tests: tiny pipelines, copies to damage, a quick `generate`."""

from __future__ import annotations

import pathlib
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch

from tests.conftest import run_cli

#: Flags that keep a CLI generation to a fraction of a second on tiny models.
FAST = ("--steps", "1", "--seed", "0")


@pytest.fixture(scope="session")
def tiny_clip_model_dir(tmp_path_factory) -> Path:
    """A tiny random pipeline trained (nominally) on CLIP text embeddings: clip-image and clip-video fit it."""
    pytest.importorskip("open_clip")
    from mka_core.plugins import manager
    from mka_core.presets import build_pipeline

    manager.reset_plugins()
    folder = tmp_path_factory.mktemp("models") / "tiny-clip"
    build_pipeline("tiny", cond="clip-text", seed=0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_hifigan_model_dir(tmp_path_factory) -> Path:
    """The tiny bert pipeline with a tiny HiFi-GAN instead of Griffin-Lim (a vocoder with weights)."""
    from mka_core.plugins import manager
    from mka_core.presets import build_pipeline, build_vocoder

    manager.reset_plugins()
    pipe = build_pipeline("tiny", cond="bert", seed=0)
    pipe.vocoder = build_vocoder("hifigan", "tiny")
    pipe.config = pipe.config.model_copy(update={"vocoder": "hifigan"})
    folder = tmp_path_factory.mktemp("models") / "tiny-hifigan"
    pipe.save_pretrained(folder)
    return folder


def copy_model(source: Path, destination: Path) -> Path:
    """A private copy of a model folder that a test may damage."""
    shutil.copytree(source, destination)
    return destination


def edit_weights(file: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Rewrite a safetensors file after ``edit`` changed its tensors in place."""
    from mka_core.weights import load_safetensors, save_safetensors

    tensors = load_safetensors(file)
    edit(tensors)
    save_safetensors(tensors, file)


def generate(model: Path, *args, **kwargs):
    """``mka generate --model MODEL ARGS`` with the fast sampler settings (in this process)."""
    return run_cli("generate", "--model", model, *args, *FAST, **kwargs)


def leftovers(folder: Path) -> list[str]:
    """Outputs, temporary files or placeholders found in ``folder`` (inputs the test wrote are not counted)."""
    return sorted(p.name for p in folder.iterdir()
                  if p.suffix in (".wav", ".flac", ".json", ".png", ".tmp") or p.name.startswith("."))


class CodeRunningPickle:
    """Unpickling this object writes ``marker``: the attack that weights-only loading must stop.

    It reduces to a standard-library call, so a loader that unpickles freely would run it
    without importing anything from the tests.
    """

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.marker, "code ran while loading"))


def write_malicious_checkpoint(path: Path, marker: Path, *, legacy: bool = False) -> Path:
    """A torch.save checkpoint (zip, or the pre-1.6 pickle format) whose state dict hides the payload."""
    payload = {"state_dict": {"model.diffusion_model.out.2.bias": torch.zeros(4)}, "callbacks": CodeRunningPickle(marker)}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    assert not marker.exists()
    return path


# -- real child processes caught at a chosen point (see interrupt_harness.py) ----------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]


def start_cli(*args, pause_at: str | None = None, call: int = 1, go_file: Path | None = None,
              tiny_conversion: bool = False):
    """Start ``mka ARGS`` in a child process (stdout/stderr piped, text)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if pause_at:
        env.update(RELIABILITY_PAUSE_AT=pause_at, RELIABILITY_PAUSE_CALL=str(call))
    if go_file is not None:
        env["RELIABILITY_GO_FILE"] = str(go_file)
    if tiny_conversion:
        env["RELIABILITY_TINY_CONVERSION"] = "1"
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.interrupt_harness", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)


def wait_until_paused(proc, timeout: float = 240.0) -> None:
    """Block until the child printed PAUSED (it is then inside the paused function)."""
    import select
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line.strip() == "PAUSED":
                return
            if line == "" and proc.poll() is not None:
                break
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"the child never reached its pause point (exit {proc.returncode}): {err[-2000:]}")


def finish(proc, timeout: float = 120.0) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
