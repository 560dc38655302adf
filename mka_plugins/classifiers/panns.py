"""``panns-cnn14``: PANNs Cnn14 (Kong et al. 2020) with its public AudioSet weights, for ``mka eval``.

The network is laid out exactly as the public checkpoint ``Cnn14_mAP=0.431.pth`` stores it (a
dict whose ``model`` entry is the state dict), so that file loads as it is:

* front end at 32 kHz (mka's 16 kHz input is resampled with torchaudio): STFT n_fft 1024, hop
  320, periodic Hann window, centred with reflect padding, power spectrum; 64 Slaney mel bins
  from 50 to 14000 Hz (Slaney-normalised); ``10 * log10(max(power, 1e-10))`` (no top-dB clip).
  The checkpoint's own front-end tensors (``spectrogram_extractor.stft.conv_real/conv_imag``,
  ``logmel_extractor.melW``) are recognised by name and not used: torchaudio computes the same;
* ``bn0``: BatchNorm over the 64 mel bins;
* six conv blocks (two 3x3 convolutions without bias, each followed by BatchNorm and ReLU; a
  2x2 average pool, none after the last) of 64, 128, 256, 512, 1024, 2048 channels;
* mean over frequency, then max + mean over time; ``fc1`` (2048 -> 2048) + ReLU is the
  embedding the Fréchet distance compares; ``fc_audioset`` (2048 -> 527) + sigmoid are the
  clip-wise AudioSet probabilities (multi-label) KL and accuracy use.

Where the weights are: ``--classifier panns-cnn14`` reads ``$MKA_HOME/weights/panns-cnn14/``;
a folder whose ``classifier.json`` says ``{"classifier": "panns-cnn14"}`` (optionally
``"weights": "FILE"``, a ``.pth`` or ``.safetensors`` file in that folder) reads that folder.
Class names come from AudioSet's ``class_labels_indices.csv`` (columns index, mid,
display_name) next to the weights; without it the classes are ``class_0`` ... ``class_526``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mka_core.errors import InputError, WeightsError
from mka_core.plugins.hookspecs import hookimpl
from mka_core.classifiers import AudioClassifier, ClassifierOutput, embed_in_length_batches

NAME = "panns-cnn14"
WEIGHTS_FILE = "Cnn14_mAP=0.431.pth"
LABELS_FILE = "class_labels_indices.csv"
INPUT_RATE = 16000
SAMPLE_RATE = 32000
N_FFT = 1024
HOP = 320
N_MELS = 64
F_MIN = 50.0
F_MAX = 14000.0
AMIN = 1e-10
WIDTHS = (64, 128, 256, 512, 1024, 2048)
EMBED_DIM = 2048
NUM_CLASSES = 527
#: Checkpoint tensors of the original front end, computed here with torchaudio instead.
IGNORED_KEYS = ("spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight",
                "logmel_extractor.melW")
#: Shortest clip (16 kHz samples) the five 2x2 pools take: 32 frames at 32 kHz; shorter clips are zero-padded.
MIN_SAMPLES = 5120


# -- the front end ---------------------------------------------------------------------------


class LogMel32k(nn.Module):
    """16 kHz waveforms ``[B, N]`` -> PANNs log-mel ``[B, frames, 64]`` (dB, at 32 kHz)."""

    def __init__(self) -> None:
        super().__init__()
        import torchaudio.functional as AF

        fb = AF.melscale_fbanks(N_FFT // 2 + 1, F_MIN, F_MAX, N_MELS, SAMPLE_RATE, norm="slaney", mel_scale="slaney")
        self.register_buffer("mel_fb", fb, persistent=False)  # [513, 64]
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)

    def forward(self, wave16k: torch.Tensor) -> torch.Tensor:
        import torchaudio.functional as AF

        wave = AF.resample(wave16k.float(), INPUT_RATE, SAMPLE_RATE)
        return self.log_mel_32k(wave)

    def log_mel_32k(self, wave: torch.Tensor) -> torch.Tensor:
        """The log-mel of waveforms already at 32 kHz."""
        spec = torch.stft(wave, N_FFT, hop_length=HOP, win_length=N_FFT, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True)
        power = spec.real.square() + spec.imag.square()  # [B, 513, frames]
        mel = torch.matmul(power.transpose(1, 2), self.mel_fb)  # [B, frames, 64]
        return 10.0 * torch.log10(mel.clamp(min=AMIN))


# -- the network -----------------------------------------------------------------------------


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, pool: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, 2) if self.pool else x


class Cnn14(nn.Module):
    """Log-mel ``[B, frames, 64]`` -> (embedding ``[B, 2048]``, AudioSet logits ``[B, 527]``); eval mode only."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(N_MELS)
        widths = (1, *WIDTHS)
        for i in range(len(WIDTHS)):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1], pool=i < len(WIDTHS) - 1))
        self.fc1 = nn.Linear(WIDTHS[-1], EMBED_DIM)
        self.fc_audioset = nn.Linear(EMBED_DIM, num_classes)

    def forward(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # bn0 normalises each mel bin: put the bins in the channel axis, then back.
        x = log_mel[:, None].transpose(1, 3)  # [B, 64, frames, 1]
        x = self.bn0(x).transpose(1, 3)  # [B, 1, frames, 64]
        for i in range(len(WIDTHS)):
            x = getattr(self, f"conv_block{i + 1}")(x)
        x = x.mean(dim=3)  # over frequency -> [B, 2048, frames']
        x = x.amax(dim=2) + x.mean(dim=2)
        embedding = F.relu(self.fc1(x))
        return embedding, self.fc_audioset(embedding)


# -- weights ---------------------------------------------------------------------------------


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a PANNs checkpoint (``.pth`` via ``weights_only`` torch.load, or ``.safetensors``)."""
    from mka_core.weights import load_safetensors, safe_torch_load

    if path.suffix == ".safetensors":
        state: Any = load_safetensors(path)
    else:
        state = safe_torch_load(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise WeightsError(f"{path} is not a PANNs checkpoint (expected a dict of tensors, or one under 'model').")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def build_cnn14(state: dict[str, torch.Tensor], source: str | Path) -> Cnn14:
    """A Cnn14 holding ``state``; unknown, missing or misshapen tensors are one sentence naming ``source``."""
    state = {k: v for k, v in state.items() if k not in IGNORED_KEYS}
    head = state.get("fc_audioset.weight")
    with torch.device("meta"):  # shapes only: no time spent initialising weights that are replaced
        model = Cnn14(num_classes=head.shape[0] if head is not None and head.ndim == 2 else NUM_CLASSES)
    own = model.state_dict()
    own_names = set(own)
    for name, tensor in own.items():  # BatchNorm counters are not needed in eval mode
        if name.endswith("num_batches_tracked") and name not in state:
            state[name] = tensor
    unknown = sorted(set(state) - own_names)
    missing = sorted(own_names - set(state))
    if unknown or missing:
        parts = ([f"unknown tensor(s) {unknown[:3]}"] if unknown else []) + \
                ([f"missing tensor(s) {missing[:3]}"] if missing else [])
        raise WeightsError(f"{source} is not a PANNs Cnn14 checkpoint: {' and '.join(parts)}; "
                           f"use the public {WEIGHTS_FILE}.")
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise WeightsError(f"{source} is not a PANNs Cnn14 checkpoint: '{k}' has shape {list(state[k].shape)}, "
                           f"Cnn14 needs {list(own[k].shape)} ({len(wrong)} tensor(s) differ); use the public {WEIGHTS_FILE}.")
    # assign=True: the module takes the checkpoint's tensors as they are (no copy).
    model.load_state_dict({k: v.float().contiguous() if v.is_floating_point() else v for k, v in state.items()},
                          assign=True)
    return model.eval().requires_grad_(False)


def read_class_names(path: Path, count: int) -> list[str]:
    """AudioSet display names from ``class_labels_indices.csv`` (index, mid, display_name)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} could not be read ({exc.__class__.__name__}); restore it or remove it.") from exc
    try:
        names = {int(row["index"]): row["display_name"].strip() for row in rows}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise InputError(f"{path} does not have the columns index, mid, display_name of AudioSet's label list.") from None
    if sorted(names) != list(range(count)):
        raise InputError(f"{path} lists {len(names)} classes with indices other than 0..{count - 1}, "
                         f"but the weights have {count} classes.")
    return [names[i] for i in range(count)]


