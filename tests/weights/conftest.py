"""A local hub serving the released repositories' layouts (tiny widths), reached through HF_ENDPOINT.

Each test gets a fresh ``MKA_HOME`` and Hugging Face cache, and a hub whose repositories are
built once per session (:mod:`tests.weights._tiny_release`). The network switches the suite
sets (HF_HUB_OFFLINE=1, MKA_OFFLINE=1) are lifted for these tests only: the one "network" here
is 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.weights._local_hub import LocalHub


@pytest.fixture(scope="session")
def released():
    from tests.weights._tiny_release import released_repos

    return released_repos(seed=0)


@pytest.fixture
def hub(released, tmp_path, monkeypatch):
    import huggingface_hub.constants

    server = LocalHub(released)
    url = server.start()
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("MKA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("MKA_OFFLINE", "0")
    monkeypatch.delenv("MKA_ALLOW_NETWORK", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield server
    server.stop()


def home_files(tmp_path: Path) -> list[str]:
    """Every file and folder under MKA_HOME, relative (hidden partial folders included)."""
    root = tmp_path / "home"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def blobs(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "hf" / "hub").rglob("blobs/*")] if (tmp_path / "hf").exists() else []
