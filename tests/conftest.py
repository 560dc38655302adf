"""Test-wide settings: offline, built-in plugins only, a private MKA_HOME.

These environment variables are set before anything imports transformers or
huggingface_hub (they read them at import time) and are inherited by every CLI
subprocess a test starts.
"""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MKA_OFFLINE"] = "1"
os.environ["MKA_LOAD_PLUGINS"] = ""  # never pick up plugins installed on the machine
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("MKA_HOME", tempfile.mkdtemp(prefix="mka-home-"))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_plugin_state():
    """Each test sees the plugin registry as the environment defines it."""
    from mka_core.plugins import manager

    manager.reset_plugins()
    yield
    manager.reset_plugins()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random pipeline folder (bert conditioner, Griffin-Lim), made once per session."""
    from mka_core.plugins import manager
    from mka_core.presets import build_pipeline

    manager.reset_plugins()
    folder = tmp_path_factory.mktemp("models") / "tiny-bert"
    build_pipeline("tiny", cond="bert", seed=0).save_pretrained(folder)
    return folder


class CliResult:
    """What a CLI run produced (the fields of subprocess.CompletedProcess that tests use)."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(*args: str, env: dict | None = None, cwd=None, subprocess_run: bool = False):
    """Run the `mka` CLI with ARGS.

    By default in this process through `mka_core.cli.main.main` (the console script's own entry,
    so error handling is identical, without paying for a new interpreter and torch import per
    call); `subprocess_run=True` starts `python -m mka_core.cli.main` for tests that need a real
    process (signals, pip installs, environment seen at import time).
    """
    import contextlib
    import io
    import subprocess
    import sys

    if subprocess_run or cwd is not None:
        done = subprocess.run([sys.executable, "-m", "mka_core.cli.main", *map(str, args)], capture_output=True,
                              text=True, env={**os.environ, **(env or {})}, cwd=cwd)
        return CliResult(done.returncode, done.stdout, done.stderr)
    from mka_core.cli.main import main
    from mka_core.plugins import manager

    saved = {key: os.environ.get(key) for key in (env or {})}
    os.environ.update(env or {})
    manager.reset_plugins()
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:  # argparse usage errors and --help
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        manager.reset_plugins()
    return CliResult(int(code), out.getvalue(), err.getvalue())


def assert_clean_error(result, *fragments: str) -> None:
    """A user error: non-zero exit, one `mka: error:` line, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("mka: error:"), result.stderr
    for fragment in fragments:
        assert fragment.lower() in result.stderr.lower(), (fragment, result.stderr)
