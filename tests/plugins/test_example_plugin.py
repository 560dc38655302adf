"""The example third-party plugin, installed with pip for real and used through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mka-example-plugin"


def mka(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mka_core.cli.main", *args], env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def installed_example():
    """`mka install` / `mka uninstall` run pip in mka's own interpreter."""
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    installed = mka("install", "--no-deps", str(EXAMPLE), env=env)
    assert installed.returncode == 0, installed.stderr
    try:
        yield
    finally:
        removed = mka("uninstall", "mka-example-plugin", env=env)
        assert removed.returncode == 0, removed.stderr


def test_example_plugin_installs_lists_and_generates(installed_example, tmp_path):
    env = {**os.environ, "MKA_LOAD_PLUGINS": "mka-example-plugin"}
    listing = mka("plugins", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(listing.stdout)["installed"]}
    assert rows[("conditioner", "trigram-text")]["distribution"] == "mka-example-plugin"
    assert rows[("task", "continue")]["distribution"] == "mka-example-plugin"

    model = tmp_path / "model"
    made = mka("new-model", "--preset", "tiny", "--cond", "trigram-text", "--out", str(model), env=env)
    assert made.returncode == 0, made.stderr
    out = tmp_path / "bell.wav"
    gen = mka("generate", "--model", str(model), "--cond", "trigram-text", "a bell ringing", "--duration", "1.5",
              "--steps", "3", "--seed", "1", "-o", str(out), env=env)
    assert gen.returncode == 0, gen.stderr
    audio, rate = sf.read(out)
    assert rate == 16000 and audio.shape == (24000,)

    longer = tmp_path / "longer.wav"
    cont = mka("generate", "--model", str(model), "--task", "continue", "--init", str(out), "--duration", "3",
               "--steps", "3", "--seed", "2", "a bell ringing", "-o", str(longer), env=env)
    assert cont.returncode == 0, cont.stderr
    continued, _ = sf.read(longer)
    assert continued.shape == (48000,)
    # TaskOutput.metadata reaches the sidecar; a plugin's warnings.warn is one `mka: warning:` line.
    assert json.loads(Path(f"{longer}.json").read_text())["metadata"]["continue_kept_seconds"] == [1.5]
    kept = mka("generate", "--model", str(model), "--task", "continue", "--init", str(out), "--duration", "2",
               "--task-option", "keep=9", "--steps", "2", "--seed", "2", "-o", str(tmp_path / "kept.wav"), env=env)
    assert kept.returncode == 0, kept.stderr
    assert "mka: warning: continue: the init audio is shorter than keep=9 s" in kept.stderr
    assert "Traceback" not in kept.stderr

    # Without the allow-list entry the plugin stays out, and mka says what is missing.
    hidden = mka("generate", "--model", str(model), "--cond", "trigram-text", "x", "-o", str(tmp_path / "x.wav"),
                 env={**os.environ, "MKA_LOAD_PLUGINS": ""})
    assert hidden.returncode != 0 and "trigram-text" in hidden.stderr and "Traceback" not in hidden.stderr
