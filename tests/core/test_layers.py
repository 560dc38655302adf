"""Layers (issue 19, item 6): the core imports neither the plugins nor training; a plugin never imports training.

Every module of ``mka_core`` and ``mka_plugins`` is parsed (not imported) and each ``import`` /
``from ... import`` statement, at any depth (lazy imports inside functions count too), is
checked against the layer order  mka_core  <  mka_plugins  <  training.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: package -> the top-level packages it must never import
FORBIDDEN = {
    "mka_core": ("mka_plugins", "training"),
    "mka_plugins": ("training",),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def violations(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if module.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    assert violations(package) == []


def test_the_scanner_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    fake = tmp_path / "mka_core" / "sub"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text(
        "def later():\n    from training.recipe import Recipe\n    import mka_plugins.tasks.t2a\n"
        "from . import sibling\nfrom .. import errors\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    found = dict((m, line) for line, m in imported_modules(fake / "bad.py"))
    assert {"training.recipe", "mka_plugins.tasks.t2a", "mka_core.sub", "mka_core"} <= set(found)
    assert violations("mka_core") == [
        "mka_core/sub/bad.py:2 imports training.recipe",
        "mka_core/sub/bad.py:3 imports mka_plugins.tasks.t2a",
    ]


def test_vocoder_gan_training_lives_beside_the_vaes():
    losses = ROOT / "training" / "losses"
    assert (losses / "vocoder_discriminators.py").is_file() and (losses / "vocoder_gan.py").is_file()
    assert (losses / "discriminators.py").is_file()  # the VAE's
    vocoders = ROOT / "mka_core" / "models" / "vocoders"
    assert not list(vocoders.glob("*discriminator*")) and not list(vocoders.glob("*gan_loss*"))
