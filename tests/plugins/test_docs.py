"""Meta-tests: every hook is documented with its exact signature and exercised by a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from mka_core.plugins import hookspecs
from mka_core.plugins.manager import HOOK_KINDS

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")


def hook_functions():
    return {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")}


def test_every_hook_is_known_to_the_manager():
    assert set(hook_functions()) == set(HOOK_KINDS)


def test_every_hook_has_a_doc_entry_with_its_signature():
    for name, fn in hook_functions().items():
        signature = f"{name}{inspect.signature(fn)}"
        assert f"### {signature}" in DOC, f"docs/plugins.md lacks a '### {signature}' entry"
        section = DOC.split(f"### {signature}", 1)[1].split("###", 1)[0]
        first_line = inspect.getdoc(fn).splitlines()[0].replace("``", "`")  # reST -> Markdown quoting
        assert first_line in section, f"the doc entry of {name} does not match its docstring"


def test_every_hook_is_exercised_by_a_test():
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py") if p.name != "test_docs.py")
    sources += "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "examples").rglob("*.py"))
    for name in hook_functions():
        assert re.search(rf"def {name}\(register\)", sources), f"no test implements the hook {name}"
