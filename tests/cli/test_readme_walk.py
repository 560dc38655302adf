"""The README's Quick tour and "From Python" block, run as written, so the README cannot rot.

The tour's lines run in order in one empty folder, each through the real CLI entry
(``mka_core.cli.main.main``, in this process; ``mka serve`` in its own). The README names the only changes: the tiny settings appended to the slow lines
(``TINY``), ``--port 0`` for ``mka serve`` (stopped once it answers), a two-second
``clip.mp4`` made here, and ``mka weights pull``, the generate line of the model it pulls and ``mka convert`` skipped
(they need the network or the released checkpoint; tests/weights/ runs the first two against a local hub).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[2] / "README.md"

#: Appended to the tour's slow lines (argparse keeps the last value), as the README says.
TINY: dict[tuple[str, ...], list[str]] = {
    ("generate", "--model"): ["--steps", "2"],
    ("data", "synth"): ["--n", "40"],
    ("train", "vae"): ["--steps", "2", "--batch-size", "2"],
    ("train", "diffusion"): ["--steps", "2", "--batch-size", "2"],
    ("eval", "train-classifier"): ["--epochs", "1", "--preset", "tiny"],
    ("eval", "--model"): ["--steps", "2"],
    ("serve",): ["--port", "0"],
}
#: Sampler steps added to the Python block's ``pipe(...)`` call (the default model's 25 take minutes here).
PYTHON_STEPS = 2
#: Lines that need files from elsewhere (the released checkpoint): the README says which.
SKIPPED = {("convert", "maa1"), ("weights", "pull"), ("generate", "--model", "ta40multi")}


def fenced_block(text: str, heading: str, language: str) -> str:
    """The first ```language block after ``heading``."""
    start = text.index(heading)
    match = re.compile(rf"^```{language}\n(.*?)^```", re.S | re.M).search(text, start)
    assert match, f"no ```{language} block after {heading!r} in the README"
    return match.group(1)


def tour_commands() -> list[list[str]]:
    block = fenced_block(README.read_text(encoding="utf-8"), "## Quick tour", "bash")
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def key_of(argv: list[str]) -> tuple[str, ...]:
    for key in sorted([*TINY, *SKIPPED], key=len, reverse=True):
        if tuple(argv[1:1 + len(key)]) == key:
            return key
    return ()


def write_clip(path: Path, seconds: float = 2.0, fps: int = 10) -> None:
    """A small H.264 clip with moving colour, standing in for the user's video."""
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for k in range(int(seconds * fps)):
        frame = np.zeros((48, 64, 3), dtype=np.uint8)
        frame[..., k % 3] = 20 * k
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def mka_argv(argv: list[str]) -> list[str]:
    assert argv[0] == "mka", f"a tour line that is not an mka command: {argv}"
    return [sys.executable, "-m", "mka_core.cli.main", *argv[1:]]


def run_serve(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Start the server as the tour does, fetch its page once, stop it with Ctrl-C."""
    proc = subprocess.Popen(mka_argv(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        url, deadline = None, time.time() + 180
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"mka serve ended before it listened: {proc.stderr.read()[-2000:]}")
            found = re.search(r"open (http://\S+)", line)
            url = found.group(1) if found else None
        assert url, "mka serve printed no address"
        with urllib.request.urlopen(url, timeout=60) as response:
            assert response.status == 200
            assert b"<html" in response.read().lower()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            stderr = proc.communicate(timeout=60)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert "Traceback" not in stderr, stderr[-2000:]


def test_the_tour_names_every_change_this_test_makes():
    keys = [key_of(argv) for argv in tour_commands()]
    assert set(TINY) | SKIPPED <= set(keys), "a tiny setting or skip no longer matches a README line"
    readme = README.read_text(encoding="utf-8")
    for extra in TINY.values():
        assert " ".join(extra) in readme, f"the README does not say that the walk appends {' '.join(extra)}"
    assert f"steps={PYTHON_STEPS}" in readme
    block = fenced_block(readme, "From Python:", "python")
    assert sum(with_tiny_steps(line) != line for line in block.splitlines()) == 1


def test_readme_quick_tour_runs_as_written(tmp_path, monkeypatch):
    from tests.conftest import run_cli

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    write_clip(tmp_path / "clip.mp4")
    monkeypatch.chdir(tmp_path)  # the lines' relative paths, as in a shell in an empty folder
    ran = []
    for argv in tour_commands():
        key = key_of(argv)
        if key in SKIPPED:
            continue
        argv = argv + TINY.get(key, [])
        if key == ("serve",):
            run_serve(argv, tmp_path, env)
            ran.append(key)
            continue
        # The console script's own entry, in this process (one interpreter start instead of twelve).
        done = run_cli(*argv[1:])
        assert done.returncode == 0, f"`{shlex.join(argv)}` failed:\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr[-3000:]
        if argv[1] == "generate" and "tiny-video" in argv:
            # The model from `mka new-model` is random, and generating with it says so.
            assert "random weights from new-model" in done.stderr, done.stderr
        ran.append(key or tuple(argv[1:2]))
    assert ("serve",) in ran
    assert (tmp_path / "out.wav").is_file() and (tmp_path / "runs" / "diff" / "export" / "model_index.json").is_file()
    assert (tmp_path / "runs" / "clf" / "classifier.json").is_file()


def with_tiny_steps(line: str) -> str:
    """``result = pipe([...], seed=0)`` -> ``result = pipe([...], seed=0, steps=PYTHON_STEPS)``, as the README says."""
    code, hash_, comment = line.partition("  #")
    match = re.match(r"^(\s*\w+ = pipe\(.*)\)\s*$", code)
    return f"{match.group(1)}, steps={PYTHON_STEPS})" + (f"  #{comment}" if hash_ else "") if match else line


def test_readme_python_block_runs_as_written(tmp_path, monkeypatch):
    import torch

    block = fenced_block(README.read_text(encoding="utf-8"), "From Python:", "python")
    *body, last = [line for line in block.splitlines() if line.strip()]
    body = [with_tiny_steps(line) for line in body]
    expression, _, comment = last.partition("#")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec("\n".join(body), namespace)
    value = eval(expression, namespace)
    # The comment states the value: `torch.Size([2, 80000]) at 16 kHz`.
    stated = re.match(r"\s*(torch\.Size\(\[[^\]]*\]\))", comment)
    assert stated, f"the README's last line states no value: {last!r}"
    assert value == eval(stated.group(1), {"torch": torch})
    if "16 kHz" in comment:
        assert namespace["result"].sample_rate == 16000
