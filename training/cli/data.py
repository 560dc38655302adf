"""`mka data`: prepare manifests, synthesise the open corpus, build the real-recording corpus, propose captions.

One module per subcommand (``data_<name>.py``), each exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args)``.
"""

from __future__ import annotations

import argparse
import importlib

from mka_core.cli.command import Command

SUBCOMMAND_MODULES: list[str] = ["training.cli.data_prepare", "training.cli.data_synth", "training.cli.data_caption",
                                  "training.cli.data_real"]


def _modules():
    return [importlib.import_module(name) for name in SUBCOMMAND_MODULES]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=type(parser))
    for module in _modules():
        child = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__)
        module.add_arguments(child)
        child.set_defaults(_data_run=module.run)


def run(args: argparse.Namespace) -> int | None:
    if getattr(args, "_data_run", None) is None:
        from mka_core.errors import InputError

        names = ", ".join(module.NAME for module in _modules())
        raise InputError(f"Name a data subcommand: {names} (see `mka data --help`).")
    return args._data_run(args)


COMMANDS = [Command("data", "Prepare training manifests, synthesise the open corpus, build the real-recording corpus, "
                            "propose captions.", add_arguments, run)]
