"""What a CLI command is, for built-ins and plugins alike."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


@dataclass
class Command:
    """A ``mka`` subcommand.

    ``add_arguments(parser)`` declares its options (it may add sub-subcommands);
    ``run(args)`` does the work and returns an exit code (``None`` means 0). Raise
    :class:`mka_core.errors.MkaError` for bad input: the CLI prints its one sentence and
    exits non-zero, without a traceback.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
