"""`mka eval`: score a pipeline against reference audio with captions, or train the classifier it uses.

::

    mka eval --model DIR --manifest heldout.tsv --classifier runs/clf --out report.json
    mka eval --manifest heldout.tsv --generated gen/generated.tsv --classifier runs/clf   # score earlier audio
    mka eval train-classifier --manifest train.tsv --valid valid.tsv --out runs/clf --epochs 30

The report (a table, and JSON in --out) gives the Fréchet distance of the classifier's
embeddings (with the real-vs-real floor), the KL divergence of its label distributions, its
accuracy against each row's ``labels`` and the CLAP score when a CLAP model is installed.
See docs/eval.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mka_core.cli.command import Command
from mka_core.errors import InputError, MkaError

#: Flags that only make sense when mka eval generates the audio itself.
GENERATION_FLAGS = ("model", "steps", "sampler", "guidance", "duration", "save_audio", "dtype")
#: Of those, the ones that have no meaning when the references are resynthesised.
SAMPLING_FLAGS = ("steps", "sampler", "guidance", "duration", "save_audio")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", metavar="TSV", help="reference manifest: name, caption, audio_path (+ labels)")
    parser.add_argument("--classifier", metavar="DIR|NAME", default=None,
                        help="a folder made by `mka eval train-classifier`, 'real' (the shipped classifier trained on "
                             "real recordings only, which scores the default model), or a registered audio classifier "
                             "(default: real)")
    parser.add_argument("--model", "-m", default=None,
                        help="the pipeline to evaluate: a folder or a name in $MKA_HOME/models (default: the embedded model)")
    parser.add_argument("--generated", metavar="TSV|DIR", default=None,
                        help="score audio generated earlier (a manifest, or a folder of <name>.wav) instead of generating")
    parser.add_argument("--resynthesize", metavar="PATH", default=None, choices=("vocoder", "vae", "light"),
                        help="score the model's parts on the references' own mels instead of generating: 'vocoder' "
                             "(mel -> vocoder), 'vae' (mel -> VAE -> vocoder) or 'light' (mel -> VAE encoder -> "
                             "the model's light decoder -> vocoder)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    parser.add_argument("--sampler", default=None, help="ddim or dpm++2m (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of row 0; row i uses seed + i (default 0)")
    parser.add_argument("--duration", type=float, default=None,
                        help="generate this many seconds per caption (default: each reference's own length)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N rows")
    parser.add_argument("--batch-size", type=int, default=8, help="captions per generation batch (default 8)")
    parser.add_argument("--out", "-o", default="eval-report.json", metavar="JSON",
                        help="where to write the JSON report (default eval-report.json)")
    parser.add_argument("--save-audio", metavar="DIR", default=None,
                        help="also keep the generated clips (<name>.wav) and a generated.tsv manifest in DIR")
    parser.add_argument("--clap", default=None, metavar="CHECKPOINT",
                        help="CLAP weights for the CLAP score (default: the default LAION-CLAP weights when installed, "
                             "else n/a); 'none' skips it")
    parser.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=None,
                        help="score accuracy against the manifest's labels column (default: when the column is there)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 for the pipeline (default float32)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    sub = parser.add_subparsers(dest="eval_command", metavar="SUBCOMMAND", parser_class=type(parser))
    child = sub.add_parser("train-classifier", help="train the built-in mel-CNN classifier on a labelled manifest",
                           description="Train the built-in mel-CNN classifier on a manifest with a 'labels' column.")
    add_train_arguments(child)
    child.set_defaults(_eval_run=run_train_classifier)
    child = sub.add_parser("compare", help="compare two reports clip by clip: is B better or worse than A beyond the noise",
                           description="Compare two `mka eval` reports made on the same references, clip by clip: "
                                       "McNemar's exact test for accuracy, a bootstrap interval for KL.")
    child.add_argument("report_a", metavar="A.json", help="the baseline report")
    child.add_argument("report_b", metavar="B.json", help="the report compared with it")
    child.add_argument("--out", dest="compare_out", default=None, metavar="JSON", help="also write the comparison as JSON")
    child.add_argument("--per-class", action="store_true",
                       help="also print each class's accuracy in A and B (the JSON always has them)")
    child.set_defaults(_eval_run=run_compare)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    # Separate destinations: a sub-parser's values would otherwise overwrite the parent's.
    parser.add_argument("--manifest", dest="train_manifest", required=True, metavar="TSV",
                        help="training manifest with a 'labels' column (';'-separated class names)")
    parser.add_argument("--valid", dest="train_valid", default=None, metavar="TSV",
                        help="held-out manifest (default: every 10th training row)")
    parser.add_argument("--out", dest="train_out", required=True, metavar="DIR", help="folder for the classifier")
    parser.add_argument("--epochs", type=int, default=30, help="passes over the training clips (default 30)")
    parser.add_argument("--preset", default="base", help="architecture: base or tiny (default base)")
    parser.add_argument("--batch-size", dest="train_batch_size", type=int, default=32, help="clips per step (default 32)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule (default 2e-3)")
    parser.add_argument("--crop-seconds", type=float, default=5.0, help="random training crop length (default 5)")
    parser.add_argument("--gain-db", type=float, default=6.0, help="random gain of up to ± this many dB (default 6)")
    parser.add_argument("--seed", dest="train_seed", type=int, default=0, help="seed of the initial weights and crops (default 0)")
    parser.add_argument("--device", dest="train_device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    parser.add_argument("--limit", dest="train_limit", type=int, default=None, metavar="N",
                        help="use only the first N training rows")
    parser.add_argument("--real-only", action="store_true",
                        help="train and validate only on rows made of real recordings (origin 'recording' or "
                             "'composed', as `mka data real` writes), never on augmented or synthetic rows")
    parser.add_argument("--features", default=None, metavar="NAME",
                        help="train a linear probe on the embeddings of this registered audio classifier (e.g. birdnet) "
                             "instead of the mel CNN; --epochs, --preset, --lr, --batch-size, --crop-seconds and "
                             "--gain-db do not apply to it")
    parser.add_argument("--overwrite", action="store_true", help="replace a classifier already in --out")
    parser.add_argument("--quiet", dest="train_quiet", action="store_true", help="no progress output")


# -- mka eval ----------------------------------------------------------------------------------------


def _given_flags(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    """The flags among ``names`` that the user gave, spelled as typed (``--save-audio``)."""
    return [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is not None]


def _check_eval_args(args: argparse.Namespace) -> None:
    if not args.manifest:
        raise InputError("Give the reference manifest with --manifest (or run `mka eval train-classifier`).")
    if not args.classifier:
        from training.evaluation.classifier import DEFAULT_CLASSIFIER

        args.classifier = DEFAULT_CLASSIFIER
    if args.generated is not None:
        given = _given_flags(args, GENERATION_FLAGS)
        if given:
            raise InputError(f"--generated scores audio made earlier, so drop {', '.join(given)} (generation options).")
        if args.resynthesize is not None:
            raise InputError("--generated and --resynthesize are two different sources of audio; give one of them.")
    if args.resynthesize is not None:
        given = _given_flags(args, SAMPLING_FLAGS)
        if given:
            raise InputError(f"--resynthesize rebuilds the references without sampling, so drop {', '.join(given)}.")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}.")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}.")
    if args.duration is not None:
        from mka_core.geometry import check_duration

        check_duration(args.duration)
    if Path(args.out).expanduser().is_dir():
        raise InputError(f"--out {args.out} is a folder; give the path of the JSON report file.")


def _clap(source: str | None, device):
    """The CLAP scorer named by --clap; without --clap, the default weights if they load, else n/a and why."""
    from training.evaluation.evaluate import ClapSetting

    if source is not None and source.lower() in ("none", "off"):
        return ClapSetting(reason="skipped (--clap none)")
    from mka_core.ranking import load_clap_scorer

    try:
        scorer = load_clap_scorer(source or "clap", device=device)
    except MkaError as exc:
        if source is not None:  # asked for by name: a failure is the user's to fix
            raise
        return ClapSetting(source="clap", reason=str(exc))
    except Exception as exc:  # the optional CLAP backend itself is broken: report, do not stop the evaluation
        if source is not None:
            raise InputError(f"The CLAP scorer {source} could not be loaded ({exc.__class__.__name__}: {exc}).") from exc
        return ClapSetting(source="clap", reason=f"the CLAP backend failed to load ({exc.__class__.__name__})")
    return ClapSetting(scorer=scorer, source=source or "clap")


def _accuracy(args: argparse.Namespace, rows, classifier, where: str) -> tuple[bool, str | None]:
    from training.evaluation.train_classifier import check_labels

    has_labels = any("labels" in row.extra for row in rows)
    if args.accuracy is False:
        return False, "skipped (--no-accuracy)"
    if args.accuracy is None and not has_labels:
        return False, f"the manifest {where} has no 'labels' column"
    check_labels(rows, where, known=classifier.classes)
    return True, None


def run_eval(args: argparse.Namespace) -> int:
    from mka_core.devices import resolve_device
    from training.data.manifest import read_manifest
    from training.evaluation import evaluate as ev
    from training.evaluation.classifier import load_classifier
    from training.evaluation.report import build_report, print_report, write_report

    _check_eval_args(args)
    rows = read_manifest(args.manifest)
    if not rows:
        raise InputError(f"The manifest {args.manifest} has no rows.")
    rows = rows[: args.limit] if args.limit else rows
    unmatched, generated = 0, None
    if args.generated is not None:
        generated = ev.find_generated(args.generated)
        rows, unmatched = ev.match_generated(rows, generated, args.generated)
    elif args.resynthesize is None:
        ev.check_captions(rows, args.manifest)
    device = resolve_device(args.device)
    classifier = load_classifier(args.classifier, device=device)
    want_accuracy, accuracy_note = _accuracy(args, rows, classifier, args.manifest)
    clap = _clap(args.clap, device)

    settings = {"seed": args.seed, "limit": args.limit, "batch_size": args.batch_size, "accuracy_note": accuracy_note}
    pipe = model_dir = None
    if generated is None:
        from mka_core.model_lookup import resolve_model
        from mka_core.pipeline import Pipeline

        model_dir = resolve_model(args.model)
        pipe = Pipeline.from_pretrained(model_dir, device=device, dtype=args.dtype or "float32")
        defaults = pipe.config.defaults
    if args.resynthesize is not None:
        settings.update(resynthesize=args.resynthesize)
        batches = ev.resynthesized_pairs(pipe, rows, args.resynthesize, batch_size=args.batch_size)
    elif generated is None:
        settings.update(steps=args.steps or defaults.steps, sampler=args.sampler or defaults.sampler,
                        guidance=defaults.guidance if args.guidance is None else args.guidance, duration=args.duration)
        gen = ev.GenerationSettings(steps=args.steps, sampler=args.sampler, guidance=args.guidance, seed=args.seed,
                                    batch_size=args.batch_size, duration=args.duration)
        save_dir = Path(args.save_audio).expanduser() if args.save_audio else None
        batches = ev.generated_pairs(pipe, rows, gen, save_dir=save_dir)
    else:
        batches = ev.stored_pairs(rows, generated, batch_size=args.batch_size)

    mode = "generated" if generated is not None else f"resynthesize-{args.resynthesize}" if args.resynthesize else "generate"
    board = ev.Scoreboard(classifier, clap, accuracy=want_accuracy)
    _consume(batches, board, len(rows), quiet=args.quiet, label="generating" if mode == "generate" else "scoring")
    report = build_report(
        mode=mode, manifest=str(Path(args.manifest).resolve()),
        model=str(model_dir) if model_dir else None, generated=str(args.generated) if args.generated else None,
        classifier={**classifier.describe(), "source": str(args.classifier)}, clap={"available": clap.scorer is not None, "source": clap.source,
                                                "reason": clap.reason},
        settings=settings, scores=board.metrics(), items=board.items, unmatched=unmatched,
    )
    path = write_report(args.out, report)
    print_report(report)
    print(f"report: {path}")
    return 0


def _consume(batches, board, total: int, *, quiet: bool, label: str) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet:
        for batch in batches:
            board.add(batch)
        return
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as progress:
        bar = progress.add_task(label, total=total)
        for batch in batches:
            board.add(batch)
            progress.advance(bar, len(batch))


# -- mka eval train-classifier ---------------------------------------------------------------------


def run_train_classifier(args: argparse.Namespace) -> int:
    from rich.console import Console

    from training.data.manifest import read_manifest
    from training.evaluation.classifier import CLASSIFIER_JSON, MelCnnConfig, save_mel_cnn
    from training.evaluation.train_classifier import (TrainSettings, check_labels, class_names, load_labelled_mels,
                                                      real_rows_only, split_for_validation, train_classifier)

    settings = TrainSettings(epochs=args.epochs, batch_size=args.train_batch_size, lr=args.lr,
                             crop_seconds=args.crop_seconds, gain_db=args.gain_db, seed=args.train_seed,
                             device=args.train_device)
    settings.check()
    out = Path(args.train_out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the classifier.")
    if (out / CLASSIFIER_JSON).exists() and not args.overwrite:
        raise InputError(f"{out} already holds a classifier; pass --overwrite to replace it.")
    if args.train_limit is not None and args.train_limit < 2:
        raise InputError(f"--limit must be at least 2, got {args.train_limit}.")
    config = MelCnnConfig.preset(args.preset)
    rows = read_manifest(args.train_manifest)
    if args.real_only:
        rows = real_rows_only(rows, args.train_manifest)
    rows = rows[: args.train_limit]
    if args.train_valid:
        valid_rows = read_manifest(args.train_valid)
        train_rows, valid_rows = rows, real_rows_only(valid_rows, args.train_valid) if args.real_only else valid_rows
        classes = class_names(train_rows, args.train_manifest)
        check_labels(valid_rows, args.train_valid, known=classes)
    else:
        classes = class_names(rows, args.train_manifest)
        train_rows, valid_rows = split_for_validation(rows)
    console = Console(stderr=True, quiet=args.train_quiet)
    if args.features:
        return train_probe(args, out, classes, train_rows, valid_rows, console)
    config = config.model_copy(update={"classes": classes})

    console.print(f"loading {len(train_rows)} training and {len(valid_rows)} held-out clips ({len(classes)} classes)")
    train = load_labelled_mels(train_rows, classes, config)
    valid = load_labelled_mels(valid_rows, classes, config)

    def on_epoch(record: dict) -> None:
        console.print(f"epoch {record['epoch']:3d}  train loss {record['train_loss']:.4f}  held-out loss "
                      f"{record['valid_loss']:.4f}  accuracy {100 * record['valid_accuracy']:.1f} %")

    model, summary = train_classifier(train, valid, config, settings, on_epoch=on_epoch)
    summary.update(train_manifest=str(Path(args.train_manifest).resolve()), real_only=bool(args.real_only),
                   valid_manifest=str(Path(args.train_valid).resolve()) if args.train_valid else "every 10th training row",
                   preset=args.preset)
    save_mel_cnn(model, out, training=summary)
    print(f"held-out accuracy {100 * summary['valid_accuracy']:.1f} % (epoch {summary['best_epoch']} of "
          f"{summary['epochs']}, {summary['valid_clips']} clips, {len(classes)} classes); classifier: {out}")
    return 0


def train_probe(args: argparse.Namespace, out: Path, classes: list[str], train_rows, valid_rows, console) -> int:
    from mka_core.audio.io import load_audio
    from training.evaluation.classifier import SAMPLE_RATE, load_classifier
    from training.evaluation.probe_classifier import embed_clips, fit_probe, save_probe

    features = load_classifier(args.features, device=args.train_device)
    index = {name: i for i, name in enumerate(classes)}
    embedded = []
    for what, rows in (("training", train_rows), ("held-out", valid_rows)):
        console.print(f"embedding {len(rows)} {what} clips with '{features.name}'")
        embedded.append(embed_clips(features, (load_audio(row.audio_path, SAMPLE_RATE) for row in rows)))

    def on_fit(record: dict) -> None:
        console.print(f"l2 {record['l2']:g}  train accuracy {100 * record['train_accuracy']:.1f} %  held-out accuracy "
                      f"{100 * record['valid_accuracy']:.1f} %")

    probe, summary = fit_probe(features.name, classes, embedded[0], [[index[c] for c in row.labels] for row in train_rows],
                               embedded[1], [[index[c] for c in row.labels] for row in valid_rows], on_fit=on_fit)
    summary.update(train_manifest=str(Path(args.train_manifest).resolve()), real_only=bool(args.real_only),
                   valid_manifest=str(Path(args.train_valid).resolve()) if args.train_valid else "every 10th training row")
    save_probe(probe, out, training=summary)
    print(f"held-out accuracy {100 * summary['valid_accuracy']:.1f} % (l2 {summary['l2']:g}, {summary['valid_clips']} "
          f"clips, {len(classes)} classes, features '{features.name}'); classifier: {out}")
    return 0


# -- mka eval compare ------------------------------------------------------------------------------


def run_compare(args: argparse.Namespace) -> int:
    from mka_core.weights import write_json
    from training.evaluation.compare import compare_reports, load_report, print_comparison

    comparison = compare_reports(load_report(args.report_a), load_report(args.report_b))
    if args.compare_out:
        out = Path(args.compare_out).expanduser()
        if out.is_dir():
            raise InputError(f"--out {out} is a folder; give the path of a JSON file.")
        write_json(out, {"a": str(args.report_a), "b": str(args.report_b), **comparison})
    print_comparison(comparison, str(args.report_a), str(args.report_b), per_class=args.per_class)
    return 0


def run(args: argparse.Namespace) -> int | None:
    runner = getattr(args, "_eval_run", None)
    if runner is not None:
        return runner(args)
    return run_eval(args)


COMMANDS = [Command("eval", "Score a model against reference audio (FD, KL, accuracy, CLAP), or train its classifier.",
                    add_arguments, run)]
