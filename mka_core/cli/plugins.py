"""`mka plugins`, `mka install`, `mka uninstall`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from mka_core.cli.command import Command
from mka_core.errors import InputError

CATALOGUE = Path(__file__).resolve().parents[2] / "plugin_registry.toml"


def load_catalogue(path: Path = CATALOGUE) -> dict[str, Any]:
    """The catalogue of built-in plugins and public weight sets (``plugin_registry.toml``)."""
    if not path.is_file():
        from importlib import resources

        try:  # installed as a wheel: the catalogue ships inside the package
            return tomllib.loads(resources.files("mka_core").joinpath("plugin_registry.toml").read_text())
        except (FileNotFoundError, ModuleNotFoundError):
            return {"plugin": [], "weights": []}
    return tomllib.loads(path.read_text(encoding="utf-8"))


def installed_rows() -> list[dict[str, Any]]:
    from mka_core.plugins import manager

    rows = []
    for kind in manager.KINDS:
        for reg in sorted(manager.registrations(kind), key=lambda r: r.name):
            row = {"name": reg.name, "kind": kind, "distribution": reg.distribution, "version": reg.version,
                   "plugin": reg.plugin, "summary": getattr(reg.obj, "summary", "") or getattr(reg.obj, "help", "")}
            if kind == "conditioner":
                row["input"] = getattr(reg.obj, "input_kind", "")
                row["space"] = getattr(reg.obj, "space_summary", "")
            rows.append(row)
    return rows


def collect(available: bool) -> dict[str, Any]:
    from mka_core.plugins import manager

    reg = manager.registry()
    result: dict[str, Any] = {
        "installed": installed_rows(),
        "failures": [{"plugin": f.plugin, "distribution": f.distribution, "message": f.message} for f in reg.failures],
    }
    if available:
        installed = {(r["kind"], r["name"]) for r in result["installed"]}
        catalogue = load_catalogue()
        result["available"] = [
            {**entry, "installed": (entry.get("kind"), entry.get("name")) in installed}
            for entry in catalogue.get("plugin", [])
        ]
    return result


def add_plugins_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--available", action="store_true", help="also list the catalogue of known plugins")


def run_plugins(args: argparse.Namespace) -> int:
    data = collect(args.available)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="Installed plugins")
    for column in ("name", "kind", "input", "space", "distribution", "version"):
        table.add_column(column)
    for row in data["installed"]:
        table.add_row(row["name"], row["kind"], row.get("input", ""), row.get("space", ""), row["distribution"], row["version"])
    console.print(table)
    if data.get("available"):
        cat = Table(title="Catalogue (plugin_registry.toml)")
        for column in ("name", "kind", "installed", "install with"):
            cat.add_column(column)
        for entry in data["available"]:
            extras = entry.get("extras", [])
            how = f"pip install 'mka[{','.join(extras)}]'" if extras else "(core)"
            cat.add_row(entry.get("name", ""), entry.get("kind", ""), "yes" if entry["installed"] else "no", how)
        console.print(cat)
    for failure in data["failures"]:
        console.print(f"[red]failed:[/red] {failure['message']}")
    return 0


def _pip(action: str, packages: list[str], extra: list[str]) -> int:
    if not packages:
        raise InputError(f"Name at least one package to {action}.")
    cmd = [sys.executable, "-m", "pip", action, *extra, *packages]
    if action == "uninstall":
        cmd.insert(4, "-y")
    code = subprocess.call(cmd)
    if code != 0:
        raise InputError(f"pip {action} failed (exit {code}); see pip's message above.")
    return 0


def add_install_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("packages", nargs="*", help="pip requirement specifiers or local paths")
    parser.add_argument("-e", "--editable", action="store_true", help="install a local folder in editable mode")
    parser.add_argument("--upgrade", "-U", action="store_true")
    parser.add_argument("--no-deps", action="store_true", help="do not install the package's dependencies")


def run_install(args: argparse.Namespace) -> int:
    extra = (["--upgrade"] if args.upgrade else []) + (["--no-deps"] if args.no_deps else [])
    packages = list(args.packages)
    if args.editable:
        packages = [item for path in packages for item in ("-e", path)]
    return _pip("install", packages, extra)


def add_uninstall_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("packages", nargs="*", help="distribution names")


def run_uninstall(args: argparse.Namespace) -> int:
    return _pip("uninstall", list(args.packages), [])


COMMANDS = [
    Command("plugins", "List installed plugins (and with --available, the catalogue).", add_plugins_arguments, run_plugins),
    Command("install", "Install a plugin package with pip into this interpreter.", add_install_arguments, run_install),
    Command("uninstall", "Uninstall a plugin package with pip from this interpreter.", add_uninstall_arguments, run_uninstall),
]
