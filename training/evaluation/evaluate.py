"""The evaluation flow of ``mka eval``: pair reference and generated clips, then score the pairs.

Pairs come either from generating now (:func:`generated_pairs`: one clip per reference caption,
as long as the reference unless a fixed duration is given, row ``i`` with seed ``seed + i``
whatever the batch size) or from audio generated earlier (:func:`stored_pairs`: a manifest or
folder whose clips are matched to the reference rows by name). Pairs stream through a
:class:`Scoreboard` batch by batch, so only the classifier's outputs of every clip stay in
memory, never the audio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from mka_core.errors import InputError
from training.data.manifest import ManifestRow
from training.evaluation import metrics
from training.evaluation.classifier import AudioClassifier

SAMPLE_RATE = 16000


@dataclass
class Pair:
    row: ManifestRow
    reference: torch.Tensor
    generated: torch.Tensor
    file: str | None = None


@dataclass
class GenerationSettings:
    steps: int | None = None
    sampler: str | None = None
    guidance: float | None = None
    seed: int = 0
    batch_size: int = 8
    #: Generate this many seconds for every caption instead of each reference's length.
    duration: float | None = None


def reference_wave(row: ManifestRow, max_seconds: float | None = None) -> torch.Tensor:
    from mka_core.audio.io import load_audio

    if not row.audio_path:
        raise InputError(f"Row '{row.name}' of the reference manifest has no audio_path.")
    return load_audio(row.audio_path, SAMPLE_RATE, max_seconds=max_seconds)


def check_captions(rows: Sequence[ManifestRow], where: str) -> None:
    for row in rows:
        if not row.caption.strip():
            raise InputError(f"Row '{row.name}' of {where} has an empty caption; every reference needs one to generate from.")


# -- pairs made now ---------------------------------------------------------------------------------


def generated_pairs(pipe, rows: Sequence[ManifestRow], settings: GenerationSettings, *,
                    save_dir: Path | None = None, progress: Callable[[int], None] | None = None) -> Iterator[list[Pair]]:
    """Generate for each row's caption; consecutive rows of equal length share a batch."""
    from mka_core.generate import generate

    if settings.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {settings.batch_size}.")
    max_seconds = pipe.config.max_duration
    names = _unique_file_names(rows) if save_dir is not None else None
    saved: list[ManifestRow] = []
    pending: list[tuple[int, ManifestRow, torch.Tensor]] = []

    def flush() -> list[Pair]:
        first = pending[0][0]
        samples = pending[0][2].numel() if settings.duration is None else None
        duration = settings.duration if settings.duration is not None else samples / SAMPLE_RATE
        result = generate(pipe, [row.caption for _, row, _ in pending], duration=duration, steps=settings.steps,
                          sampler=settings.sampler, guidance=settings.guidance, seed=settings.seed + first)
        pairs = []
        for k, (index, row, ref) in enumerate(pending):
            pair = Pair(row, ref, result.waveforms[k].float())
            if save_dir is not None:
                pair.file = str(_save(save_dir, names[index], pair.generated))
                saved.append(_generated_row(row, pair.file, result.metadata[k]))
            pairs.append(pair)
        if progress is not None:
            progress(len(pending))
        pending.clear()
        return pairs

    for index, row in enumerate(rows):
        ref = reference_wave(row, max_seconds)
        if ref.numel() < SAMPLE_RATE * 0.1:
            raise InputError(f"The reference clip of row '{row.name}' is shorter than 0.1 s.")
        same_length = not pending or settings.duration is not None or pending[-1][2].numel() == ref.numel()
        if pending and (not same_length or len(pending) >= settings.batch_size):
            yield flush()
        pending.append((index, row, ref))
    if pending:
        yield flush()
    if save_dir is not None and saved:
        from training.data.manifest import write_manifest

        write_manifest(save_dir / "generated.tsv", saved)


def _unique_file_names(rows: Sequence[ManifestRow]) -> list[str]:
    taken: set[str] = set()
    names = []
    for row in rows:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", row.name).strip("._") or "clip"
        name, k = base, 1
        while name.lower() in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name.lower())
        names.append(name)
    return names


def _save(folder: Path, name: str, wave: torch.Tensor) -> Path:
    from mka_core.audio.io import save_audio

    return save_audio(folder / f"{name}.wav", wave, SAMPLE_RATE)


def _generated_row(row: ManifestRow, file: str, meta: dict[str, Any]) -> ManifestRow:
    extra = dict(row.extra)
    extra["reference_path"] = row.audio_path
    extra["seed"] = str(meta.get("seed", ""))
    return ManifestRow(name=row.name, caption=row.caption, audio_path=file, dataset=row.dataset,
                       duration=meta.get("duration"), extra=extra)


# -- pairs resynthesised from the references ----------------------------------------------------------

#: What ``mka eval --resynthesize`` sends each reference clip through before scoring it.
RESYNTHESIS_PATHS = ("vocoder", "vae", "light")


