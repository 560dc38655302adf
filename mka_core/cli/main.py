"""The ``mka`` console script.

Commands come from the plugin registry (kind ``command``); the built-in ones are registered
by :mod:`mka_core.cli.builtin` through the same entry-point path as a third party's.
``mka --version`` answers before any plugin loads, so it works even if plugins are broken.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from typing import Sequence

from mka_core import __version__


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one sentence and exit 2 like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"mka: error: {message} (see `{self.prog} --help`).\n")


def build_parser() -> argparse.ArgumentParser:
    from mka_core.plugins import manager

    parser = _Parser(prog="mka", description="Turn any input - text, an image, a video, a sound - into audio.")
    parser.add_argument("--version", action="version", version=f"mka {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for registration in sorted(manager.registrations("command"), key=lambda r: r.name):
        command = registration.obj
        command_parser = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(command_parser)
        command_parser.set_defaults(_command=command)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # A warning for the user (a prompt truncated to 77 tokens, say) is one line like an error,
    # not Python's "file:line: UserWarning" followed by a line of mka's source.
    print(f"mka: warning: {message}", file=file if file is not None else sys.stderr)


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM behaves like Ctrl-C so every `finally` and atomic write cleans up.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        print(f"mka {__version__}")
        return 0
    debug = os.environ.get("MKA_DEBUG", "0") not in ("", "0")
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not in the main thread (embedded use)
        pass
    from mka_core.errors import MkaError

    previous_showwarning = warnings.showwarning
    if not debug:
        warnings.showwarning = _show_warning
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = getattr(args, "_command", None)
        if command is None:
            parser.print_help()
            return 0
        code = command.run(args)
        return int(code or 0)
    except MkaError as exc:
        if debug:
            raise
        print(f"mka: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mka: interrupted; nothing half-written was left behind.", file=sys.stderr)
        return 130
    except Exception as exc:  # a plugin's fault, or a bug: say so in one line, keep the traceback for MKA_DEBUG=1
        if debug:
            raise
        from mka_core.plugins.faults import plugin_fault

        fault = plugin_fault(exc)
        if fault is not None:  # raised in a third-party plugin's code, or its options model refused a value
            print(f"mka: error: {fault}", file=sys.stderr)
            return fault.exit_code
        detail = (str(exc).strip().splitlines() or [""])[0]  # one line, even for multi-line messages
        print(
            f"mka: internal error: {exc.__class__.__name__}: {detail}. This is a bug in mka; "
            "re-run with MKA_DEBUG=1 for the traceback and report it.",
            file=sys.stderr,
        )
        return 1
    finally:
        warnings.showwarning = previous_showwarning


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
