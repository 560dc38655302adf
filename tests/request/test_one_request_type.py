"""One request type: the CLI, the sidecar, the server and the Python API share mka_core.request; the server
and the output writers sit below the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import mka_core
from mka_core.outputs.sidecar import Sidecar
from mka_core.request import GenerationRequest, RequestSettings
from mka_core.serve.requests import JobRequest

ROOT = Path(mka_core.__file__).parent


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_server_and_the_writers_import_nothing_from_the_cli():
    for folder in ("serve", "outputs"):
        for path in sorted((ROOT / folder).glob("*.py")):
            cli = sorted(m for m in imported_modules(path) if m == "mka_core.cli" or m.startswith("mka_core.cli."))
            assert not cli, f"{path.relative_to(ROOT)} imports {cli}"


def test_every_shape_of_a_request_is_the_one_model():
    assert mka_core.GenerationRequest is GenerationRequest
    assert Sidecar.model_fields["request"].annotation is GenerationRequest
    assert issubclass(JobRequest, RequestSettings) and issubclass(GenerationRequest, RequestSettings)
    for path in (ROOT / "cli" / "generate.py", ROOT / "serve" / "runtime.py", ROOT / "generate.py"):
        assert "mka_core.request" in imported_modules(path), path
    assert not (ROOT / "cli" / "sidecar.py").exists() and not (ROOT / "cli" / "output_files.py").exists()
