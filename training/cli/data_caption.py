"""Propose better captions with caption experts and keep the best by CLAP score (expert distillation).

::

    mka data caption train.tsv --out train.captioned.tsv
    mka data caption train.tsv --out new.tsv --threshold 0.3 --experts panns-tags,clap-retrieval --corpus captioned.tsv

Every registered caption expert (or those named with --experts) proposes candidates for each
clip; LAION-CLAP scores them against the clip; the best candidate replaces the caption when its
score is greater than --threshold. mka ships two experts: clap-retrieval (captions of the nearest
clips of --corpus, by LAION-CLAP audio embedding) and panns-tags (PANNs tags composed into captions);
see docs/training-data.md. Rows below the threshold, with no candidate, or with audio
that cannot be read keep their caption and are listed. The new manifest gets two columns,
caption_expert and caption_score.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mka_core.errors import InputError

NAME = "caption"
HELP = "Ask caption experts for candidates and keep the best caption by CLAP score (expert distillation)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", metavar="MANIFEST", help="the manifest whose captions to improve (TSV)")
    parser.add_argument("--out", required=True, metavar="MANIFEST2", help="where to write the new manifest")
    parser.add_argument("--threshold", type=float, default=None,
                        help="keep a candidate only when its CLAP score (cosine, -1..1) is greater than this (default 0.0)")
    parser.add_argument("--experts", default=None, metavar="NAMES",
                        help="comma-separated caption experts to ask (default: every registered one that can start; "
                             "the others are named in a warning)")
    parser.add_argument("--clap", default="clap", metavar="CHECKPOINT",
                        help="LAION-CLAP checkpoint, folder, or weights id (default: clap = $MKA_HOME/weights/"
                             "laion-clap-630k-audioset)")
    parser.add_argument("--corpus", default=None, metavar="MANIFEST",
                        help="captioned manifest that retrieval experts search (default: MANIFEST itself)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per expert call (default 8)")
    parser.add_argument("--device", default="auto", help="device for CLAP: auto, cpu, cuda[:N], mps (default auto)")
    parser.add_argument("--report", metavar="JSON", default=None,
                        help="also write every row's candidates, scores and decision to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from mka_core.atomic import atomic_write_text
    from training.data.distill import (
        DEFAULT_THRESHOLD,
        apply_decisions,
        distill_rows,
        registered_experts,
    )
    from training.data.manifest import read_manifest, write_manifest

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if not -1.0 <= threshold <= 1.0:
        raise InputError(f"--threshold is a CLAP cosine similarity between -1 and 1, got {threshold:g}.")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}.")
    rows = read_manifest(args.manifest)
    if not rows:
        raise InputError(f"The manifest {args.manifest} has no rows to caption.")
    names = [n.strip() for n in args.experts.split(",") if n.strip()] if args.experts else None
    scorer = load_scorer(args.clap, args.device)
    from mka_core.devices import resolve_device

    corpus = args.corpus if args.corpus is not None else args.manifest
    if args.corpus is not None and not Path(args.corpus).is_file():
        raise InputError(f"--corpus {args.corpus}: no such manifest.")
    # Experts that use CLAP share the scorer's model rather than loading a second copy.
    clap = getattr(scorer, "scorer", scorer) if hasattr(getattr(scorer, "scorer", scorer), "embed_audio") else args.clap
    skipped: list[tuple[str, str]] = []
    experts = registered_experts(names, {"corpus": str(corpus), "clap": clap, "device": resolve_device(args.device)},
                                 skipped)
    for name, reason in skipped:
        print(f"mka: warning: caption expert '{name}' left out: {reason}", file=sys.stderr)
    decisions = distill_rows(rows, experts, scorer, threshold=threshold, batch_size=args.batch_size,
                             progress=None if args.quiet else _progress(len(rows)))
    write_manifest(args.out, apply_decisions(rows, decisions))
    if args.report:
        atomic_write_text(Path(args.report), json.dumps([_record(d) for d in decisions], indent=2) + "\n")
    report(decisions, threshold, args.out)
    return 0


def load_scorer(source: str, device: str):
    from mka_core.devices import resolve_device
    from mka_core.ranking import load_clap_scorer

    from mka_core.errors import WeightsError

    try:
        scorer = load_clap_scorer(source, device=resolve_device(device))
    except WeightsError as exc:
        if source in ("clap", "laion-clap", "laion"):
            raise WeightsError(f"{exc} To download them: mka weights pull laion-clap-630k-audioset --allow-network.") from None
        raise
    if not hasattr(scorer, "score_candidates"):
        from training.data.distill import PairScorer

        scorer = PairScorer(scorer)
    return scorer


def _progress(total: int):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    progress = Progress(TextColumn("[bold]captioning"), BarColumn(), MofNCompleteColumn(),
                        console=Console(stderr=True), transient=True)
    progress.start()
    task = progress.add_task("captioning", total=total)
    done = {"n": 0}

    def step(count: int) -> None:
        done["n"] += count
        progress.update(task, completed=done["n"])
        if done["n"] >= total:
            progress.stop()

    return step


def _record(decision) -> dict:
    return {"name": decision.name, "old_caption": decision.old_caption, "caption": decision.caption,
            "replaced": decision.replaced, "reason": decision.reason,
            "candidates": [{"expert": c.expert, "caption": c.caption, "score": round(c.score, 6)}
                           for c in decision.candidates]}


def report(decisions, threshold: float, out: str) -> None:
    replaced = sum(d.replaced for d in decisions)
    print(f"replaced {replaced} of {len(decisions)} captions (threshold {threshold:g}) -> {out}")
    kept = [d for d in decisions if not d.replaced]
    if kept:
        print(f"kept the original caption of {len(kept)} row(s):")
        for d in kept:
            best = f" (best {d.best.score:.4f}: {d.best.caption!r} from {d.best.expert})" if d.best else ""
            print(f"  {d.name}: {d.reason}{best}")
