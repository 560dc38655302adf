"""The default model judged by a classifier mka did not write: BirdNET V2.4 (``mka[birdnet]``).

    python -m benchmarks.independent_check                      # the embedded default model
    python -m benchmarks.independent_check --model runs/x/export --guidance 7 --out check.json
    python -m benchmarks.independent_check --references DIR      # score recordings, no model

BirdNET knows five of the default model's classes: birds, dog barks, engines, sirens and human
whistling. ``training/evaluation/independent_prompts.tsv`` holds eight prompts per class, worded
by hand unlike the training captions. Each prompt is generated once (5 s, seed ``--seed + row``)
and scored by :mod:`mka_plugins.classifiers.birdnet` (each group's best 3 s window). A clip is
**recognised** when, of those five groups, its own class scores highest; **detected** when its
class scores at least ``--threshold`` (BirdNET's usual 0.1 cut). The table also lists the label
BirdNET itself ranks first most often in each class, so a miss says what was heard instead.

``--references DIR`` scores a folder of ``<class>*.wav`` recordings the same way (the judge's own
ceiling on real audio; no model involved). ``--save-audio DIR`` keeps the generated clips.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import soundfile as sf
import torch

PROMPTS = Path(__file__).resolve().parent.parent / "training" / "evaluation" / "independent_prompts.tsv"
CLASSES = ("birds", "dog_bark", "engine", "siren", "whistle")


def read_prompts(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    bad = [r["name"] for r in rows if r.get("labels") not in CLASSES]
    if bad:
        raise SystemExit(f"{path}: rows {', '.join(bad[:5])} have a label outside {', '.join(CLASSES)}.")
    return rows


def generate(rows: list[dict[str, str]], args) -> list[torch.Tensor]:
    from mka_core.model_lookup import resolve_model
    from mka_core.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(resolve_model(args.model), device=args.device)
    waves = []
    for index, row in enumerate(rows):
        kwargs = {"duration": args.duration, "seed": args.seed + index}
        for key in ("guidance", "steps", "sampler"):
            if getattr(args, key) is not None:
                kwargs[key] = getattr(args, key)
        result = pipe([row["caption"]], **kwargs)
        wave = result.waveforms[0].float().cpu()
        waves.append(wave)
        if args.save_audio:
            Path(args.save_audio).mkdir(parents=True, exist_ok=True)
            sf.write(Path(args.save_audio) / f"{row['name']}.wav", wave.numpy(), result.sample_rate)
        print(f"  {row['name']}: {row['caption']}", file=sys.stderr, flush=True)
    return waves


def read_references(folder: Path) -> tuple[list[dict[str, str]], list[torch.Tensor]]:
    rows, waves = [], []
    for path in sorted(folder.glob("*.wav")):
        label = next((c for c in CLASSES if path.stem.startswith(c)), None)
        if label is None:
            continue
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        if rate != 16000:
            raise SystemExit(f"{path} is {rate} Hz; the check reads 16 kHz clips (mka's rate).")
        rows.append({"name": path.stem, "caption": "", "labels": label})
        waves.append(torch.from_numpy(audio.mean(axis=1)))
    return rows, waves


def score(rows, waves, threshold: float) -> dict:
    from training.evaluation.classifier import load_classifier

    judge = load_classifier("birdnet")
    columns = [judge.classes.index(c) for c in CLASSES]
    per_class: dict[str, dict] = defaultdict(lambda: {"clips": 0, "recognised": 0, "detected": 0, "heard": Counter()})
    clips = []
    for row, wave in zip(rows, waves):
        scores = judge.window_scores(wave)[1]  # BirdNET runs once per clip; both readings come from it
        probs = judge.group_scores(scores)
        best = CLASSES[int(probs[columns].argmax())]
        label = row["labels"]
        own = float(probs[judge.classes.index(label)])
        top = judge.best_labels(scores, 1)[0]
        entry = per_class[label]
        entry["clips"] += 1
        entry["recognised"] += int(best == label)
        entry["detected"] += int(own >= threshold)
        entry["heard"][top[0].split("_")[-1]] += 1
        clips.append({"name": row["name"], "label": label, "best_of_five": best, "score": round(own, 4),
                      "birdnet_top": top[0], "birdnet_top_score": round(top[1], 4)})
    table = {}
    for label in CLASSES:
        entry = per_class.get(label)
        if not entry:
            continue
        table[label] = {"clips": entry["clips"], "recognised": entry["recognised"], "detected": entry["detected"],
                        "most_heard": entry["heard"].most_common(1)[0][0]}
    return {"classes": table, "clips": clips}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="pipeline folder or name (default: the embedded model)")
    parser.add_argument("--prompts", type=Path, default=PROMPTS, help="TSV: name, caption, labels")
    parser.add_argument("--references", type=Path, default=None, help="score <class>*.wav recordings instead")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--sampler", default=None)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--save-audio", default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)

    if args.references is not None:
        rows, waves = read_references(args.references)
        source = f"recordings in {args.references}"
    else:
        rows = read_prompts(args.prompts)
        waves = generate(rows, args)
        source = f"model {args.model or 'default'}, {args.duration:g} s, seeds {args.seed}+row"
    report = score(rows, waves, args.threshold)
    report["source"] = source
    print(f"BirdNET V2.4 on {source}")
    print(f"{'class':10s} {'clips':>5s} {'recognised':>11s} {'detected':>9s}  most often BirdNET's top label")
    for label, entry in report["classes"].items():
        half = "yes" if 2 * entry["recognised"] >= entry["clips"] else "no"
        print(f"{label:10s} {entry['clips']:5d} {entry['recognised']:7d} ({half:>3s}) {entry['detected']:9d}  "
              f"{entry['most_heard']}")
    total = sum(e["clips"] for e in report["classes"].values())
    recognised = sum(e["recognised"] for e in report["classes"].values())
    print(f"{'all':10s} {total:5d} {recognised:7d}       (chance of the best-of-five rule: 1 in 5)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
