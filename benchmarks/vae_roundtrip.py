"""Tonal sounds through a model's VAE: how much of their harmonic structure the round trip keeps.

    python benchmarks/vae_roundtrip.py --manifest data/real/heldout.tsv \
        --model old=path/to/old_model --model new=mka_core/default_model \
        --report old=old-vae.json --report new=new-vae.json --report vocoder=vocoder.json

For every held-out clip whose first label is a tonal class (sirens, whistles, engines, horns,
bells, alarms, instruments), the clip's mel goes through each model's VAE (posterior mean, then
the decoder) and the table gives, per class, the median spectral flatness of the mel frames
(geometric over arithmetic mean of the power per frame: near 0 for a few sharp harmonics, near 1
for white noise) before and after, and the mel L1 of the round trip. ``--report NAME=JSON`` adds
the per-class accuracy of a `mka eval` report (e.g. `--resynthesize vae` / `vocoder`) of the
same manifest. It prints a Markdown table; nothing is written.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

TONAL = ("siren", "whistle", "engine", "car_horn", "bell", "alarm", "clock_tick", "cello", "flute", "guitar",
         "harp", "marimba", "organ", "piano", "saxophone", "trumpet", "violin")


def flatness(mel_db: torch.Tensor, pipe) -> float:
    """Median over frames of the spectral flatness of the mel power (mel in the pipeline's scaling)."""
    magnitude = torch.pow(10.0, pipe.mel_frontend.to_log10(mel_db.float()))      # any scaling -> log10 magnitude -> linear
    power = (magnitude ** 2).clamp_min(1e-20)[0, 0]                       # [n_mels, frames]
    geo = torch.exp(torch.log(power).mean(0))
    arith = power.mean(0)
    return float((geo / arith).median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--report", action="append", default=[], metavar="NAME=JSON")
    parser.add_argument("--classes", default=",".join(TONAL))
    args = parser.parse_args()

    from mka_core.pipeline import Pipeline
    from training.data.manifest import read_manifest
    from training.evaluation.evaluate import reference_mel

    torch.set_grad_enabled(False)
    wanted = args.classes.split(",")
    rows = [r for r in read_manifest(args.manifest) if r.labels and r.labels[0] in wanted]
    models = dict(item.split("=", 1) for item in args.model)
    stats: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    first = next(iter(models), None)
    for name, folder in models.items():
        pipe = Pipeline.from_pretrained(folder, device="cpu")
        for row in rows:
            _, mel = reference_mel(pipe, row)
            recon = pipe.decode_latents(pipe.encode_mel(mel))
            label = row.labels[0]
            if name == first:
                stats["input"][label].append(flatness(mel, pipe))
            stats[name][label].append(flatness(recon, pipe))
            stats[f"{name} L1"][label].append(float((recon - mel).abs().mean()))
    accuracy: dict[str, dict[str, list[bool]]] = {}
    for item in args.report:
        name, path = item.split("=", 1)
        per_class: dict[str, list[bool]] = defaultdict(list)
        for entry in json.loads(Path(path).read_text())["items"]:
            if entry["labels"] and entry["labels"][0] in wanted:
                per_class[entry["labels"][0]].append(bool(entry["correct"]))
        accuracy[name] = per_class

    classes = [c for c in wanted if any(r.labels[0] == c for r in rows)]
    head = ["class", "clips", "flatness: input"] + [f"flatness: {m}" for m in models] + [f"mel L1: {m}" for m in models]
    head += [f"accuracy: {r}" for r in accuracy]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label in classes:
        count = sum(r.labels[0] == label for r in rows)
        cells = [label, str(count), f"{np.median(stats['input'][label]):.4f}"]
        cells += [f"{np.median(stats[m][label]):.4f}" for m in models]
        cells += [f"{np.mean(stats[f'{m} L1'][label]):.3f}" for m in models]
        for per_class in accuracy.values():
            hits = per_class.get(label, [])
            cells.append(f"{sum(hits)}/{len(hits)}" if hits else "-")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
