"""Audio classifiers for ``mka eval``: the contract, the built-in mel CNN, and how one is found.

**Contract.** :class:`AudioClassifier`, :class:`ClassifierOutput` and
:func:`embed_in_length_batches` live in :mod:`mka_core.classifiers` (a plugin builds on them
without importing ``training``) and are re-exported here.

**Third parties** (for example PANNs networks with their AudioSet weights) register a class
through the ``register_audio_classifiers(register)`` hook. The class has a ``name`` and a
classmethod ``load(source, device)`` returning an instance; ``source`` is None when the user
gave the name, or the folder when a folder's ``classifier.json`` names the class.

**Built-in** :class:`MelCnnClassifier`: a small CNN on the log-mel of mka's own front end,
trained by ``mka eval train-classifier`` (see :mod:`training.evaluation.train_classifier`) and
saved as ``classifier.json`` + ``classifier.safetensors``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from pydantic import Field
from torch import nn

from mka_core.audio.mel import MelConfig, MelFrontEnd
from mka_core.classifiers import AudioClassifier, ClassifierOutput, embed_in_length_batches
from mka_core.config import StrictModel
from mka_core.errors import InputError

CLASSIFIER_JSON = "classifier.json"
CLASSIFIER_WEIGHTS = "classifier.safetensors"
BUILTIN_KIND = "mel-cnn"
#: A linear head on a registered classifier's embeddings (:mod:`training.evaluation.probe_classifier`).
PROBE_KIND = "probe"
SAMPLE_RATE = 16000


# -- the built-in mel CNN ---------------------------------------------------------------------


class MelCnnConfig(StrictModel):
    """The built-in classifier's architecture and the front end it listens through."""

    classes: list[str] = Field(default_factory=list, description="Class names, in output order.")
    channels: list[int] = Field([16, 32, 64, 128], min_length=1, description="Channels of each conv block (each halves time and frequency).")
    embed_dim: int = Field(128, gt=0, description="Width of the embedding layer the Fréchet distance uses.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout before the embedding and the output layers (training only).")
    multi_label: bool = Field(
        False,
        description="False: one softmax over the classes, trained with cross-entropy against the clip's labels spread "
        "evenly (learns far faster than per-class sigmoids on small data). True: a sigmoid per class, binary cross-entropy.",
    )
    mel: MelConfig = Field(default_factory=MelConfig, description="The log-mel front end (mka's own by default).")

    @classmethod
    def preset(cls, name: str) -> "MelCnnConfig":
        """``tiny`` (tests, seconds on a CPU) or ``base`` (the documented synthetic-corpus recipe)."""
        if name == "tiny":
            return cls(channels=[8, 16], embed_dim=32, dropout=0.0)
        if name == "base":
            return cls()
        raise InputError(f"Unknown classifier preset '{name}'; valid presets are 'tiny' and 'base'.")


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class _ConvBlock(nn.Sequential):
    # GroupNorm, not BatchNorm: no running statistics, so a short training run evaluates as it
    # trained, and a clip's embedding never depends on the rest of its batch.
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(_groups(cout), cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(_groups(cout), cout), nn.ReLU(inplace=True),
            nn.AvgPool2d(2, ceil_mode=True),
        )


