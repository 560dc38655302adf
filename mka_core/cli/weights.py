"""`mka weights`: the catalogue of public weight sets and which are present locally."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mka_core.cli.command import Command


def weight_rows(search: list[Path]) -> list[dict[str, Any]]:
    from mka_core.cli.plugins import load_catalogue

    rows = []
    for entry in load_catalogue().get("weights", []):
        found = None
        for root in search:
            folder = root / entry["name"]
            if all((folder / f).exists() for f in entry.get("files", [])):
                found = str(folder)
                break
        rows.append({**entry, "present": found is not None, "location": found})
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--dir", action="append", default=[], help="extra folder to look in (repeatable)")


def run(args: argparse.Namespace) -> int:
    from mka_core.weights import mka_home

    search = [Path(d).expanduser() for d in args.dir] + [mka_home() / "weights"]
    rows = weight_rows(search)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Public weight sets (looked in: {', '.join(str(p) for p in search)})")
    for column in ("name", "family", "present", "files", "where to get them", "licence"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["family"], "yes" if row["present"] else "no", ", ".join(row["files"]),
                      row["source"], row["licence"])
    Console().print(table)
    return 0


COMMANDS = [Command("weights", "Show the catalogue of public weight sets and which are present locally.", add_arguments, run)]
