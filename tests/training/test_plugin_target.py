"""A third-party trainable target, written as docs/plugins.md shows, trains through `mka train`."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

from tests.conftest import run_cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def doc_example_module() -> types.ModuleType:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### Trainable targets"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = types.ModuleType("doc_denoiser_plugin")
    exec(compile(code, str(DOC), "exec"), module.__dict__)
    sys.modules[module.__name__] = module
    return module


def test_the_documented_target_trains_resumes_and_exports(tmp_path, sound_manifest, monkeypatch):
    from mka_core.plugins import manager

    module = doc_example_module()
    original = manager.reset_plugins

    def reset_and_register():  # run_cli resets the registry; keep the plugin registered
        original()
        manager.register_in_process(module, name="doc-denoiser")

    monkeypatch.setattr(manager, "reset_plugins", reset_and_register)
    recipe = tmp_path / "denoiser.toml"
    recipe.write_text('target = "my-denoiser"\n[run]\nmax_steps = 6\nbatch_size = 2\ncheckpoint_every = 3\n'
                      '[data]\ncrop_frames = 32\n[model]\nwidth = 8\n')
    listing = run_cli("train", "list")
    assert "my-denoiser" in listing.stdout
    run = tmp_path / "run"
    result = run_cli("train", "my-denoiser", "--recipe", recipe, "--data", sound_manifest, "--out", run)
    assert result.returncode == 0, result.stderr
    assert (run / "export" / "denoiser.safetensors").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000003", "step-00000006"]
    more = run_cli("train", "my-denoiser", "--recipe", recipe, "--data", sound_manifest, "--out", run,
                   "--resume", "--steps", "9")
    assert more.returncode == 0, more.stderr
    assert (run / "checkpoints" / "step-00000009").is_dir()
