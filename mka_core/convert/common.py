"""Shared machinery of the reference-checkpoint converters.

* :func:`take` moves the tensors under a prefix out of a checkpoint into an mka component,
  recording each one in the :class:`~mka_core.convert.accounting.Ledger`;
* :func:`build_filled` builds an mka module from its config and fills *every* tensor of it
  from those tensors (a missing, extra or misshapen tensor is an error naming it);
* :func:`schedule_from_buffers` keeps the checkpoint's own ``alphas_cumprod`` (float32 values,
  as the reference sampler reads them) and explains the other schedule buffers away;
* :func:`write_converted` writes the pipeline folder and ``conversion_report.json`` into a
  staging folder and renames it into place: an interrupted conversion leaves nothing.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from mka_core import __version__
from mka_core.convert.accounting import Ledger
from mka_core.diffusion.schedule import ScheduleConfig
from mka_core.errors import InputError, WeightsError
from mka_core.weights import write_json

REPORT_FILE = "conversion_report.json"

#: The DDPM buffers LatentDiffusion registers (all derived from betas); alphas_cumprod is kept.
SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
)

#: Keys that appear in some LatentDiffusion checkpoints and carry no inference weights.
TRAINING_ONLY = {
    "logvar": "the loss's learned log-variance per timestep (training only)",
    "lvlb_weights": "variational-bound loss weights (training only)",
}
TRAINING_ONLY_PREFIXES = {
    "model_ema.": "EMA shadow weights; the reference configs set use_ema: False, so inference uses the raw weights",
    "loss.": "the training loss module (discriminator, perceptual loss)",
}


# -- moving tensors ---------------------------------------------------------------------------------


def take(state: Mapping[str, torch.Tensor], ledger: Ledger, prefix: str, component: str,
         *, rename: Callable[[str], str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix`` with it stripped (then ``rename``d), marked as used by ``component``."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            name = rename(name) if rename else name
            out[name] = tensor
            ledger.use(key, f"{component}:{name}")
    return out


def ignore_training_entries(state: Mapping[str, torch.Tensor], ledger: Ledger) -> None:
    """Explain away the keys of a LatentDiffusion checkpoint that are not inference weights."""
    for key, reason in TRAINING_ONLY.items():
        if key in state:
            ledger.ignore(key, reason)
    for prefix, reason in TRAINING_ONLY_PREFIXES.items():
        ledger.ignore_prefix(prefix, reason)


def ignore_extra_entries(extra: Mapping[str, Any], ledger: Ledger) -> None:
    """Register and ignore the tensors outside the state dict (optimizer and scheduler states, callbacks)."""
    from mka_core.convert.checkpoint import iter_tensors

    reasons = {
        "optimizer_states": "optimizer state (training only)",
        "lr_schedulers": "learning-rate scheduler state (training only)",
        "callbacks": "Lightning callback state (training only)",
        "loops": "Lightning loop state (training only)",
    }
    for top, value in extra.items():
        for path, tensor in iter_tensors(value, str(top)):
            key = f"<{path}>"
            ledger.add(key, tensor)
            ledger.ignore(key, reasons.get(str(top), f"top-level entry '{top}' of the checkpoint (not model weights)"))


# -- filling modules ------------------------------------------------------------------------------------


def _describe_mismatch(component: str, source: str, missing: list[str], unexpected: list[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} tensors ({', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''})")
    return f"{source} cannot fill the mka {component}: {' and '.join(parts)}; the checkpoint is not of the expected layout."


def check_tensors_fit(expected: Mapping[str, torch.Tensor], tensors: Mapping[str, torch.Tensor],
                      component: str, source: str) -> None:
    """Same keys, same shapes - else one sentence naming the first differences."""
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        raise WeightsError(_describe_mismatch(component, source, missing, unexpected))
    wrong = [k for k in expected if tuple(expected[k].shape) != tuple(tensors[k].shape)]
    if wrong:
        k = wrong[0]
        raise WeightsError(
            f"{source}: the {component} tensor '{k}' has shape {list(tensors[k].shape)} but mka's {component} expects "
            f"{list(expected[k].shape)} ({len(wrong)} tensors differ); the checkpoint is not of the expected layout."
        )


def _cast_like(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``tensor`` in the dtype of ``like`` (float16 storage is upcast; same dtype shares storage)."""
    return tensor.detach().to(like.dtype)


def build_filled(cls: type[torch.nn.Module], config: Any, tensors: Mapping[str, torch.Tensor],
                 component: str, source: str) -> torch.nn.Module:
    """``cls(config)`` with every state-dict entry taken from ``tensors`` (float32).

    The module is built on the meta device and the tensors assigned, which skips random
    initialisation of hundreds of millions of parameters; a module with non-persistent buffers
    (which the meta build leaves empty) is built normally and loaded instead.
    """
    with torch.device("meta"):
        module = cls(config)
    expected = module.state_dict()
    check_tensors_fit(expected, tensors, component, source)
    ready = {k: _cast_like(tensors[k], expected[k]) for k in expected}
    module.load_state_dict(ready, strict=True, assign=True)
    if any(t.is_meta for t in list(module.parameters()) + list(module.buffers())):
        module = cls(config)
        module.load_state_dict(ready, strict=True)
    return module.eval()


def count_tensors(module: torch.nn.Module) -> int:
    return len(module.state_dict())


# -- the schedule ---------------------------------------------------------------------------------------


def _betas(kind: str, start: float, end: float, n: int) -> torch.Tensor:
    if kind == "scaled_linear":
        return torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    return torch.linspace(start, end, n, dtype=torch.float64)


