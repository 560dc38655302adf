"""The reference BigVGAN vocoder folder: ``args.yml`` + ``best_netG.pt`` -> mka's BigVGAN.

``args.yml`` is the vocoder's training configuration; only the generator's architecture is
read from it (through a safe YAML loader, which builds plain values only). ``best_netG.pt``
holds ``{"generator": state_dict}`` with hook-style weight norm (``weight_g``/``weight_v``);
mka folds it into plain conv weights when loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mka_core.convert.accounting import Ledger
from mka_core.convert.checkpoint import ForeignCheckpoint, load_checkpoint
from mka_core.convert.common import ignore_extra_entries
from mka_core.convert.families import require_kind
from mka_core.errors import InputError, WeightsError, validation_problems

ARGS_NAMES = ("args.yml", "args.yaml", "config.yml", "config.yaml")
WEIGHTS_NAME = "best_netG.pt"

#: args.yml keys that define the generator, with mka's field names.
ARCHITECTURE_KEYS = {
    "num_mels": "num_mels",
    "upsample_rates": "upsample_rates",
    "upsample_kernel_sizes": "upsample_kernel_sizes",
    "upsample_initial_channel": "upsample_initial_channel",
    "resblock": "resblock",
    "resblock_kernel_sizes": "resblock_kernel_sizes",
    "resblock_dilation_sizes": "resblock_dilation_sizes",
    "activation": "activation",
    "snake_logscale": "snake_logscale",
    "sampling_rate": "sample_rate",
    "hop_size": "hop_length",
}
REQUIRED_KEYS = ("num_mels", "upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel",
                 "resblock_kernel_sizes", "resblock_dilation_sizes")


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping read with ``yaml.safe_load`` (plain values only, no object construction)."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - PyYAML comes with transformers
        raise InputError("Reading the vocoder's args.yml needs PyYAML: pip install pyyaml.") from exc
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path} is not a readable YAML file ({exc.__class__.__name__}); restore it.") from exc
    if not isinstance(data, dict):
        raise WeightsError(f"{path} does not hold a mapping of settings; it is not a BigVGAN args file.")
    return data


def find_vocoder_files(folder: str | Path) -> tuple[Path, Path]:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"The vocoder folder {folder} does not exist; pass the folder holding args.yml and {WEIGHTS_NAME}.")
    args = next((folder / n for n in ARGS_NAMES if (folder / n).is_file()), None)
    weights = folder / WEIGHTS_NAME
    missing = [name for name, ok in (("args.yml", args is not None), (WEIGHTS_NAME, weights.is_file())) if not ok]
    if missing:
        raise WeightsError(
            f"The vocoder folder {folder} lacks {' and '.join(missing)}; copy the whole BigVGAN folder of the release "
            "(useful_ckpts/bigvgan/ for maa1) there."
        )
    assert args is not None
    return args, weights


#: Spellings of the family-B [0, 1] dB mel scale a BigVGANConfig may offer.
DB_UNIT_NAMES = ("db_unit", "unit_db")


def _offered_scale(config_cls: Any, input_scale: str) -> str:
    """The ``input_scale`` value of ``config_cls`` naming ``input_scale`` (family B: either spelling)."""
    from typing import get_args

    field = config_cls.model_fields.get("input_scale")
    offered = get_args(field.annotation) if field is not None else ()
    names = DB_UNIT_NAMES if input_scale in DB_UNIT_NAMES else (input_scale,)
    for name in names:
        if name in offered:
            return name
    raise WeightsError(
        f"This mka's BigVGAN cannot take the '{input_scale}' mel of this model family (its input_scale option "
        f"offers {', '.join(offered) or 'nothing else'}); convert without --vocoder (Griffin-Lim) or update mka."
    )


def bigvgan_config(args: dict[str, Any], input_scale: str, source: str):
    """mka's ``BigVGANConfig`` from the reference args (unknown training settings are left out)."""
    from pydantic import ValidationError

    from mka_core.models.vocoders.bigvgan import BigVGANConfig

    missing = [k for k in REQUIRED_KEYS if k not in args]
    if missing:
        raise WeightsError(f"{source} lacks the generator settings {', '.join(missing)}; it is not a BigVGAN args file.")
    fields = {ours: args[theirs] for theirs, ours in ARCHITECTURE_KEYS.items() if theirs in args}
    if "resblock" in fields:
        fields["resblock"] = str(fields["resblock"])
    if input_scale != "log10":
        fields["input_scale"] = _offered_scale(BigVGANConfig, input_scale)
    try:
        return BigVGANConfig(**fields)
    except ValidationError as exc:
        raise WeightsError(f"{source}: a generator setting is not supported by mka's BigVGAN: "
                           f"{validation_problems(exc)}.") from exc


