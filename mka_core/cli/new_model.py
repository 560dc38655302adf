"""`mka new-model`: a randomly initialised pipeline directory.

The folder records ``origin = "untrained:new-model:<preset>"`` in its ``model_index.json``, so
generating with it says that its weights are random (:mod:`mka_core.model_origin`).
"""

from __future__ import annotations

import argparse

from mka_core.cli.command import Command
from mka_core.cli.options import parse_key_values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny",
                        help="tiny (small widths, a tiny random encoder too, Griffin-Lim; nothing downloaded) or base "
                             "(the paper's sizes, the conditioner's pretrained weights, BigVGAN); default tiny")
    parser.add_argument("--cond", required=True, help="conditioner plugin name (see `mka plugins`)")
    parser.add_argument("--cond-option", action="append", metavar="KEY=VALUE",
                        help="conditioner option (repeatable; the value is read as JSON when it parses, else a string)")
    parser.add_argument("--vocoder", default=None,
                        help="vocoder plugin name (default: the preset's: griffin-lim for tiny, bigvgan for base)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation (default 0)")
    parser.add_argument("--out", "-o", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")


def run(args: argparse.Namespace) -> int:
    from mka_core.model_origin import untrained_origin
    from mka_core.presets import build_pipeline

    pipe = build_pipeline(args.preset, args.cond, seed=args.seed,
                          cond_options=parse_key_values(args.cond_option, "conditioner option"),
                          vocoder=args.vocoder, device="cpu")
    # Recorded in model_index.json so that generating with it can say its weights are random.
    pipe.config = pipe.config.model_copy(update={"origin": untrained_origin(args.preset)})
    path = pipe.save_pretrained(args.out, overwrite=args.overwrite)
    print(f"Wrote a random '{args.preset}' pipeline with conditioner '{args.cond}' to {path} "
          "(untrained: train it with `mka train`, see docs/training.md)")
    return 0


COMMANDS = [Command("new-model", "Write a randomly initialised pipeline folder (start of training, tests).", add_arguments, run)]
