"""Resample, downmix and check audio, compute mels in parallel, and write a training manifest.

::

    mka data prepare --manifest raw.tsv --out data/prepared
    mka data prepare --folder recordings/ --captions captions.csv --out data/prepared --workers 4

The output folder gets manifest.tsv (mel_path and duration filled), mels/*.npy, audio/*.wav
(16 kHz mono), dropped.tsv (every row left out, with its reason) and prepare.json.
"""

from __future__ import annotations

import argparse

from mka_core.errors import InputError

NAME = "prepare"
HELP = "Resample, downmix, check and compute mels for a manifest or a folder of audio."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--manifest", metavar="TSV", help="a manifest (name, dataset, caption, audio_path, ...)")
    source.add_argument("--folder", metavar="DIR", help="a folder of audio files (captions from --captions or <stem>.txt)")
    parser.add_argument("--captions", metavar="CSV", help="with --folder: a CSV/TSV with file and caption columns")
    parser.add_argument("--dataset", default="", help="with --folder: the dataset name to record")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPU count, at most 8)")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="drop clips shorter than this (default 0.5)")
    parser.add_argument("--silence-dbfs", type=float, default=-60.0, help="drop clips whose peak is below this (default -60)")
    parser.add_argument("--max-seconds", type=float, default=None, help="keep only the first N seconds of long files")
    parser.add_argument("--no-audio", action="store_true", help="do not write resampled wavs (keep the original paths)")
    parser.add_argument("--allow-empty-captions", action="store_true",
                        help="keep rows without captions (for VAE and vocoder training)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from training.data.manifest import manifest_from_folder, read_manifest
    from training.data.prepare import PrepareSettings, default_workers, run_prepare

    if args.manifest:
        rows = read_manifest(args.manifest)
    elif args.folder:
        rows = manifest_from_folder(args.folder, captions_csv=args.captions, dataset=args.dataset)
    else:
        raise InputError("Give the audio to prepare with --manifest TSV or --folder DIR.")
    if not rows:
        raise InputError("There is nothing to prepare: the manifest or folder has no audio rows.")
    workers = args.workers if args.workers is not None else default_workers()
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}.")
    if args.min_seconds < 0:
        raise InputError(f"--min-seconds must not be negative, got {args.min_seconds}.")
    settings = PrepareSettings(out_dir=args.out, min_seconds=args.min_seconds, silence_dbfs=args.silence_dbfs,
                               write_audio=not args.no_audio, max_seconds=args.max_seconds,
                               require_caption=not args.allow_empty_captions)
    manifest, dropped, kept = run_prepare(rows, settings, workers=workers, progress=not args.quiet)
    print(f"prepared {kept} of {len(rows)} rows -> {manifest}")
    if dropped:
        reasons: dict[str, int] = {}
        for item in dropped:
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
        print(f"dropped {len(dropped)}: " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) +
              f" (see {args.out}/dropped.tsv)")
    if kept == 0:
        raise InputError(f"No row could be prepared ({len(dropped)} dropped); see {args.out}/dropped.tsv.")
    return 0