class MelCnn(nn.Module):
    """Log-mel ``[B, 1, n_mels, frames]`` -> (embedding ``[B, D]``, logits ``[B, C]``); any number of frames."""

    config_class = MelCnnConfig

    def __init__(self, config: MelCnnConfig) -> None:
        super().__init__()
        if not config.classes:
            raise InputError("A classifier needs at least one class.")
        self.config = config
        # Each mel bin is standardised with the training set's mean and std (set by the trainer,
        # saved with the weights): quiet high bands then weigh as much as loud low ones.
        self.register_buffer("bin_mean", torch.zeros(config.mel.n_mels))
        self.register_buffer("bin_std", torch.ones(config.mel.n_mels))
        widths = [1, *config.channels]
        self.blocks = nn.Sequential(*[_ConvBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.dropout = nn.Dropout(config.dropout)
        # Frequency is folded into the channels rather than averaged away: a small network
        # cannot encode *where* in the spectrum a pattern sits in its channels alone.
        bins = config.mel.n_mels
        for _ in config.channels:
            bins = -(-bins // 2)
        self.embedding = nn.Linear(config.channels[-1] * bins, config.embed_dim)
        self.head = nn.Linear(config.embed_dim, len(config.classes))

    @torch.no_grad()
    def set_input_statistics(self, mels: Sequence[torch.Tensor]) -> None:
        """Per-bin mean and std over every frame of ``mels`` (each ``[n_mels, frames]``), in float64."""
        total = sum(m.shape[-1] for m in mels)
        mean = sum(m.double().sum(dim=-1) for m in mels) / total
        var = sum(((m.double() - mean[:, None]) ** 2).sum(dim=-1) for m in mels) / total
        self.bin_mean.copy_(mean.float())
        self.bin_std.copy_(var.sqrt().clamp(min=1e-3).float())

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (mel - self.bin_mean[:, None]) / self.bin_std[:, None]
        x = self.blocks(x).flatten(1, 2)  # [B, C, F, T] -> [B, C*F, T]
        # Mean + max over time: the mean hears textures, the max hears short events.
        pooled = x.mean(dim=-1) + x.amax(dim=-1)
        embedding = torch.relu(self.embedding(self.dropout(pooled)))
        return embedding, self.head(self.dropout(embedding))


class MelCnnClassifier(AudioClassifier):
    """The built-in classifier: :class:`MelCnn` behind mka's mel front end."""

    kind = BUILTIN_KIND

    def __init__(self, model: MelCnn, *, name: str = BUILTIN_KIND, device: str | torch.device = "cpu",
                 batch_size: int = 16) -> None:
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.config = model.config
        self.name = name
        self.classes = list(model.config.classes)
        self.multi_label = model.config.multi_label
        self.front_end = MelFrontEnd(model.config.mel)
        self.batch_size = batch_size
        self.to(device)

    def to(self, device: str | torch.device) -> "MelCnnClassifier":
        from mka_core.devices import resolve_device

        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.model.to(self.device)
        self.front_end.to(self.device)
        return self

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)

    @torch.no_grad()
    def embed(self, waves: Sequence[torch.Tensor]) -> ClassifierOutput:
        waves = [_check_wave(w) for w in waves]
        def forward(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            embedding, logits = self.model(self.front_end(batch.to(self.device, torch.float32)))
            return embedding, self.probabilities(logits.float())

        return embed_in_length_batches(waves, self.batch_size, forward, self.config.embed_dim, len(self.classes))

    # -- persistence ------------------------------------------------------------------------
    def save(self, folder: str | Path, training: dict[str, Any] | None = None) -> Path:
        return save_mel_cnn(self.model, folder, training=training)

    @classmethod
    def load(cls, source: str | Path | None, device: str | torch.device = "cpu") -> "MelCnnClassifier":
        if source is None:
            raise InputError("The built-in classifier needs a folder made by `mka eval train-classifier`.")
        folder = Path(source)
        model, record = load_classifier_module(folder, MelCnnConfig, MelCnn)
        return cls(model, name=record.get("name") or folder.name, device=device)


def load_classifier_module(folder: Path, config_class: type, module_class: type) -> tuple[nn.Module, dict[str, Any]]:
    """A classifier folder's network: its ``classifier.json`` config checked, its weights loaded, one
    sentence for each way the folder can be broken. Returns the module and the JSON record."""
    from mka_core.errors import WeightsError
    from mka_core.weights import load_safetensors

    record = read_classifier_json(folder)
    try:
        config = config_class(**record.get("config", {}))
    except Exception as exc:
        raise InputError(f"{folder / CLASSIFIER_JSON} has an invalid config ({_first_line(exc)}).") from exc
    module = module_class(config)
    try:
        module.load_state_dict(load_safetensors(folder / CLASSIFIER_WEIGHTS))
    except RuntimeError as exc:
        raise WeightsError(f"{folder / CLASSIFIER_WEIGHTS} does not fit its classifier.json ({_first_line(exc)}); "
                           "train the classifier again.") from exc
    return module, record


def save_mel_cnn(model: MelCnn, folder: str | Path, *, training: dict[str, Any] | None = None) -> Path:
    """Write ``classifier.safetensors`` then ``classifier.json`` (each atomically) into ``folder``."""
    return save_classifier_folder(folder, BUILTIN_KIND, model.state_dict(), model.config.model_dump(mode="json"),
                                  training=training)


def save_classifier_folder(folder: str | Path, kind: str, state: dict[str, torch.Tensor], config: dict[str, Any], *,
                           name: str | None = None, training: dict[str, Any] | None = None) -> Path:
    """A classifier folder of any kind: the weights, then ``classifier.json`` naming ``kind`` (each written atomically)."""
    from mka_core import __version__
    from mka_core.weights import save_safetensors, write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_safetensors({k: v.detach().cpu().contiguous() for k, v in state.items()}, folder / CLASSIFIER_WEIGHTS)
    write_json(folder / CLASSIFIER_JSON, {
        "classifier": kind, "name": name or folder.name, "mka_version": __version__,
        "config": config, "training": training or {},
    })
    return folder


def read_classifier_json(folder: Path) -> dict[str, Any]:
    import json

    path = folder / CLASSIFIER_JSON
    if not path.is_file():
        raise InputError(f"{folder} is not a classifier folder (no {CLASSIFIER_JSON}); make one with "
                         "`mka eval train-classifier`.")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); train the classifier again.") from exc
    if not isinstance(record, dict) or not isinstance(record.get("classifier"), str):
        raise InputError(f"{path} does not say which classifier it holds (a 'classifier' field).")
    return record


def _check_wave(wave: torch.Tensor) -> torch.Tensor:
    wave = torch.as_tensor(wave).detach().float().flatten().cpu()
    if wave.numel() < 1024:
        raise InputError(f"A clip of {wave.numel()} samples is too short to classify; give at least 1024 (64 ms).")
    return wave


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else exc.__class__.__name__


# -- finding a classifier -----------------------------------------------------------------------


def registered_classifiers() -> list[str]:
    from mka_core.plugins import manager

    return manager.names("audio-classifier")


#: Classifiers that ship with mka, by name. ``real``: the mel-CNN trained on the real-recording
#: corpus's real rows only (never generated or synthetic audio), which scores the default model
#: (docs/default-model.md); it is what `mka eval` uses when no --classifier is given.
#: ``real-birdnet``: a linear probe on BirdNET's embeddings trained on the same real rows, a stronger
#: listener that needs ``mka[birdnet]`` (:mod:`training.evaluation.probe_classifier`).
SHIPPED_CLASSIFIERS = {"real": Path(__file__).with_name("real_classifier"),
                       "real-birdnet": Path(__file__).with_name("real_birdnet_probe")}
DEFAULT_CLASSIFIER = "real"


def load_classifier(spec: str | Path, device: str | torch.device = "cpu") -> AudioClassifier:
    """A classifier from a folder (``classifier.json``), a shipped name (``real``) or a registered one."""

    text = str(spec)
    path = SHIPPED_CLASSIFIERS.get(text) or Path(text).expanduser()
    if path.is_dir():
        record = read_classifier_json(path)
        kind = record["classifier"]
        if kind == BUILTIN_KIND:
            return MelCnnClassifier.load(path, device=device)
        if kind == PROBE_KIND:
            from training.evaluation.probe_classifier import ProbeClassifier

            return ProbeClassifier.load(path, device=device)
        return _plugin_class(kind, f"the folder {path}").load(path, device)
    if text in registered_classifiers():
        return _plugin_class(text, "--classifier").load(None, device)
    if path.exists():
        raise InputError(f"--classifier {text} is a file; give a classifier folder or a registered classifier name.")
    known = ", ".join(registered_classifiers()) or "none installed"
    raise InputError(f"--classifier {text} is neither a classifier folder nor a registered audio classifier "
                     f"(registered: {known}).")


def _plugin_class(name: str, where: str):
    from mka_core.errors import PluginError
    from mka_core.plugins import manager

    try:
        cls = manager.get("audio-classifier", name)
    except PluginError as exc:
        raise InputError(f"{where} needs the audio classifier '{name}', which is not installed ({exc}).") from None
    if not callable(getattr(cls, "load", None)):
        raise InputError(f"The registered audio classifier '{name}' has no load(source, device) method.")
    return cls


__all__ = ["AudioClassifier", "ClassifierOutput", "embed_in_length_batches", "MelCnn", "MelCnnClassifier", "MelCnnConfig", "load_classifier",
           "registered_classifiers", "save_classifier_folder", "save_mel_cnn", "CLASSIFIER_JSON", "CLASSIFIER_WEIGHTS"]
