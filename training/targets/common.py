"""Pieces several targets share: reading and screening the manifest, loading or building
the components a target starts from, and the ``model`` sections recipes have in common."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from mka_core.config import StrictModel
from mka_core.errors import InputError
from training.data.manifest import ManifestRow, read_manifest
from training.data.screening import require_rows, screen_rows, write_dropped
from training.targets.base import TrainContext


def load_rows(path: str, context: TrainContext, *, need_caption: bool, need_audio: bool = False,
              label: str = "train") -> list[ManifestRow]:
    """Read and screen a manifest; dropped rows go to ``<run>/dropped-<label>.tsv`` and the log."""
    if not path:
        raise InputError(f"No {label} manifest given; pass --data MANIFEST or set data.{label}=PATH.")
    rows = read_manifest(path)
    kept, dropped = screen_rows(rows, need_caption=need_caption, need_audio=need_audio)
    if dropped and context.is_main:
        write_dropped(context.run_dir / f"dropped-{label}.tsv", dropped)
        reasons: dict[str, int] = {}
        for item in dropped:
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
        summary = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
        context.log(f"{label}: {len(kept)} usable row(s), {len(dropped)} dropped ({summary}); "
                    f"see {context.run_dir / f'dropped-{label}.tsv'}")
    require_rows(kept, dropped, path)
    return kept


def load_pipeline_cpu(path: str):
    from mka_core.pipeline import Pipeline

    return Pipeline.from_pretrained(path, device="cpu")


def load_vae(source: str):
    """A VAE (any registered one, see :mod:`mka_core.models.vae_contract`) from a pipeline folder (its
    ``vae/``) or from a VAE component folder."""
    from mka_core.pipeline_io import load_vae_folder

    folder = Path(source).expanduser()
    if (folder / "vae" / "config.json").is_file():
        folder = folder / "vae"
    if not (folder / "config.json").is_file():
        raise InputError(f"{source} holds no VAE; give a pipeline folder or a VAE folder (config.json + model.safetensors).")
    return load_vae_folder(folder)


def load_vocoder(source: str):
    """A vocoder by registered name (weight-free ones like griffin-lim) or from a folder."""
    from mka_core.plugins import manager
    from mka_core.pipeline_io import load_module
    from mka_core.presets import build_vocoder
    from mka_core.weights import read_json

    folder = Path(source).expanduser()
    if folder.is_dir():
        if (folder / "vocoder" / "config.json").is_file():
            folder = folder / "vocoder"
        name = _vocoder_name_of(folder, read_json(folder / "config.json"))
        cls = manager.get("vocoder", name)
        return name, load_module(cls, folder, weights=getattr(cls, "has_weights", True))
    cls = manager.get("vocoder", source)
    if getattr(cls, "has_weights", True):
        raise InputError(f"The vocoder '{source}' needs trained weights; give the folder of a trained vocoder instead.")
    return source, build_vocoder(source, "tiny")


def _vocoder_name_of(folder: Path, config: dict[str, Any]) -> str:
    from mka_core.plugins import manager

    class_name = config.get("class", "")
    for reg in manager.registrations("vocoder"):
        if reg.obj.__qualname__ == class_name:
            return reg.name
    index = folder.parent / "model_index.json"
    if index.is_file():
        from mka_core.weights import read_json

        return read_json(index)["pipeline"]["vocoder"]
    raise InputError(f"Cannot tell which vocoder {folder} holds (class '{class_name}' is not registered).")


class ConditionerSection(StrictModel):
    conditioner: str = Field("bert", description="registered conditioner name")
    conditioner_options: dict[str, Any] = Field(default_factory=dict, description="its options")
    random_conditioner: bool = Field(False, description="a tiny random encoder (tests); else real weights")


def build_conditioner(section: ConditionerSection, seed: int):
    from mka_core.plugins import manager

    from mka_core.presets import build_conditioner

    cls = manager.get("conditioner", section.conditioner)
    return build_conditioner(cls, dict(section.conditioner_options), random=section.random_conditioner, seed=seed)


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    module.eval()
    module.requires_grad_(False)
    return module


def detached_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy for export or rendering, so building a Pipeline never freezes the trained module."""
    return copy.deepcopy(module).eval().requires_grad_(False)


def cpu_randn(shape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Noise drawn on the CPU from the step's generator (same draw on every device)."""
    return torch.randn(shape, generator=generator).to(device)


def render_pipeline_samples(pipeline, captions: list[str], out_dir: Path, *, seconds: float, steps: int = 25,
                            seed: int = 0) -> None:
    """Write ``sample-k.wav`` and ``sample-k.png`` (the generated mel) for a few captions."""
    from mka_core.atomic import atomic_write
    from mka_core.audio.io import save_audio
    from mka_core.spectrogram_image import mel_to_png_bytes

    out_dir.mkdir(parents=True, exist_ok=True)
    for k, caption in enumerate(captions):
        result = pipeline([caption], duration=seconds, steps=steps, seed=seed + k)
        save_audio(out_dir / f"sample-{k}.wav", result.waveforms[0].cpu(), result.sample_rate)
        with atomic_write(out_dir / f"sample-{k}.png") as handle:
            handle.write(mel_to_png_bytes(result.mels[0].squeeze().cpu()))
        (out_dir / f"sample-{k}.txt").write_text(caption + "\n", encoding="utf-8")