@dataclass
class VocoderSource:
    """A read and checked vocoder folder, not yet turned into a model (cheap to get, so read it early)."""

    args_path: Path
    weights_path: Path
    args: dict[str, Any]
    config: Any
    ckpt: ForeignCheckpoint


def read_bigvgan(folder: str | Path, input_scale: str = "log10") -> VocoderSource:
    """Read ``args.yml`` and ``best_netG.pt`` (weights-only) and check both, without building the model."""
    args_path, weights_path = find_vocoder_files(folder)
    args = read_yaml(args_path)
    config = bigvgan_config(args, input_scale, str(args_path))
    ckpt = load_checkpoint(weights_path, state_key="generator", what="vocoder checkpoint")
    require_kind(ckpt.state, "bigvgan", str(weights_path))
    return VocoderSource(args_path, weights_path, args, config, ckpt)


def build_bigvgan(source: VocoderSource) -> tuple[Any, Ledger, dict[str, Any]]:
    """(mka BigVGAN with every tensor filled, the ledger of best_netG.pt, report info)."""
    from mka_core.models.vocoders.bigvgan import BigVGANVocoder

    ckpt = source.ckpt
    ledger = Ledger(f"{source.weights_path.name} ({ckpt.state_key or 'top level'})", ckpt.state)
    ignore_extra_entries(ckpt.extra, ledger)
    # Fold weight norm in float32 (or better): folding float16 storage in float16 would round every weight.
    state = {k: v.float() if v.is_floating_point() and v.dtype != torch.float64 else v for k, v in ckpt.state.items()}
    vocoder = BigVGANVocoder(source.config)
    vocoder.load_reference_state_dict(state, source=str(source.weights_path))
    for key in ckpt.state:
        for suffix in (".weight_g", ".weight_v", ".parametrizations.weight.original0", ".parametrizations.weight.original1"):
            if key.endswith(suffix):
                ledger.use(key, f"vocoder:{key[: -len(suffix)]}.weight (weight norm folded)")
                break
        else:
            ledger.use(key, f"vocoder:{key}")
    ignored_args = sorted(set(source.args) - set(ARCHITECTURE_KEYS))
    info = {
        "args_file": str(source.args_path),
        "weights_file": str(source.weights_path),
        "config": source.config.to_json_dict(),
        "args_not_used": {k: "training setting, not part of the generator" for k in ignored_args},
    }
    return vocoder.eval(), ledger, info


#: args.yml keys describing the mel the vocoder was trained on, and the MelConfig field each must equal.
MEL_KEYS = {"sampling_rate": "sample_rate", "hop_size": "hop_length", "n_fft": "n_fft", "win_size": "win_length",
            "num_mels": "n_mels", "fmin": "fmin", "fmax": "fmax"}


def mel_mismatches(args: dict[str, Any], mel: Any) -> list[str]:
    """Sentences naming the vocoder's training mel settings that differ from the model's front end."""
    out = []
    for theirs, ours in MEL_KEYS.items():
        if theirs in args and args[theirs] is not None:
            try:
                differs = float(args[theirs]) != float(getattr(mel, ours))
            except (TypeError, ValueError):
                differs = True
            if differs:
                out.append(f"the vocoder was trained with {theirs}={args[theirs]} but the model's front end uses "
                           f"{ours}={getattr(mel, ours)}")
    return out


def convert_bigvgan(folder: str | Path, input_scale: str = "log10") -> tuple[Any, Ledger, dict[str, Any]]:
    """Read and build in one go (see :func:`read_bigvgan` and :func:`build_bigvgan`)."""
    return build_bigvgan(read_bigvgan(folder, input_scale))
