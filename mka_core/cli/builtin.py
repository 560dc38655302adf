"""The built-in CLI commands, registered through the plugin hook like any other."""

from __future__ import annotations

import importlib

from mka_core.plugins.hookspecs import hookimpl

# One module per command (or command group); each exposes COMMANDS.
BUILTIN_COMMAND_MODULES = [
    "env",
    "plugins",
    "info",
    "new_model",
    "weights",
    "generate",
    "convert",
    "serve",
]


@hookimpl
def register_commands(register):
    for module_name in BUILTIN_COMMAND_MODULES:
        module = importlib.import_module(f"mka_core.cli.{module_name}")
        for command in module.COMMANDS:
            register(command)
