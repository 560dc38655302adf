"""`mka convert`: turn released Make-An-Audio checkpoints into mka model folders.

::

    mka convert maa1 --ckpt maa1_full.ckpt --vocoder useful_ckpts/bigvgan --tokenizer BERT_DIR --out DIR
    mka convert maa-b --ckpt ta54_epoch=000216.ckpt --kind i2a --out DIR [--vocoder DIR] [--clip DIR]

Checkpoints are read with ``torch.load(weights_only=True)`` only. Every tensor of every input
file is either used or reported as ignored with its reason (a table, and
``conversion_report.json`` in the output); every mka tensor is filled, or the conversion stops
naming what is missing. The output folder appears only when complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mka_core.cli.command import Command

FAMILY_HELP = {
    "maa1": "family A: maa1_full.ckpt + the BigVGAN folder of the GitHub release (text-to-audio)",
    "maa-b": "family B: the hosted demos' checkpoints (ta40multi t2a, ta54 i2a, inpaint7 inpaint)",
}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, metavar="FILE", help="the Lightning checkpoint (.ckpt)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the mka model folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    parser.add_argument("--tokenizer", metavar="DIR", default=None,
                        help="folder with bert-base-uncased's tokenizer files (vocab.txt, tokenizer_config.json); "
                             "default: $MKA_HOME/weights/bert-base-uncased")
    parser.add_argument("--quiet", action="store_true", help="print only the output folder, not the accounting table")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="family", metavar="FAMILY", parser_class=type(parser))
    a = sub.add_parser("maa1", help=FAMILY_HELP["maa1"], description=FAMILY_HELP["maa1"])
    _common(a)
    a.add_argument("--vocoder", required=True, metavar="DIR", help="folder with the vocoder's args.yml and best_netG.pt")
    b = sub.add_parser("maa-b", help=FAMILY_HELP["maa-b"], description=FAMILY_HELP["maa-b"])
    _common(b)
    b.add_argument("--kind", required=True, choices=["t2a", "i2a", "inpaint"],
                   help="t2a (ta40multi), i2a (ta54) or inpaint (inpaint7)")
    b.add_argument("--vocoder", metavar="DIR", default=None,
                   help="the demos' BigVGAN folder (args.yml + best_netG.pt); without it: Griffin-Lim")
    b.add_argument("--clip", metavar="DIR", default=None,
                   help="i2a: OpenCLIP weights in open_clip's local-dir layout, for the image tower if the checkpoint lacks it")
    b.add_argument("--clip-model", default="ViT-H-14", help="i2a: open_clip architecture name (default ViT-H-14)")
    b.add_argument("--clip-pretrained", default="laion2b_s32b_b79k",
                   help="i2a: open_clip pretrained tag naming the embedding space (default laion2b_s32b_b79k)")


def run(args: argparse.Namespace) -> int:
    from mka_core.convert.accounting import print_summary
    from mka_core.convert.common import REPORT_FILE, run_conversion
    from mka_core.errors import InputError

    if args.family is None:
        raise InputError("Say which checkpoint family to convert: mka convert maa1 ... or mka convert maa-b --kind ... .")
    if args.family == "maa1":
        from mka_core.convert.maa1 import convert_maa1

        def build(staging: Path):
            return convert_maa1(args.ckpt, args.vocoder, staging=staging, tokenizer=args.tokenizer)
    else:
        from mka_core.convert.maa_b import convert_maa_b

        def build(staging: Path):
            return convert_maa_b(args.ckpt, args.kind, staging=staging, vocoder=args.vocoder, tokenizer=args.tokenizer,
                                 clip=args.clip, clip_model=args.clip_model, clip_pretrained=args.clip_pretrained)

    out, conversion = run_conversion(build, args.out, overwrite=args.overwrite)
    if not args.quiet:
        print_summary(conversion.ledgers, conversion.filled)
    for warning in conversion.info.get("warnings") or []:
        print(f"mka: warning: {warning}; check that this vocoder belongs to this model.", file=sys.stderr)
    print(f"Wrote {out} (accounting in {out / REPORT_FILE}).")
    return 0


COMMANDS = [Command("convert", "Convert released Make-An-Audio checkpoints (maa1, maa-b) into mka model folders.",
                    add_arguments, run)]
