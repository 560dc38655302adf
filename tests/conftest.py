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