def resynthesized_pairs(pipe, rows: Sequence[ManifestRow], through: str, *,
                        batch_size: int = 8) -> Iterator[list[Pair]]:
    """Each reference clip rebuilt from its own mel, to score the model's parts without the diffusion.

    ``vocoder``: waveform -> mel -> vocoder (copy synthesis: the vocoder's ceiling).
    ``vae``: waveform -> mel -> VAE encoder (posterior mean) -> decoder -> vocoder (the
    ceiling of everything below the U-Net). ``light``: the same with the model's light decoder
    in place of the VAE decoder (what ``--decoder light`` generates through). The mel is cut to a
    whole number of the VAE's frames so every path produces the same length.
    """
    if through not in RESYNTHESIS_PATHS:
        raise InputError(f"--resynthesize takes {' or '.join(RESYNTHESIS_PATHS)}, got '{through}'.")
    decoder = getattr(pipe, "decoder", "vae")
    if through in ("vae", "light"):
        pipe.use_decoder(through)  # 'light' on a model without one: one sentence naming mka train light-decoder
    try:
        yield from _resynthesized(pipe, rows, through, batch_size)
    finally:
        pipe.decoder = decoder


def reference_mel(pipe, row: ManifestRow) -> tuple[torch.Tensor, torch.Tensor]:
    """A reference clip and its mel in ``pipe``'s front end, cut to whole latent columns of its VAE."""
    granule = pipe.vae_factor
    ref = reference_wave(row, pipe.config.max_duration)
    mel = pipe.mel(ref[None])
    frames = mel.shape[-1] // granule * granule
    if frames < granule:
        raise InputError(f"The reference clip of row '{row.name}' is shorter than the model's "
                         f"{granule} mel frames per latent column.")
    return ref, mel[..., :frames]


def _resynthesized(pipe, rows: Sequence[ManifestRow], through: str, batch_size: int) -> Iterator[list[Pair]]:
    batch: list[Pair] = []
    for row in rows:
        ref, mel = reference_mel(pipe, row)
        if through in ("vae", "light"):
            mel = pipe.decode_latents(pipe.encode_mel(mel))
        batch.append(Pair(row, ref, pipe.vocode(mel)[0].float().cpu()))
        if len(batch) >= max(1, batch_size):
            yield batch
            batch = []
    if batch:
        yield batch


# -- pairs made earlier --------------------------------------------------------------------------------


def stored_pairs(rows: Sequence[ManifestRow], generated: dict[str, str], *, batch_size: int = 8,
                 max_seconds: float | None = None) -> Iterator[list[Pair]]:
    """Pairs of each reference row with the generated file of the same name."""
    from mka_core.audio.io import load_audio

    batch: list[Pair] = []
    for row in rows:
        file = generated[row.name]
        batch.append(Pair(row, reference_wave(row, max_seconds), load_audio(file, SAMPLE_RATE, max_seconds=max_seconds),
                          file))
        if len(batch) >= max(1, batch_size):
            yield batch
            batch = []
    if batch:
        yield batch


def find_generated(source: str | Path) -> dict[str, str]:
    """name -> audio file, from a generated manifest (``.tsv``) or a folder of ``<name>.<ext>`` files."""
    from training.data.manifest import AUDIO_SUFFIXES, read_manifest

    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise InputError(f"The folder {path} holds no audio files to evaluate.")
        return {p.stem: str(p) for p in files}
    if not path.exists():
        raise InputError(f"--generated {path} does not exist; give a manifest (.tsv) or a folder of generated audio.")
    return {row.name: row.audio_path for row in read_manifest(path)}


def match_generated(rows: Sequence[ManifestRow], generated: dict[str, str], source: str) -> tuple[list[ManifestRow], int]:
    """The reference rows that have a generated clip, and how many do not."""
    names = set(generated)
    for row in rows:
        if row.name not in names:
            safe = _unique_file_names([row])[0]
            if safe in names:  # a folder written by --save-audio uses file-safe names
                generated[row.name] = generated[safe]
    matched = [row for row in rows if row.name in generated]
    if not matched:
        raise InputError(f"None of the generated clips in {source} has the name of a reference row; name each clip "
                         "after its reference (the manifest's 'name' column).")
    return matched, len(rows) - len(matched)


# -- scoring ---------------------------------------------------------------------------------------------


@dataclass
class ClapSetting:
    """A CLAP scorer, or why there is none."""

    scorer: Callable[[torch.Tensor, list[str]], torch.Tensor] | None = None
    source: str | None = None
    reason: str | None = None