def default_folder() -> Path:
    from mka_core.weights import mka_home

    return mka_home() / "weights" / NAME


# -- the classifier --------------------------------------------------------------------------


class PannsCnn14Classifier(AudioClassifier):
    """PANNs Cnn14 behind its 32 kHz log-mel front end; 2048-wide embeddings, 527 sigmoid outputs."""

    name = NAME
    multi_label = True

    def __init__(self, model: Cnn14, classes: list[str] | None = None, *, device: str | torch.device = "cpu",
                 batch_size: int = 8, weights: str = "") -> None:
        from mka_core.devices import resolve_device

        self.model = model.eval().requires_grad_(False)
        count = model.fc_audioset.out_features
        self.classes = list(classes) if classes else [f"class_{i}" for i in range(count)]
        self.front_end = LogMel32k()
        self.batch_size = batch_size
        self.weights = weights
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.front_end.to(self.device)

    @classmethod
    def load(cls, source: str | Path | None, device: str | torch.device = "cpu") -> "PannsCnn14Classifier":
        if source is None:
            folder, filename = default_folder(), WEIGHTS_FILE
        else:
            folder = Path(source)
            filename = WEIGHTS_FILE
            record_path = folder / "classifier.json"
            if record_path.is_file():
                try:
                    record = json.loads(record_path.read_text(encoding="utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise InputError(f"{record_path} is not valid JSON ({exc}).") from exc
                if isinstance(record, dict) and record.get("weights"):
                    filename = str(record["weights"])
        path = folder / filename
        if not path.is_file():
            raise WeightsError(f"The {NAME} classifier needs the PANNs weights {path.name} at {path} (download "
                               f"{WEIGHTS_FILE} from https://zenodo.org/record/3987831 and put it there, with "
                               f"AudioSet's {LABELS_FILE} beside it for class names).")
        model = build_cnn14(read_checkpoint(path), path)
        labels = path.parent / LABELS_FILE
        classes = read_class_names(labels, model.fc_audioset.out_features) if labels.is_file() else None
        return cls(model, classes, device=device, weights=str(path))

    @torch.no_grad()
    def embed(self, waves: Sequence[torch.Tensor]) -> ClassifierOutput:
        waves = [_prepare(w) for w in waves]

        def forward(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            embedding, logits = self.model(self.front_end(batch.to(self.device)))
            return embedding, torch.sigmoid(logits.float())

        return embed_in_length_batches(waves, self.batch_size, forward, EMBED_DIM, len(self.classes))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": self.weights}


def _prepare(wave: torch.Tensor) -> torch.Tensor:
    wave = torch.as_tensor(wave).detach().float().flatten().cpu()
    if wave.numel() == 0:
        raise InputError("An empty clip cannot be classified.")
    if wave.numel() < MIN_SAMPLES:  # the five 2x2 pools need 32 frames
        wave = F.pad(wave, (0, MIN_SAMPLES - wave.numel()))
    return wave


@hookimpl
def register_audio_classifiers(register):
    register(PannsCnn14Classifier)
