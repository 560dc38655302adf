"""Registers the training package's commands through the ``register_commands`` hook."""

from __future__ import annotations

import importlib

from mka_core.plugins.hookspecs import hookimpl

# Each module exposes COMMANDS, like the core's built-in command modules.
COMMAND_MODULES = ["training.cli.data", "training.cli.train", "training.cli.eval"]


@hookimpl
def register_commands(register):
    for module_name in COMMAND_MODULES:
        for command in importlib.import_module(module_name).COMMANDS:
            register(command)
