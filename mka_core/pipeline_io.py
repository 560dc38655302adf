"""Pipeline directories: ``save_pretrained`` / ``from_pretrained``.

Layout::

    model_index.json        format, mka version, the pipeline config, and per component its
                            class, plugin, distribution and version
    conditioner/            conditioner.json (+ the encoder's files when they are not elsewhere)
    vae/                    config.json + model.safetensors
    unet/                   config.json + model.safetensors
    vocoder/                config.json (+ model.safetensors unless the vocoder has no weights)
    light_decoder/          optional: config.json + model.safetensors of a LightDecoder
                            (mka train light-decoder); its entry in "components" is there only then

A directory is written into a temporary sibling and renamed into place, so an interrupted
save never leaves a half-written model, and an existing model is replaced only when asked.
"""

from __future__ import annotations

import os
import shutil
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from mka_core import __version__
from mka_core.errors import InputError, WeightsError, validation_problems, validation_sentence
from mka_core.weights import load_safetensors, read_json, save_safetensors, write_json

INDEX = "model_index.json"
FORMAT = "mka-pipeline"
FORMAT_VERSION = 1
MODULE_CONFIG = "config.json"
MODULE_WEIGHTS = "model.safetensors"


def _distribution_of(obj: Any) -> tuple[str, str]:
    from mka_core.plugins import manager

    for kind in ("conditioner", "vocoder", "vae"):
        for reg in manager.registrations(kind):
            if reg.obj is type(obj):
                return reg.distribution, reg.version
    return "mka", __version__


def _component_entry(obj: Any, plugin: str | None = None) -> dict[str, str]:
    cls = type(obj)
    dist, version = _distribution_of(obj) if plugin else ("mka", __version__)
    entry = {"class": f"{cls.__module__}.{cls.__qualname__}", "distribution": dist, "version": version}
    if plugin:
        entry["plugin"] = plugin
    return entry


def save_module(module: torch.nn.Module, directory: Path, *, weights: bool = True) -> None:
    """Write a core module's ``config.json`` (class and config) and its safetensors weights."""
    directory.mkdir(parents=True, exist_ok=True)
    cls = type(module)
    registered = getattr(cls, "name", None)  # a plugin's registered name (VAEs, vocoders), read back by load_vae_folder
    write_json(directory / MODULE_CONFIG, {
        "class": cls.__qualname__,
        **({"plugin": registered} if isinstance(registered, str) and registered else {}),
        "mka_version": __version__,
        "config": module.config.to_json_dict(),
    })
    if weights:
        save_safetensors(module.state_dict(), directory / MODULE_WEIGHTS, metadata={"format": "pt", "mka": __version__})


