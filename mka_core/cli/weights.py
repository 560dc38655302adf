"""`mka weights`: the catalogue of public weight sets, their state on this machine, and `mka weights pull`.

::

    mka weights                               # every entry: converted / present / pulled / missing, disk
    mka weights pull ta40multi --allow-network
    mka weights pull maa1 --from useful_ckpts/

See docs/weights.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from mka_core.cli.command import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--dir", action="append", default=[], help="extra folder to look in (repeatable)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    pull = sub.add_parser("pull", help="download, check and convert catalogue entries",
                          description="Download catalogue entries (and what they need), check their sha256 and convert "
                                      "models into $MKA_HOME/models/NAME.")
    pull.add_argument("names", nargs="+", metavar="NAME", help="catalogue names (see `mka weights`)")
    pull.add_argument("--allow-network", action="store_true",
                      help="allow downloads (the same as MKA_ALLOW_NETWORK=1); without it only the download cache is used")
    pull.add_argument("--from", dest="source", metavar="FILE_OR_DIR", default=None,
                      help="use files you downloaded yourself (family A's Google Drive folder, or any entry's files)")
    pull.add_argument("--force", action="store_true", help="convert / place the named entries again even if present")


def network_allowed(flag: bool) -> bool:
    from mka_core.errors import InputError
    from mka_core.weights import network_allowed as env_allows

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("MKA_OFFLINE", "0") not in ("", "0")
    if flag and offline:
        raise InputError("--allow-network was given but HF_HUB_OFFLINE or MKA_OFFLINE is set; unset it to download.")
    return flag or env_allows()


def run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) == "pull":
        return run_pull(args)
    from mka_core.hub.status import cache_note, human, weight_rows
    from mka_core.weights import mka_home

    rows = weight_rows([Path(d).expanduser() for d in args.dir])
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Public weight sets (MKA_HOME {mka_home()}; {cache_note()})")
    for column in ("name", "family", "state", "disk", "download", "licence", "get it with"):
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "state"))
    for row in rows:
        table.add_row(row["name"], row["family"], row["state"], human(row["disk_bytes"]) if row["disk_bytes"] else "-",
                      row["size"], row["licence"] or "-", row["pull"])
    Console().print(table)
    print("Sources and files: mka weights --json; details: docs/weights.md.")
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from mka_core.hub.pull import pull

    allow = network_allowed(args.allow_network)
    done = pull(args.names, allow_network=allow, source=args.source, overwrite=args.force)
    for item in done:
        if item.name in args.names and item.action == "already in place":
            print(f"{item.name}: already in place in {item.location} (--force converts it again).")
        elif item.name in args.names and item.action == "installed package":
            print(f"{item.name}: ships inside an installed pip package; nothing to download.")
    models = [d.name for d in done if d.name in args.names and (d.location / "model_index.json").is_file()]
    for name in models:
        print(f'Use it by name: mka generate --model {name} "a dog barks"  (Python: Pipeline.from_pretrained("{name}"))')
    return 0


COMMANDS = [Command("weights", "Show the public weight sets and their state here; `mka weights pull NAME` fetches them.",
                    add_arguments, run)]
