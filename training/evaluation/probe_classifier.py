"""A linear probe on a pretrained audio classifier's embeddings (``mka eval train-classifier --features NAME``).

Why: a judge trained from scratch on a small real corpus is a weak listener (the built-in mel
CNN reaches 68.5 % on the default model's real held-out recordings), and a weak listener cannot
see what a part of the model loses. A network pretrained on a large body of real audio hears
more; a linear head on its frozen embeddings, trained on the corpus's real rows only, names the
corpus's classes with that hearing (the same idea as Fréchet distances in VGGish or PANNs space).
The features come from any registered audio-classifier plugin (``birdnet`` ships with mka), so
the head never sees generated or synthetic audio unless the manifest gives it some.

What is saved: ``classifier.json`` (``"classifier": "probe"``, the feature classifier's name,
the classes, the L2 strength chosen) and ``classifier.safetensors`` (the feature mean and
standard deviation of the training clips, the linear layer). Loading needs the feature
classifier installed.

The head: the features are standardised, then one linear layer gives logits, softmax gives
probabilities. Training is full-batch L-BFGS on the mean cross-entropy against the clip's labels
spread evenly (as the mel CNN), plus ``l2 * |W|^2``; ``l2`` is chosen from a small grid by the
held-out clips' accuracy (ties: the stronger penalty). It is deterministic: same clips, same head.
``embed`` returns the *feature* embeddings (what the Fréchet distance compares) and the head's
probabilities (what KL and accuracy use).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import nn

from mka_core.classifiers import AudioClassifier, ClassifierOutput
from mka_core.config import StrictModel
from mka_core.errors import InputError
from training.evaluation.classifier import PROBE_KIND

#: The L2 strengths tried, strongest first (a tie keeps the stronger one).
L2_GRID = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4)


class ProbeConfig(StrictModel):
    features: str = Field(description="The registered audio classifier whose embeddings the probe reads.")
    classes: list[str] = Field(min_length=1, description="Class names, in output order.")
    feature_dim: int = Field(gt=0, description="Width of the feature classifier's embedding.")
    l2: float = Field(0.0, ge=0, description="The L2 penalty the head was trained with (chosen on held-out clips).")


class LinearProbe(nn.Module):
    """Standardised features ``[B, D]`` -> logits ``[B, C]``."""

    def __init__(self, config: ProbeConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("feature_mean", torch.zeros(config.feature_dim))
        self.register_buffer("feature_std", torch.ones(config.feature_dim))
        self.linear = nn.Linear(config.feature_dim, len(config.classes))

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.feature_mean) / self.feature_std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.standardise(features))


class ProbeClassifier(AudioClassifier):
    """A :class:`LinearProbe` behind a feature classifier: ``mka eval --classifier FOLDER``."""

    kind = PROBE_KIND
    multi_label = False

    def __init__(self, features: AudioClassifier, probe: LinearProbe, *, name: str = PROBE_KIND) -> None:
        self.features = features
        self.probe = probe.eval().requires_grad_(False)
        self.config = probe.config
        self.name = name
        self.classes = list(probe.config.classes)

    @torch.no_grad()
    def embed(self, waves: Sequence[torch.Tensor]) -> ClassifierOutput:
        output = self.features.embed(waves)
        embeddings = output.embeddings.float().cpu()
        if embeddings.shape[-1] != self.config.feature_dim:
            raise InputError(f"The probe '{self.name}' reads {self.config.feature_dim}-wide '{self.features.name}' "
                             f"embeddings, but the installed '{self.features.name}' gives {embeddings.shape[-1]}; "
                             "train the probe again with it.")
        return ClassifierOutput(embeddings, torch.softmax(self.probe(embeddings), dim=-1))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "features": self.features.describe()}

    def save(self, folder: str | Path, training: dict[str, Any] | None = None) -> Path:
        return save_probe(self.probe, folder, name=self.name, training=training)

    @classmethod
    def load(cls, source: str | Path | None, device: str | torch.device = "cpu") -> ProbeClassifier:
        from training.evaluation.classifier import load_classifier, load_classifier_module

        if source is None:
            raise InputError("A probe classifier needs a folder made by `mka eval train-classifier --features NAME`.")
        folder = Path(source)
        probe, record = load_classifier_module(folder, ProbeConfig, LinearProbe)
        features = load_classifier(probe.config.features, device=device)
        return cls(features, probe, name=record.get("name") or folder.name)


def embed_clips(features: AudioClassifier, waves: Iterable[torch.Tensor]) -> torch.Tensor:
    """Feature embeddings ``[N, D]`` of the clips, one clip per call (a clip embeds the same in any batch).
    ``waves`` may be a generator, so a corpus is read one clip at a time, never held whole."""
    rows = [features.embed([wave]).embeddings.float().cpu() for wave in waves]
    return torch.cat(rows) if rows else torch.zeros(0, 0)


def fit_probe(features: str, classes: Sequence[str], train_x: torch.Tensor, train_labels: Sequence[Sequence[int]],
              valid_x: torch.Tensor, valid_labels: Sequence[Sequence[int]], *, l2_grid: Sequence[float] = L2_GRID,
              on_fit: Callable[[dict[str, Any]], None] | None = None) -> tuple[LinearProbe, dict[str, Any]]:
    """Train the head for each L2 strength; keep the one with the best held-out accuracy."""
    from training.evaluation.metrics import label_accuracy

    if len(train_x) < 2 or len(valid_x) < 1:
        raise InputError(f"Training a probe needs at least 2 labelled clips and 1 held-out clip, got {len(train_x)} "
                         f"and {len(valid_x)}.")
    started = time.monotonic()
    train_x, valid_x = train_x.double(), valid_x.double()
    targets = torch.zeros(len(train_x), len(classes), dtype=torch.float64)
    for row, labels in enumerate(train_labels):
        targets[row, list(labels)] = 1.0 / len(labels)
    mean = train_x.mean(dim=0)
    std = train_x.std(dim=0, unbiased=False).clamp(min=1e-6)
    z = (train_x - mean) / std
    best: tuple[tuple[float, float], LinearProbe, dict[str, Any]] | None = None
    history = []
    for l2 in l2_grid:
        weight, bias = _lbfgs_softmax(z, targets, l2)
        probe = LinearProbe(ProbeConfig(features=features, classes=list(classes), feature_dim=train_x.shape[1], l2=l2))
        with torch.no_grad():
            probe.feature_mean.copy_(mean.float())
            probe.feature_std.copy_(std.float())
            probe.linear.weight.copy_(weight.float())
            probe.linear.bias.copy_(bias.float())
            train_acc = label_accuracy(torch.softmax(probe(train_x.float()), -1), train_labels)
            valid_acc = label_accuracy(torch.softmax(probe(valid_x.float()), -1), valid_labels)
        record = {"l2": l2, "train_accuracy": train_acc, "valid_accuracy": valid_acc}
        history.append(record)
        if on_fit is not None:
            on_fit(record)
        if best is None or valid_acc > best[0][0]:
            best = ((valid_acc, l2), probe, record)
    assert best is not None
    summary = {"l2": best[2]["l2"], "valid_accuracy": best[2]["valid_accuracy"],
               "train_accuracy": best[2]["train_accuracy"], "train_clips": len(train_x), "valid_clips": len(valid_x),
               "seconds": round(time.monotonic() - started, 1), "history": history}
    return best[1].eval(), summary


def _lbfgs_softmax(z: torch.Tensor, targets: torch.Tensor, l2: float, iterations: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    # A convex problem: full-batch L-BFGS from zero reaches the same optimum on every machine.
    weight = torch.zeros(targets.shape[1], z.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(targets.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=iterations, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = z @ weight.T + bias
        loss = -(targets * torch.log_softmax(logits, dim=-1)).sum(dim=1).mean() + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def save_probe(probe: LinearProbe, folder: str | Path, *, name: str | None = None,
               training: dict[str, Any] | None = None) -> Path:
    """Write ``classifier.safetensors`` then ``classifier.json`` (each atomically) into ``folder``."""
    from training.evaluation.classifier import save_classifier_folder

    return save_classifier_folder(folder, PROBE_KIND, probe.state_dict(), probe.config.model_dump(mode="json"),
                                  name=name, training=training)


__all__ = ["PROBE_KIND", "LinearProbe", "ProbeClassifier", "ProbeConfig", "embed_clips", "fit_probe", "save_probe"]