def save_pipeline(pipe: "Pipeline", directory: Path, *, overwrite: bool = False) -> Path:  # noqa: F821
    directory = directory.expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} exists and is not a directory; choose another output path.")
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise InputError(f"{directory} already exists and is not empty; choose another path or pass --overwrite.")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        pipe.conditioner.save_pretrained(tmp / "conditioner")
        save_module(pipe.vae, tmp / "vae")
        save_module(pipe.unet, tmp / "unet")
        save_module(pipe.vocoder, tmp / "vocoder", weights=getattr(pipe.vocoder, "has_weights", True))
        light = getattr(pipe, "light_decoder", None)
        if light is not None:
            save_module(light, tmp / "light_decoder")
        index = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "mka_version": __version__,
            "pipeline": pipe.config.to_json_dict(),
            "components": {
                "conditioner": _component_entry(pipe.conditioner, pipe.config.conditioner),
                "vae": _component_entry(pipe.vae, pipe.config.vae),
                "unet": _component_entry(pipe.unet),
                "vocoder": _component_entry(pipe.vocoder, pipe.config.vocoder),
                **({"light_decoder": _component_entry(light)} if light is not None else {}),
            },
        }
        write_json(tmp / INDEX, index)
        _swap_into_place(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _swap_into_place(tmp: Path, directory: Path) -> None:
    backup = None
    if directory.exists():
        backup = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(directory, backup)
    os.rename(tmp, directory)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _check_complete(directory: Path, index: dict[str, Any]) -> None:
    required = [INDEX, "conditioner/conditioner.json", f"vae/{MODULE_CONFIG}", f"vae/{MODULE_WEIGHTS}",
                f"unet/{MODULE_CONFIG}", f"unet/{MODULE_WEIGHTS}", f"vocoder/{MODULE_CONFIG}"]
    missing = [name for name in required if not (directory / name).exists()]
    if missing:
        raise WeightsError(
            f"The model folder {directory} is incomplete: missing {', '.join(missing)}; copy the whole folder again "
            "or re-create it (mka new-model / mka convert)."
        )


def load_module(cls: type[torch.nn.Module], directory: Path, *, weights: bool = True) -> torch.nn.Module:
    data = read_json(directory / MODULE_CONFIG)
    fields = data.get("config") if isinstance(data, dict) else None
    if not isinstance(fields, dict):
        raise WeightsError(f"{directory / MODULE_CONFIG} has no \"config\" object; re-create the model folder.")
    try:
        config = cls.config_class(**fields)
    except ValueError as exc:  # pydantic's ValidationError (or a config's own check): one sentence
        raise WeightsError(
            f"{directory / MODULE_CONFIG} does not describe a valid {cls.__name__}: {validation_problems(exc)}; "
            "fix the file or re-create the model folder."
        ) from exc
    module = cls(config)
    if weights:
        state = load_safetensors(directory / MODULE_WEIGHTS)
        own = module.state_dict()
        wrong = [name for name, tensor in state.items() if name in own and tensor.shape != own[name].shape]
        if wrong:
            name = wrong[0]
            raise WeightsError(
                f"{directory / MODULE_WEIGHTS} does not match its config: '{name}' has shape {list(state[name].shape)}, "
                f"the config needs {list(own[name].shape)} ({len(wrong)} tensor(s) differ); re-create the model folder."
            )
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise WeightsError(
                f"{directory / MODULE_WEIGHTS} does not match its config: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}; re-create the model folder."
            )
    return module


def load_vae_folder(directory: Path, name: str | None = None) -> torch.nn.Module:
    """A VAE component folder (``config.json`` + ``model.safetensors``) through the VAE registry.

    ``name`` (the pipeline's recorded VAE) wins; else the folder's own ``plugin`` entry; folders
    written before VAEs were plugins hold mka's own AutoencoderKL.
    """
    from mka_core.models.vae_contract import vae_class

    recorded = read_json(Path(directory) / MODULE_CONFIG).get("plugin")
    return load_module(vae_class(name or (recorded if isinstance(recorded, str) else None)), Path(directory))


def load_pipeline(directory: Path, *, device: str | torch.device = "auto", dtype: str | torch.dtype = "float32"):
    from mka_core.models.unet import UNet
    from mka_core.pipeline import Pipeline, PipelineConfig
    from mka_core.plugins import manager

    directory = Path(directory).expanduser()
    if not directory.is_dir():
        # A name: "default", $MKA_HOME/models/NAME, or a catalogue model (not pulled: says how) - as the CLI resolves it.
        from mka_core.model_lookup import named_model

        directory = named_model(str(directory)) or directory
    if not directory.is_dir():
        raise InputError(f"Model folder {directory} does not exist; pass a folder made by mka new-model, mka train or mka convert, "
                         "'default', or a model name from `mka weights`.")
    if not (directory / INDEX).is_file():
        raise WeightsError(f"{directory} is not an mka model folder (no {INDEX}).")
    index = read_json(directory / INDEX)
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise WeightsError(f"{directory / INDEX} is not an mka pipeline index.")
    version = index.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise WeightsError(f"{directory / INDEX} has format_version {version!r}, not a whole number; re-create the model folder.")
    if version > FORMAT_VERSION:
        raise WeightsError(f"{directory} was written by a newer mka (format {index['format_version']}); upgrade mka.")
    _check_complete(directory, index)
    pipeline_data = index.get("pipeline")
    if not isinstance(pipeline_data, dict):
        raise WeightsError(f"{directory / INDEX} has no \"pipeline\" object; re-create the model folder.")
    try:
        config = PipelineConfig(**pipeline_data)
    except ValueError as exc:  # pydantic's ValidationError: a hand-edited or damaged index
        raise WeightsError(
            validation_sentence(exc, f"pipeline config in {directory / INDEX}").removesuffix(".")
            + "; fix the file or re-create the model folder."
        ) from exc
    conditioner_cls = manager.get("conditioner", config.conditioner)
    check_recorded_space_before_loading(directory, config, conditioner_cls)
    conditioner = conditioner_cls.from_pretrained(directory / "conditioner")
    vae = load_vae_folder(directory / "vae", config.vae)  # folders without a VAE name hold mka's own
    unet = load_module(UNet, directory / "unet")
    check_recorded_space(directory, config, conditioner.space, conditioner.name, unet.config.context_dim)
    vocoder_cls = manager.get("vocoder", config.vocoder)
    vocoder = load_module(vocoder_cls, directory / "vocoder", weights=getattr(vocoder_cls, "has_weights", True))
    light_decoder = None
    if (directory / "light_decoder" / MODULE_CONFIG).is_file():
        from mka_core.models.light_decoder import LightDecoder

        light_decoder = load_module(LightDecoder, directory / "light_decoder")
    elif config.decoder == "light":
        raise WeightsError(f"{directory / INDEX} records the light decoder as the default decoder, but "
                           f"{directory / 'light_decoder'} is missing; copy the whole folder again or re-export it.")
    pipe = Pipeline(config, conditioner, vae, unet, vocoder, device=device, dtype=dtype, light_decoder=light_decoder)
    pipe._conditioner_dir = directory / "conditioner"
    pipe.directory = directory
    return pipe


def check_recorded_space_before_loading(directory: Path, config: Any, conditioner_cls: Any) -> None:
    """Refuse an index whose recorded space cannot be the conditioner's, before any weights load.

    Uses the conditioner's ``space_from_options`` on the saved options (when it can tell without
    weights) and the U-Net's ``context_dim`` from its config.json.
    """
    from mka_core.conditioning import CONDITIONER_CONFIG

    saved = read_json(directory / "conditioner" / CONDITIONER_CONFIG).get("options", {})
    fields = conditioner_cls.Options.model_fields
    options = {k: v for k, v in (saved or {}).items() if k in fields}
    if options.get("weights") == ".":
        options["weights"] = str(directory / "conditioner")
    try:
        space = conditioner_cls.space_from_options(conditioner_cls.Options(**options))
    except Exception:  # options or files the class cannot read cheaply: the check after loading decides
        space = None
    unet_config = read_json(directory / "unet" / MODULE_CONFIG).get("config", {})
    context_dim = unet_config.get("context_dim", "unknown") if isinstance(unet_config, dict) else "unknown"
    check_recorded_space(directory, config, space, config.conditioner, context_dim)


def check_recorded_space(directory: Path, config: Any, space: Any, conditioner: str, context_dim: Any) -> None:
    """The recorded space must be the conditioner's space and fit the U-Net's cross-attention width.

    ``space`` None or ``context_dim`` "unknown": that side cannot be told and is not checked.
    A U-Net without cross-attention (``context_dim`` None, e.g. a context-free inpainting model)
    takes any space.
    """
    recorded = config.space
    problems = []
    if space is not None and space != recorded:
        problems.append(f"its conditioner '{conditioner}' writes into {space.describe()}")
    if isinstance(context_dim, int) and context_dim != recorded.dim:
        problems.append(f"its U-Net takes {context_dim}-d context")
    if problems:
        raise WeightsError(
            f"{directory / INDEX} records the embedding space {recorded.describe()}, but {' and '.join(problems)}; "
            "the index was edited or belongs to another model - re-create the model folder."
        )


def distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"
