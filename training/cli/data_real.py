"""Build a captioned corpus of real recordings: windows, sequences, backgrounds, licences, splits.

Examples::

    mka data real --from-debian --install --out data/real          # the Debian sources, from scratch
    mka data real --sources my-sources.toml --labels my-labels.toml --out data/mine
    mka data real --folder recordings/ --licence CC0-1.0 --author "Me" --labels my-labels.toml --out data/mine

The folder gets audio/<split>/*.wav (16 kHz mono), mels/<split>/*.npy, train.tsv, valid.tsv,
heldout.tsv (reference columns plus labels, origin, licence, source, split, mode, template),
classifier-train.tsv (train rows made only of real recordings), ATTRIBUTION.tsv and .md,
dropped.tsv (every file left out and why) and real.json (counts). See docs/real-corpus.md.
"""

from __future__ import annotations

import argparse

from mka_core.errors import InputError

NAME = "real"
HELP = "Build a captioned corpus of real recordings (licences, splits by recording, attribution)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from-debian", action="store_true",
                        help="use the checked-in Debian sources (0ad-data, minetest-data, ...; see docs/real-corpus.md)")
    source.add_argument("--sources", metavar="TOML", help="a sources file: [[source]] tables (name, root, licence ...)")
    source.add_argument("--folder", metavar="DIR", help="one folder of recordings, all under --licence")
    parser.add_argument("--install", action="store_true",
                        help="with --from-debian: apt-get install the packages that are missing (needs root)")
    parser.add_argument("--licence", default=None, help="with --folder: the recordings' licence (e.g. CC0-1.0, CC-BY-4.0)")
    parser.add_argument("--author", default="", help="with --folder: the recordings' author, for the attribution file")
    parser.add_argument("--labels", metavar="TOML", default=None,
                        help="label map: path patterns -> class and caption words (default: the checked-in one)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty, or --overwrite)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clip arrangement and captions (default 0)")
    parser.add_argument("--heldout", type=float, default=0.15, metavar="F",
                        help="share of source recordings held out (default 0.15)")
    parser.add_argument("--valid", type=float, default=0.05, metavar="F", help="share of source recordings for valid (default 0.05)")
    parser.add_argument("--max-windows", type=int, default=18, metavar="N",
                        help="at most N 9.984 s windows from one long recording (default 18)")
    parser.add_argument("--reuse", type=float, default=3.0, metavar="R",
                        help="how often each one-shot is used in sequences, on average (default 3)")
    parser.add_argument("--min-clips", type=int, default=30, metavar="N",
                        help="fill train classes with fewer clips up to N with augmented clips, at most "
                             "--augment-ratio per real clip (default 30; 0: none)")
    parser.add_argument("--augment-ratio", type=float, default=3.0, metavar="R",
                        help="at most R augmented clips per real clip of a class (default 3)")
    parser.add_argument("--synthetic-clips", type=int, default=20, metavar="N",
                        help="synthetic clips added to each thin train class that has a synthetic counterpart "
                             "(default 20; 0: none)")
    parser.add_argument("--no-mels", action="store_true", help="do not compute mels (mel_path stays empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace the corpus already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def _check(args: argparse.Namespace) -> None:
    if not (args.from_debian or args.sources or args.folder):
        raise InputError("Say where the recordings are: --from-debian, --sources TOML or --folder DIR.")
    if args.install and not args.from_debian:
        raise InputError("--install only goes with --from-debian (it installs the Debian packages).")
    if args.folder and not args.licence:
        raise InputError("With --folder, state the recordings' licence with --licence (for example CC0-1.0).")
    if args.licence and not args.folder:
        raise InputError("--licence only goes with --folder; a sources file states licences per source.")
    if not (0 <= args.heldout < 1 and 0 <= args.valid < 1 and args.heldout + args.valid < 1):
        raise InputError(f"--heldout and --valid are fractions from 0 to 1 that sum to less than 1, got "
                         f"{args.heldout:g} and {args.valid:g}.")
    for flag, value, least in (("--max-windows", args.max_windows, 1), ("--min-clips", args.min_clips, 0),
                               ("--synthetic-clips", args.synthetic_clips, 0), ("--seed", args.seed, 0)):
        if value < least:
            raise InputError(f"{flag} must be at least {least}, got {value}.")
    if args.augment_ratio < 0:
        raise InputError(f"--augment-ratio must be 0 or more, got {args.augment_ratio:g}.")
    if not args.reuse > 0:
        raise InputError(f"--reuse must be positive, got {args.reuse:g}.")


def run(args: argparse.Namespace) -> int:
    from training.data.real.build import BuildSettings, build_corpus
    from training.data.real.labelmap import load_label_map
    from training.data.real.sources import folder_source, load_sources

    _check(args)
    if args.from_debian:
        from training.data.real.debian import DEBIAN_SOURCES, ensure_packages

        ensure_packages(install=args.install)
        sources = load_sources(DEBIAN_SOURCES)
    elif args.sources:
        sources = load_sources(args.sources)
    else:
        sources = [folder_source(args.folder, licence=args.licence, author=args.author)]
    label_map = load_label_map(args.labels)
    settings = BuildSettings(out_dir=args.out, seed=args.seed, heldout=args.heldout, valid=args.valid,
                             max_windows=args.max_windows, reuse=args.reuse, min_clips=args.min_clips,
                             augment_ratio=args.augment_ratio,
                             synthetic_clips=args.synthetic_clips, mels=not args.no_mels, overwrite=args.overwrite)
    progress = None
    if not args.quiet:
        import sys

        def progress(done: int, total: int) -> None:
            if done == total or done % 100 == 0:
                print(f"read {done} of {total} files", file=sys.stderr, flush=True)

    result = build_corpus(sources, label_map, settings, progress=progress)
    counts = result.counts
    print(f"kept {counts['recordings']['kept']} recordings ({counts['recordings']['minutes']:.1f} min), dropped "
          f"{counts['dropped']}: " + ", ".join(f"{n} {r}" for r, n in counts["dropped_by_reason"].items()))
    print("clips: " + ", ".join(f"{split} {n} ({counts['hours'][split]:.2f} h)" for split, n in counts["clips"].items())
          + f"; {len(counts['classes_with_real_audio'])} classes with real audio")
    print("origins: " + ", ".join(f"{origin} {n}" for origin, n in sorted(counts["origins"].items())))
    print(f"corpus: {result.out_dir} (report: {result.out_dir}/real.json) in {result.seconds:.0f} s")
    return 0
