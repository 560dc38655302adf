"""Training the built-in mel-CNN classifier on a labelled manifest (``mka eval train-classifier``).

The manifest rows carry a ``labels`` column of ``;``-separated class names (the synthetic
corpus writes it). The classes are the labels seen in the training manifest, sorted.

Recipe: each clip's full log-mel is computed once (mka's front end) and kept in memory as
float16; every epoch draws one random crop of ``crop_seconds`` per clip (shorter clips are
tiled, as mka's diffusion training does) and a random gain of up to ±``gain_db`` dB. A gain
is a constant shift of the log10 mel (``dB / 20``), so it is applied to the cached mel, then
re-floored. The loss is cross-entropy against the clip's labels spread evenly (a composition of
two classes is half one, half the other), or binary cross-entropy on multi-hot targets for a
``multi_label`` classifier. After each epoch the held-out clips are scored whole; the weights of the best epoch
(highest accuracy, then lowest loss) are kept. Accuracy: the top class is one of the labels.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from mka_core.errors import InputError
from training.data.manifest import ManifestRow
from training.evaluation.classifier import MelCnn, MelCnnConfig


@dataclass
class TrainSettings:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    crop_seconds: float = 5.0
    gain_db: float = 6.0
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        if self.epochs < 1:
            raise InputError(f"--epochs must be at least 1, got {self.epochs}.")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {self.batch_size}.")
        if not self.lr > 0:
            raise InputError(f"--lr must be positive, got {self.lr:g}.")
        if not self.crop_seconds > 0:
            raise InputError(f"--crop-seconds must be positive, got {self.crop_seconds:g}.")
        if self.gain_db < 0:
            raise InputError(f"--gain-db must be 0 or more, got {self.gain_db:g}.")


@dataclass
class LabelledMels:
    """Full-clip log-mels ``[n_mels, frames]`` (float16) with multi-hot targets and label indices."""

    mels: list[torch.Tensor]
    targets: torch.Tensor
    labels: list[list[int]]
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.mels)


def class_names(rows: Sequence[ManifestRow], where: str) -> list[str]:
    """The sorted set of labels in ``rows``; every row must carry at least one."""
    check_labels(rows, where)
    return sorted({label for row in rows for label in row.labels})


def check_labels(rows: Sequence[ManifestRow], where: str, known: Sequence[str] | None = None) -> None:
    """Every row has a label, and (with ``known``) only labels from ``known``."""
    if not rows:
        raise InputError(f"The manifest {where} has no rows.")
    if all("labels" not in row.extra for row in rows):
        raise InputError(f"The manifest {where} has no 'labels' column; add one with ';'-separated class names "
                         "(the synthetic corpus has it).")
    for row in rows:
        if not row.labels:
            raise InputError(f"Row '{row.name}' of {where} has an empty 'labels' value; give it at least one class.")
        if known is not None:
            unknown = [label for label in row.labels if label not in known]
            if unknown:
                shown = ", ".join(list(known)[:20]) + (" ..." if len(known) > 20 else "")
                raise InputError(f"Row '{row.name}' of {where} has the label '{unknown[0]}', which the classifier does "
                                 f"not know (its classes: {shown}); give a --classifier trained on these labels "
                                 "(mka eval train-classifier), or --no-accuracy.")


def real_rows_only(rows: Sequence[ManifestRow], where: str) -> list[ManifestRow]:
    """The rows made only of real recordings: ``origin`` is ``recording`` or ``composed`` (the
    column `mka data real` writes); augmented and synthetic rows are left out."""
    from training.data.real.build import REAL_ORIGINS

    if not rows or all("origin" not in row.extra for row in rows):
        raise InputError(f"--real-only needs an 'origin' column in {where}; manifests made by `mka data real` have one.")
    kept = [row for row in rows if row.extra.get("origin") in REAL_ORIGINS]
    if not kept:
        raise InputError(f"{where} has no row of real recordings (origin {' or '.join(REAL_ORIGINS)}).")
    return kept


def load_labelled_mels(rows: Sequence[ManifestRow], classes: Sequence[str], config: MelCnnConfig,
                       progress: Callable[[int, int], None] | None = None) -> LabelledMels:
    from mka_core.audio.io import load_audio
    from mka_core.audio.mel import MelFrontEnd

    front_end = MelFrontEnd(config.mel)
    index = {name: i for i, name in enumerate(classes)}
    mels, labels = [], []
    targets = torch.zeros(len(rows), len(classes))
    for i, row in enumerate(rows):
        wave = load_audio(row.audio_path, config.mel.sample_rate)
        if wave.numel() < config.mel.n_fft:
            raise InputError(f"The clip of row '{row.name}' ({row.audio_path}) is too short to classify.")
        mels.append(front_end(wave)[0, 0].to(torch.float16))
        labels.append([index[label] for label in row.labels])
        targets[i, labels[-1]] = 1.0
        if progress is not None:
            progress(i + 1, len(rows))
    return LabelledMels(mels, targets, labels, [row.name for row in rows])


def random_crops(data: LabelledMels, order: Sequence[int], frames: int, gain_db: float, floor: float,
                 generator: torch.Generator) -> torch.Tensor:
    """``[B, 1, n_mels, frames]`` random crops (tiled when short) with random gains."""
    from mka_core.audio.mel import tile_or_crop

    crops = []
    for i in order:
        mel = data.mels[i].float()
        length = mel.shape[-1]
        if length > frames:
            start = int(torch.randint(0, length - frames + 1, (1,), generator=generator))
            mel = mel[:, start : start + frames]
        else:
            mel = tile_or_crop(mel, frames)
        if gain_db > 0:
            shift = (torch.rand((), generator=generator) * 2 - 1) * gain_db / 20.0  # dB -> log10 magnitude
            mel = (mel + shift).clamp(min=floor)
        crops.append(mel)
    return torch.stack(crops)[:, None]


@torch.no_grad()
def score_mels(model: MelCnn, data: LabelledMels, device: torch.device, batch_size: int = 16) -> tuple[float, float]:
    """(accuracy, mean BCE) of ``model`` on whole clips; equal-length clips share a batch."""
    from training.evaluation.metrics import label_accuracy

    model.eval()
    by_length: dict[int, list[int]] = {}
    for i, mel in enumerate(data.mels):
        by_length.setdefault(mel.shape[-1], []).append(i)
    logits = torch.zeros(len(data), data.targets.shape[1])
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            batch = torch.stack([data.mels[i].float() for i in chunk])[:, None].to(device)
            logits[chunk] = model(batch)[1].float().cpu()
    loss = _loss(model.config, logits, data.targets)
    probs = torch.sigmoid(logits) if model.config.multi_label else torch.softmax(logits, -1)
    return label_accuracy(probs, data.labels), float(loss)


def _loss(config: MelCnnConfig, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if config.multi_label:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    # Single-label training: the multi-hot row spread evenly is the target distribution.
    distribution = targets / targets.sum(dim=1, keepdim=True)
    return torch.nn.functional.cross_entropy(logits, distribution)


def train_classifier(train: LabelledMels, valid: LabelledMels, config: MelCnnConfig, settings: TrainSettings,
                     on_epoch: Callable[[dict[str, Any]], None] | None = None) -> tuple[MelCnn, dict[str, Any]]:
    """Train a :class:`MelCnn`; returns the best epoch's model (on the CPU) and a summary."""
    from mka_core.devices import resolve_device

    settings.check()
    if config.mel.scaling != "log10":
        raise InputError("The classifier recipe's gain jitter expects the log10 mel front end.")
    if len(train) < 2 or len(valid) < 1:
        raise InputError(f"Training needs at least 2 labelled clips and 1 held-out clip, got {len(train)} and {len(valid)}.")
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    model = MelCnn(config)
    model.set_input_statistics([mel.float() for mel in train.mels])
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = max(1, len(train) // settings.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, total_steps=steps_per_epoch * settings.epochs,
                                                    pct_start=0.1)
    generator = torch.Generator().manual_seed(settings.seed)
    frames = max(16, int(round(settings.crop_seconds * config.mel.frames_per_second)))
    floor = math.log10(config.mel.log_floor)
    best: dict[str, Any] | None = None
    best_state: dict[str, torch.Tensor] = {}
    history = []
    started = time.monotonic()
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=generator).tolist()
        losses = []
        for step in range(steps_per_epoch):
            batch_ids = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            x = random_crops(train, batch_ids, frames, settings.gain_db, floor, generator).to(device)
            logits = model(x)[1].float()
            loss = _loss(config, logits, train.targets[batch_ids].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        accuracy, valid_loss = score_mels(model, valid, device)
        record = {"epoch": epoch, "train_loss": sum(losses) / max(1, len(losses)), "valid_accuracy": accuracy,
                  "valid_loss": valid_loss}
        history.append(record)
        if best is None or (accuracy, -valid_loss) > (best["valid_accuracy"], -best["valid_loss"]):
            best = record
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch(record)
    model.load_state_dict(best_state)
    summary = {
        "epochs": settings.epochs, "best_epoch": best["epoch"], "valid_accuracy": best["valid_accuracy"],
        "valid_loss": best["valid_loss"], "train_clips": len(train), "valid_clips": len(valid),
        "settings": {k: getattr(settings, k) for k in ("batch_size", "lr", "weight_decay", "crop_seconds", "gain_db", "seed")},
        "seconds": round(time.monotonic() - started, 1), "history": history,
    }
    return model.cpu().eval(), summary


def split_for_validation(rows: list[ManifestRow], fraction: float = 0.1) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """Every ``round(1 / fraction)``-th row for validation, the rest for training (deterministic)."""
    if len(rows) < 4:
        raise InputError(f"Only {len(rows)} labelled rows: give a --valid manifest, or at least 4 rows to split.")
    step = max(2, round(1 / fraction))
    valid = rows[step - 1 :: step]
    train = [row for i, row in enumerate(rows) if (i + 1) % step]
    return train, valid