def schedule_from_buffers(state: Mapping[str, torch.Tensor], ledger: Ledger, family: ScheduleConfig,
                          source: str) -> tuple[ScheduleConfig, str]:
    """The checkpoint's schedule: its float32 ``alphas_cumprod`` kept verbatim, the rest explained.

    Returns the config and a one-line description for the report. Without schedule buffers,
    the family's own schedule is used (and said so).
    """
    if "alphas_cumprod" not in state:
        for key in SCHEDULE_BUFFERS:
            if key in state:
                ledger.ignore(key, "schedule buffer without alphas_cumprod; the family's schedule is recomputed")
        return family, f"recomputed ({family.beta_schedule} {family.beta_start} -> {family.beta_end}); no buffers in the file"
    abar = state["alphas_cumprod"].detach().double().flatten()
    n = family.num_train_steps
    if abar.numel() != n or not torch.isfinite(abar).all() or not (abar > 0).all() or not (abar < 1).all() \
            or not (abar[1:] < abar[:-1]).all():
        raise WeightsError(f"{source}: alphas_cumprod is not a valid {n}-step schedule (wrong length or values); "
                           "the file is damaged.")
    ledger.use("alphas_cumprod", "schedule:alphas_cumprod (float32 values kept for exact parity)")
    betas = state.get("betas")
    description = "alphas_cumprod from the checkpoint"
    update: dict[str, Any] = {"alphas_cumprod": [float(v) for v in abar]}
    if betas is not None and betas.numel() == n:
        b = betas.detach().double().flatten()
        for kind in (family.beta_schedule, "scaled_linear", "linear"):
            ref = _betas(kind, float(b[0]), float(b[-1]), n)
            if torch.allclose(ref, b, rtol=1e-5, atol=1e-9):
                update.update(beta_schedule=kind, beta_start=float(b[0]), beta_end=float(b[-1]))
                description += f" ({kind} betas {float(b[0]):.6g} -> {float(b[-1]):.6g})"
                break
        else:
            description += " (betas follow no linear schedule; the cumulative products alone define it)"
    for key in SCHEDULE_BUFFERS:
        if key in state and key != "alphas_cumprod":
            ledger.ignore(key, "schedule buffer derived from betas; mka recomputes it from alphas_cumprod")
    config = ScheduleConfig.model_validate({**family.model_dump(), **update})
    return config, description


# -- writing the result -------------------------------------------------------------------------------------


@dataclass
class Conversion:
    """A converted pipeline with its accounting, ready to be written."""

    pipeline: Any
    ledgers: list[Ledger]
    filled: dict[str, int]
    info: dict[str, Any] = field(default_factory=dict)
    #: Folders to delete once written (staged encoder files the conditioner copies from).
    scratch: list[Path] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "format": "mka-conversion-report",
            "mka_version": __version__,
            **self.info,
            "filled": self.filled,
            "sources": [ledger.to_json() for ledger in self.ledgers],
        }

    def cleanup(self) -> None:
        for folder in self.scratch:
            shutil.rmtree(folder, ignore_errors=True)


def staging_dir(out: Path) -> Path:
    """A private sibling of ``out`` (same file system, so the final rename is atomic)."""
    out = out.expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.parent / f".{out.name}.convert-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return folder


def check_output(out: Path, overwrite: bool) -> Path:
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder; choose another --out.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} already exists and is not empty; choose another --out or pass --overwrite.")
    return out


def write_converted(conversion: Conversion, out: Path, staging: Path, *, overwrite: bool = False) -> Path:
    """Save the pipeline and the report under ``staging``, then rename the folder to ``out``."""
    out = check_output(out, overwrite)
    model = staging / "model"
    conversion.pipeline.save_pretrained(model)
    write_json(model / REPORT_FILE, conversion.report())
    backup = None
    if out.exists():
        backup = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, backup)
    os.rename(model, out)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return out


def reference_defaults(**fields: Any):
    """``GenerationDefaults`` with the reference's DDIM (last step onto alphas_cumprod[0]) where mka can record it."""
    from mka_core.pipeline import GenerationDefaults

    if "sampler_options" in GenerationDefaults.model_fields:
        fields.setdefault("sampler_options", {"final_alpha": "reference"})
    return GenerationDefaults(**fields)


def assemble_pipeline(*, mel: Any, conditioner: Any, conditioner_name: str, vae: Any, unet: Any, vocoder: Any,
                      vocoder_name: str, schedule: ScheduleConfig, defaults: Any, origin: str):
    """A float32 CPU :class:`~mka_core.pipeline.Pipeline` from converted parts."""
    from mka_core.pipeline import Pipeline, PipelineConfig

    config = PipelineConfig(mel=mel, conditioner=conditioner_name, space=conditioner.space, vocoder=vocoder_name,
                            schedule=schedule, defaults=defaults, origin=origin)
    return Pipeline(config, conditioner, vae, unet, vocoder, device="cpu", dtype="float32")


def run_conversion(build: Callable[[Path], Conversion], out: str | Path, *, overwrite: bool = False) -> tuple[Path, Conversion]:
    """Check ``out``, convert into a staging folder, rename it into place; nothing is left on failure."""
    out = check_output(Path(out), overwrite)
    staging = staging_dir(out)
    conversion = None
    try:
        conversion = build(staging)
        return write_converted(conversion, out, staging, overwrite=overwrite), conversion
    finally:
        if conversion is not None:
            conversion.cleanup()
        shutil.rmtree(staging, ignore_errors=True)