def _by_length(waves: Sequence[torch.Tensor]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, wave in enumerate(waves):
        groups.setdefault(wave.numel(), []).append(i)
    return groups


def clap_scores(scorer, waves: Sequence[torch.Tensor], prompts: Sequence[str]) -> list[float]:
    scores = [0.0] * len(waves)
    for indices in _by_length(waves).values():
        batch = torch.stack([waves[i] for i in indices])
        with torch.no_grad():
            values = torch.as_tensor(scorer(batch, [prompts[i] for i in indices])).flatten().tolist()
        for i, value in zip(indices, values):
            scores[i] = float(value)
    return scores


@dataclass
class Scoreboard:
    """Accumulates the classifier's outputs (and CLAP scores) of every pair."""

    classifier: AudioClassifier
    clap: ClapSetting = field(default_factory=ClapSetting)
    accuracy: bool = False
    ref_embeddings: list[np.ndarray] = field(default_factory=list)
    gen_embeddings: list[np.ndarray] = field(default_factory=list)
    ref_probs: list[np.ndarray] = field(default_factory=list)
    gen_probs: list[np.ndarray] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, pairs: Sequence[Pair]) -> None:
        ref_out = self.classifier.embed([p.reference for p in pairs])
        gen_out = self.classifier.embed([p.generated for p in pairs])
        self._check(ref_out, len(pairs))
        self._check(gen_out, len(pairs))
        self.ref_embeddings.append(ref_out.embeddings.double().numpy())
        self.gen_embeddings.append(gen_out.embeddings.double().numpy())
        self.ref_probs.append(ref_out.probabilities.double().numpy())
        self.gen_probs.append(gen_out.probabilities.double().numpy())
        prompts = [p.row.caption for p in pairs]
        clap_gen = clap_ref = None
        if self.clap.scorer is not None:
            clap_gen = clap_scores(self.clap.scorer, [p.generated for p in pairs], prompts)
            clap_ref = clap_scores(self.clap.scorer, [p.reference for p in pairs], prompts)
        kl = metrics.kl_per_pair(self.ref_probs[-1], self.gen_probs[-1])
        classes = self.classifier.classes
        for k, pair in enumerate(pairs):
            item = {
                "name": pair.row.name, "caption": pair.row.caption, "labels": pair.row.labels,
                "top_class_generated": classes[int(self.gen_probs[-1][k].argmax())],
                "top_class_reference": classes[int(self.ref_probs[-1][k].argmax())],
                "kl": float(kl[k]),
            }
            if self.accuracy:
                item["correct"] = item["top_class_generated"] in pair.row.labels
            if clap_gen is not None:
                item["clap"], item["clap_reference"] = clap_gen[k], clap_ref[k]
            if pair.file is not None:
                item["file"] = pair.file
            self.items.append(item)

    def _check(self, out, count: int) -> None:
        if out.embeddings.shape[0] != count or out.probabilities.shape != (count, len(self.classifier.classes)):
            raise InputError(f"The classifier '{self.classifier.name}' returned outputs of shapes "
                             f"{tuple(out.embeddings.shape)} and {tuple(out.probabilities.shape)} for {count} clips "
                             f"and {len(self.classifier.classes)} classes.")

    def metrics(self) -> dict[str, float | None]:
        """FD (and its real-vs-real floor), KL, accuracy and CLAP; None where a score does not apply."""
        if not self.items:
            raise InputError("There is nothing to evaluate: no pairs of reference and generated clips.")
        ref_e, gen_e = np.concatenate(self.ref_embeddings), np.concatenate(self.gen_embeddings)
        ref_p, gen_p = np.concatenate(self.ref_probs), np.concatenate(self.gen_probs)
        count = len(self.items)
        result: dict[str, float | None] = {
            "fd": metrics.frechet_distance_features(gen_e, ref_e) if count >= 2 else None,
            "fd_halves": None,
            "fd_real_floor": None,
            "kl": metrics.kl_divergence(ref_p, gen_p),
            "kl_sigmoid": metrics.kl_sigmoid(ref_p, gen_p) if self.classifier.multi_label else None,
            "accuracy": None, "accuracy_reference": None, "clap": None, "clap_reference": None,
        }
        if count >= 4:
            first, second = metrics.split_halves(count)
            result["fd_real_floor"] = metrics.frechet_distance_features(ref_e[first], ref_e[second])
            # FD shrinks as clips are added, so the floor (half vs half) is compared with generated
            # vs reference at the same sample size: the generated even rows against the odd references.
            result["fd_halves"] = metrics.frechet_distance_features(gen_e[first], ref_e[second])
        if self.accuracy:
            index = {name: i for i, name in enumerate(self.classifier.classes)}
            labels = [[index[label] for label in item["labels"]] for item in self.items]
            result["accuracy"] = metrics.label_accuracy(gen_p, labels)
            result["accuracy_reference"] = metrics.label_accuracy(ref_p, labels)
        if self.clap.scorer is not None:
            result["clap"] = float(np.mean([item["clap"] for item in self.items]))
            result["clap_reference"] = float(np.mean([item["clap_reference"] for item in self.items]))
        return result
