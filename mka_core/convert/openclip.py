"""The image-to-audio model's condition stage (OpenCLIP ViT-H-14) -> the clip conditioners' folder.

The reference's ``FrozenGlobalNormOpenCLIPEmbedder`` keeps the whole open_clip model under
``cond_stage_model.model.*``, so its keys are open_clip's own ``CLIP`` state-dict keys. mka
writes them in open_clip's ``local-dir`` layout (``open_clip_config.json`` +
``open_clip_model.safetensors``), the folder the clip-text, clip-image and clip-video
conditioners load; the three share one embedding space, so the converted model runs on
captions, images and videos.

The image tower is present only when the training run kept it (``delvisual: False``); when
the checkpoint has none, ``clip_dir`` (a local-dir folder of the same CLIP) supplies it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from mka_core.convert.accounting import Ledger
from mka_core.convert.common import check_tensors_fit, take
from mka_core.errors import WeightsError
from mka_core.weights import load_safetensors, read_json, save_safetensors, write_json

PREFIX = "cond_stage_model.model."
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
DEFAULT_MODEL = "ViT-H-14"
DEFAULT_PRETRAINED = "laion2b_s32b_b79k"
GET_IT = "the Hugging Face model laion/CLIP-ViT-H-14-laion2B-s32B-b79K, saved with open_clip's local-dir layout"


def model_config(model: str) -> dict[str, Any]:
    """open_clip's bundled architecture config for ``model`` (e.g. ViT-H-14)."""
    import open_clip

    cfg = open_clip.get_model_config(model)
    if not cfg:
        raise WeightsError(f"open_clip has no bundled config for the CLIP model '{model}'; pass --clip-model with its name.")
    return dict(cfg)


def preprocess_config(model: str, pretrained: str) -> dict[str, Any]:
    """The image transform settings open_clip records for this pretrained tag (mean, std, resizing)."""
    import open_clip

    try:
        cfg = open_clip.get_pretrained_cfg(model, pretrained) or {}
    except Exception:  # an unknown tag only means "use open_clip's defaults"
        cfg = {}
    keep = ("mean", "std", "interpolation", "resize_mode")
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items() if k in keep and v}


def expected_state(model_cfg: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Key -> meta tensor of open_clip's CLIP for ``model_cfg`` (no memory used)."""
    import open_clip

    with torch.device("meta"):
        clip = open_clip.CLIP(**dict(model_cfg))
    return dict(clip.state_dict())


def _visual_from_folder(clip_dir: Path, expected_visual: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Ledger]:
    """The image tower from a local-dir folder, with the ledger of that file."""
    weights = clip_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsError(f"{clip_dir} lacks {WEIGHTS_FILE}; pass a folder in open_clip's local-dir layout ({GET_IT}).")
    tensors = load_safetensors(weights)
    ledger = Ledger(f"{clip_dir.name}/{WEIGHTS_FILE}", tensors)
    visual = {k: v for k, v in tensors.items() if k.startswith("visual.")}
    check_tensors_fit(expected_visual, visual, "OpenCLIP image tower", str(weights))
    for key in tensors:
        if key.startswith("visual."):
            ledger.use(key, f"conditioner:{key}")
        else:
            ledger.ignore(key, "text tower and scale come from the diffusion checkpoint")
    return visual, ledger


def convert_openclip(state: Mapping[str, torch.Tensor], ledger: Ledger, out_dir: Path, *, source: str,
                     model: str = DEFAULT_MODEL, pretrained: str = DEFAULT_PRETRAINED,
                     model_cfg: Mapping[str, Any] | None = None, clip_dir: Path | None = None) -> tuple[list[Ledger], dict[str, Any]]:
    """Write the checkpoint's CLIP into ``out_dir`` (local-dir layout); returns extra ledgers and report info."""
    cfg = dict(model_cfg) if model_cfg is not None else model_config(model)
    expected = expected_state(cfg)
    tensors = take(state, ledger, PREFIX, "conditioner")
    expected_text = {k: v for k, v in expected.items() if not k.startswith("visual.")}
    expected_visual = {k: v for k, v in expected.items() if k.startswith("visual.")}
    ours_text = {k: v for k, v in tensors.items() if not k.startswith("visual.")}
    ours_visual = {k: v for k, v in tensors.items() if k.startswith("visual.")}
    check_tensors_fit(expected_text, ours_text, "OpenCLIP text tower", source)
    extra_ledgers: list[Ledger] = []
    if ours_visual:
        check_tensors_fit(expected_visual, ours_visual, "OpenCLIP image tower", source)
        visual_from = "checkpoint"
    elif clip_dir is not None:
        ours_visual, visual_ledger = _visual_from_folder(Path(clip_dir).expanduser(), expected_visual)
        extra_ledgers.append(visual_ledger)
        visual_from = str(clip_dir)
    else:
        raise WeightsError(
            f"{source} has no OpenCLIP image tower ({PREFIX}visual.*; the training run deleted it), so clip-image and "
            f"clip-video could not run; pass --clip DIR with the {model} weights ({GET_IT})."
        )
    full = {**ours_text, **ours_visual}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_safetensors({k: full[k].detach().to(expected[k].dtype) for k in expected}, out_dir / WEIGHTS_FILE)
    preprocess = preprocess_config(model, pretrained)
    if clip_dir is not None and (Path(clip_dir) / CONFIG_FILE).is_file():
        preprocess = dict(read_json(Path(clip_dir) / CONFIG_FILE).get("preprocess_cfg") or preprocess)
    write_json(out_dir / CONFIG_FILE, {"model_cfg": cfg, "preprocess_cfg": preprocess})
    info = {"model_cfg": cfg, "image_tower_from": visual_from, "tensors": len(expected)}
    return extra_ledgers, info
