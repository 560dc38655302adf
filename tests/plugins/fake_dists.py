"""Build throwaway distributions with real `mka` entry points on a sys.path folder.

importlib.metadata finds ``*.dist-info`` folders on ``sys.path``, so a test can create a
distribution without pip and exercise the very entry-point path that installed plugins use.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path


def make_distribution(root: Path, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
    """Write modules and a dist-info with ``[mka]`` entry points under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[mka]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


class on_sys_path:
    """Context manager putting a folder first on sys.path (and removing its modules after)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def __enter__(self):
        sys.path.insert(0, self.root)
        import importlib

        importlib.invalidate_caches()
        return self

    def __exit__(self, *exc):
        sys.path.remove(self.root)
        for name, module in list(sys.modules.items()):
            if getattr(module, "__file__", None) and str(module.__file__).startswith(self.root):
                del sys.modules[name]
