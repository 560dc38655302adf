"""Synthesise the open sound-event corpus: captioned 16 kHz clips of 16 everyday sound classes.

Example: `mka data synth --out data/synth --n 2000 --seed 0 --workers 4`. The folder gets
audio/synth_NNNNNN.wav, train.tsv, valid.tsv, heldout.tsv (captions in phrasings never used
for training), classes.json and synth.json. The same settings always give the same files,
whatever the number of workers. See docs/corpus.md.
"""

from __future__ import annotations

import argparse

from mka_core.errors import InputError

NAME = "synth"
HELP = "Synthesise a captioned corpus of 16 procedural sound-event classes (single events and compositions)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--n", type=int, default=1000, metavar="N", help="number of clips (default 1000)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="corpus seed, 0 or more (default 0)")
    parser.add_argument("--workers", type=int, default=None, metavar="W",
                        help="parallel processes (default: CPU count, at most 8); the output does not depend on it")
    parser.add_argument("--single-only", action="store_true", help="only single-event clips (no compositions)")
    parser.add_argument("--duration", type=float, nargs="+", metavar="SECONDS",
                        help="clip length: one value (fixed) or two (MIN MAX); default 5 10")
    parser.add_argument("--min-duration", type=float, default=None, metavar="SECONDS",
                        help="shortest clip in seconds (default 5)")
    parser.add_argument("--max-duration", type=float, default=None, metavar="SECONDS",
                        help="longest clip in seconds (default 10)")
    parser.add_argument("--holdout-fraction", type=float, default=0.1, metavar="F",
                        help="share of clips in heldout.tsv, captioned with unseen phrasings (default 0.1)")
    parser.add_argument("--valid-fraction", type=float, default=0.05, metavar="F",
                        help="share of clips in valid.tsv (default 0.05)")
    parser.add_argument("--classes", default=None, metavar="A,B,...",
                        help="comma-separated subset of the classes (default: all; see docs/corpus.md)")
    parser.add_argument("--float", action="store_true", help="write 32-bit float wavs instead of 16-bit PCM")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _durations(args: argparse.Namespace) -> tuple[float, float]:
    low, high = 5.0, 10.0
    if args.duration is not None:
        if args.min_duration is not None or args.max_duration is not None:
            raise InputError("Give the clip length either as --duration or as --min-duration/--max-duration, not both.")
        if len(args.duration) > 2:
            raise InputError(f"--duration takes one value or two (MIN MAX), got {len(args.duration)}.")
        low, high = args.duration[0], args.duration[-1]
    else:
        low = args.min_duration if args.min_duration is not None else min(low, args.max_duration or low)
        high = args.max_duration if args.max_duration is not None else max(high, low)
    if low > high:
        raise InputError(f"The shortest clip ({low:g} s) must not be longer than the longest ({high:g} s).")
    return low, high


def run(args: argparse.Namespace) -> int:
    from training.data.synth import CLASSES
    from training.data.synth.corpus import default_workers, generate_corpus

    if args.n <= 0:
        raise InputError(f"--n must be a positive number of clips, got {args.n}.")
    if args.seed < 0:
        raise InputError(f"--seed must be 0 or more, got {args.seed}.")
    workers = args.workers if args.workers is not None else default_workers()
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}.")
    low, high = _durations(args)
    classes = None
    if args.classes is not None:
        classes = [name.strip() for name in args.classes.split(",") if name.strip()]
        unknown = [name for name in classes if name not in CLASSES]
        if unknown:
            raise InputError(f"Unknown class(es) {', '.join(unknown)} in --classes; choose from {', '.join(CLASSES)}.")
    result = generate_corpus(args.out, args.n, args.seed, workers=min(workers, args.n),
                             holdout_fraction=args.holdout_fraction, valid_fraction=args.valid_fraction,
                             min_duration=low, max_duration=high, single_only=args.single_only, classes=classes,
                             subtype="FLOAT" if args.float else "PCM_16", progress=not args.quiet)
    counts = result.counts
    print(f"synthesised {sum(counts.values())} clips ({result.audio_hours * 60:.1f} min of audio) in "
          f"{result.seconds:.1f} s ({result.clips_per_second:.1f} clips/s) -> {result.out_dir}")
    print(f"train {counts['train']}, valid {counts['valid']}, heldout {counts['heldout']}: "
          + ", ".join(str(path) for path in result.manifests.values()))
    return 0
