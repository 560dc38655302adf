"""`mka new-model`: a randomly initialised pipeline directory."""

from __future__ import annotations

import argparse

from mka_core.cli.command import Command
from mka_core.cli.options import parse_key_values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="tiny (random tiny encoder too) or base (default tiny)")
    parser.add_argument("--cond", required=True, help="conditioner plugin name (see `mka plugins`)")
    parser.add_argument("--cond-option", action="append", metavar="KEY=VALUE", help="conditioner option (repeatable)")
    parser.add_argument("--vocoder", default=None, help="vocoder plugin name (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", "-o", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")


def run(args: argparse.Namespace) -> int:
    from mka_core.presets import build_pipeline

    pipe = build_pipeline(args.preset, args.cond, seed=args.seed,
                          cond_options=parse_key_values(args.cond_option, "conditioner option"),
                          vocoder=args.vocoder, device="cpu")
    path = pipe.save_pretrained(args.out, overwrite=args.overwrite)
    print(f"Wrote a random '{args.preset}' pipeline with conditioner '{args.cond}' to {path}")
    return 0


COMMANDS = [Command("new-model", "Write a randomly initialised pipeline folder (start of training, tests).", add_arguments, run)]
