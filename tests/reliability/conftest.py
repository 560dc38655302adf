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


# -- real CLI processes caught at a chosen point (see interrupt_harness.py) ---------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The longest any wait on a child may take; a child that misses it is killed and the test fails.
WAIT_SECONDS = 120.0


class CliRun:
    """One `mka` process forked by the launcher; its output goes to files in ``folder``."""

    def __init__(self, launcher: "Launcher", run: int, folder: Path) -> None:
        self.launcher, self.run, self.folder = launcher, run, folder
        self.code: int | None = None
        self.pid: int = launcher.next_event(run, "pid", WAIT_SECONDS)["pid"]

    def output(self) -> tuple[str, str]:
        return tuple((self.folder / name).read_text(errors="replace") for name in ("stdout", "stderr"))

    def wait_until_paused(self, timeout: float = WAIT_SECONDS) -> None:
        """Return once the child is inside its paused function; fail (killing it) otherwise."""
        event = self.launcher.next_event(self.run, ("paused", "exit"), timeout, on_timeout=self.kill)
        if "exit" in event:
            self.code = event["exit"]
            raise AssertionError(f"the child ended (exit {self.code}) before its pause point: {self.output()[1][-2000:]}")

    def send(self, sig: int) -> None:
        """Send ``sig`` to the child (only while it is known to be alive: paused, not yet reaped)."""
        import os

        os.kill(self.pid, sig)

    def release(self) -> None:
        """Let a paused child go on."""
        import signal

        self.send(signal.SIGUSR1)

    def finish(self, timeout: float = WAIT_SECONDS) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) once the child ended; a child that does not end is killed."""
        if self.code is None:
            self.code = self.launcher.next_event(self.run, "exit", timeout, on_timeout=self.kill)["exit"]
        return (self.code, *self.output())

    def kill(self) -> None:
        """SIGKILL the child unless it already ended, and wait until it is gone."""
        if self.code is None:
            self.launcher.request({"kill": self.run})
            self.code = self.launcher.next_event(self.run, "exit", WAIT_SECONDS)["exit"]


class Launcher:
    """The test side of interrupt_harness: one warm launcher process that forks a child per run."""

    def __init__(self, folder: Path) -> None:
        import itertools
        import os
        import subprocess
        import sys
        import threading

        self.folder = folder
        self._numbers = itertools.count(1)
        self._queues: dict = {}
        self._lock = threading.Lock()
        self._closed = False
        # One compute thread per child: the runs of a test go side by side on a small machine, and
        # OpenMP threads of several processes spinning for the same cores made tiny runs take
        # seconds instead of a fraction of one. (How many threads compute changes nothing here.)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with open(folder / "launcher.log", "wb") as log:
            # Its own session: a Ctrl-C at the terminal reaches the test runner only, which then
            # closes the launcher (and so every child) in its teardown.
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.interrupt_harness"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=REPO_ROOT,
                                         env=env, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name="launcher-events", daemon=True)
        self._reader.start()
        self._ready = False  # waited for at the first start, so the imports overlap other fixtures

    def wait_ready(self) -> None:
        if not self._ready:
            self.next_event(None, "ready", 180.0, on_timeout=self.close)
            self._ready = True

    def _queue(self, run):
        import queue

        with self._lock:
            if run not in self._queues:
                self._queues[run] = queue.Queue()
                if self._closed:
                    self._queues[run].put({"eof": True})
            return self._queues[run]

    def _read(self) -> None:
        import json

        for line in self.proc.stdout:
            event = json.loads(line)
            self._queue(event.get("run")).put(event)
        with self._lock:
            self._closed = True
            for waiting in self._queues.values():
                waiting.put({"eof": True})

    def next_event(self, run, kinds, timeout: float, on_timeout=None) -> dict:
        """The next event of ``run`` of one of ``kinds`` (earlier events of other kinds are skipped)."""
        import queue
        import time

        kinds = (kinds,) if isinstance(kinds, str) else kinds
        deadline = time.monotonic() + timeout
        waiting = self._queue(run)
        while True:
            try:
                event = waiting.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                if on_timeout is not None:
                    on_timeout()
                raise AssertionError(f"no {'/'.join(kinds)} event from run {run} within {timeout:.0f} s") from None
            if "eof" in event:
                log = (self.folder / "launcher.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"the launcher ended (waiting for {'/'.join(kinds)} of run {run}): {log}")
            if any(kind in event for kind in kinds):
                return event

    def request(self, message: dict) -> None:
        import json

        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def start(self, *args, pause_at: str | None = None, call: int = 1, tiny_conversion: bool = False) -> CliRun:
        """Fork ``mka ARGS``, optionally paused on the ``call``-th call of ``pause_at`` (module:qualname)."""
        self.wait_ready()
        run = next(self._numbers)
        run_folder = self.folder / f"run-{run}"  # the child's stdout and stderr, kept out of the test's folders
        run_folder.mkdir()
        self.request({"run": run, "argv": [str(a) for a in args], "stdout": str(run_folder / "stdout"),
                      "stderr": str(run_folder / "stderr"), "pause_at": pause_at, "call": call,
                      "tiny_conversion": tiny_conversion})
        return CliRun(self, run, run_folder)

    def close(self) -> None:
        import subprocess

        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()  # the launcher kills every child left, then exits
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=10)


@pytest.fixture(scope="session")
def launcher(tmp_path_factory):
    started = Launcher(tmp_path_factory.mktemp("launcher"))
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def cli(launcher):
    """``cli(*ARGS, pause_at=..., call=..., tiny_conversion=...)`` starts a real `mka` process.

    Every process a test started is killed (if still running) when the test ends, pass or fail.
    """
    runs: list[CliRun] = []

    def start(*args, **options) -> CliRun:
        runs.append(launcher.start(*args, **options))
        return runs[-1]

    try:
        yield start
    finally:
        for run in runs:
            run.kill()
