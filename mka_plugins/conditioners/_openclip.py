"""Shared OpenCLIP machinery of the clip-text, clip-image and clip-video conditioners.

All three write into one embedding space per (model, pretrained) pair, so a diffusion model
trained on CLIP *text* embeddings of captions runs on CLIP *image* or *video* embeddings.

Weights resolution (``weights`` option):

* a local folder in open_clip's ``local-dir:`` layout (``open_clip_config.json`` +
  ``open_clip_model.safetensors``), or an id looked up as ``$MKA_HOME/weights/<id>``;
* ``None``: ``$MKA_HOME/weights/openclip--<model>--<pretrained>`` if complete, else open_clip's
  own cache and hub, but only when :func:`mka_core.weights.network_allowed`.

Every load goes through the full CLIP model. The null condition (the L2-normalised text
embedding of ``""``, as the reference image-to-audio model uses) is computed then, before the
tower a conditioner does not need is dropped, and kept as a buffer.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mka_core.conditioning import Condition, Conditioner, EmbeddingSpace
from mka_core.config import StrictModel
from mka_core.errors import InputError, PluginError, WeightsError
from mka_core.weights import mka_home, network_allowed, read_json, resolve_weights, save_safetensors, write_json
from mka_plugins.conditioners._image_input import load_image

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
WEIGHT_FILES = (CONFIG_FILE, WEIGHTS_FILE)
#: Tokenizer files an HF-tokenizer model keeps next to its weights; copied along when present.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "vocab.txt", "merges.txt", "spiece.model")

#: The random test model: OFFLINE-NOTES' tiny CLIP (1.6 M parameters, 32-px images, 32-d space).
TINY_MODEL = "mka-tiny-clip"
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


class OpenClipOptions(StrictModel):
    """Options shared by the OpenCLIP conditioners."""

    model: str = Field("ViT-H-14", description="open_clip architecture name; part of the space name.")
    pretrained: str = Field(
        "laion2b_s32b_b79k", description="open_clip pretrained tag (or a label for local weights); part of the space name."
    )
    weights: str | None = Field(
        None,
        description="Folder in open_clip's local-dir layout (open_clip_config.json + open_clip_model.safetensors), "
        "or an id under $MKA_HOME/weights; None = $MKA_HOME cache, then open_clip's hub when network is allowed.",
    )


def space_name(options: OpenClipOptions) -> str:
    return f"openclip:{options.model}/{options.pretrained}"


def known_embed_dim(model: str) -> int | None:
    """The width of ``model``'s space, read from open_clip's bundled config without importing it."""
    if model == TINY_MODEL:
        return int(TINY_CONFIG["embed_dim"])
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model_configs" / f"{model}.json"
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["embed_dim"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def import_open_clip(conditioner: str, extra: str = "clip") -> Any:
    try:
        import open_clip
    except ImportError as exc:
        raise PluginError(
            f"The {conditioner} conditioner needs the open_clip_torch package; install it with pip install 'mka[{extra}]'."
        ) from exc
    return open_clip


@dataclass
class LoadedClip:
    """An open_clip model with what the conditioners need next to it."""

    model: nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    model_cfg: dict[str, Any]
    preprocess_cfg: dict[str, Any]
    #: A local-dir folder holding these exact weights (None: built in memory or from open_clip's hub).
    source: Path | None
    #: True when the weights can be loaded again from the options alone (folder or hub tag).
    reloadable: bool


def cache_folder(options: OpenClipOptions) -> Path:
    return mka_home() / "weights" / f"openclip--{options.model}--{options.pretrained}".replace("/", "--")


def load_openclip(options: OpenClipOptions, conditioner: str, extra: str = "clip") -> LoadedClip:
    """Load the full CLIP model named by ``options`` (see the module docstring for the order)."""
    if options.weights is not None:
        folder = resolve_weights(options.weights, WEIGHT_FILES, what="OpenCLIP")
        return load_local_dir(folder, options, conditioner, extra)
    cached = cache_folder(options)
    if all((cached / name).is_file() for name in WEIGHT_FILES):
        return load_local_dir(cached, options, conditioner, extra)
    if options.model == TINY_MODEL:
        raise WeightsError(
            f"'{TINY_MODEL}' is a random test model with no published weights; build it with build_random('tiny') "
            "or point the weights option at a folder it was saved to."
        )
    if not network_allowed():
        raise WeightsError(
            f"The OpenCLIP weights {options.model}/{options.pretrained} are not available offline: put "
            f"{' and '.join(WEIGHT_FILES)} in {cached} (or set the weights option to a folder holding them), "
            "or set MKA_ALLOW_NETWORK=1 to let open_clip download them."
        )
    return load_from_hub(options, conditioner, extra)


def load_local_dir(folder: Path, options: OpenClipOptions, conditioner: str, extra: str) -> LoadedClip:
    open_clip = import_open_clip(conditioner, extra)
    folder = folder.resolve()
    saved = read_json(folder / CONFIG_FILE)
    model_cfg = saved.get("model_cfg") if isinstance(saved, dict) else None
    if not isinstance(model_cfg, dict) or "embed_dim" not in model_cfg:
        raise WeightsError(f"{folder / CONFIG_FILE} has no model_cfg with an embed_dim; it is not an open_clip config.")
    expected = known_embed_dim(options.model)
    if expected is not None and int(model_cfg["embed_dim"]) != expected:
        raise WeightsError(
            f"The weights in {folder} are a {model_cfg['embed_dim']}-d CLIP but model '{options.model}' is "
            f"{expected}-d; set the model option to the architecture those weights belong to."
        )
    from safetensors import SafetensorError

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    except (SafetensorError, RuntimeError, ValueError, KeyError, OSError, TypeError) as exc:
        raise WeightsError(f"Could not load the OpenCLIP weights in {folder} ({exc}); export or download them again.") from exc
    return LoadedClip(model, preprocess, tokenizer, model_cfg, dict(saved.get("preprocess_cfg") or {}), folder, True)


def load_from_hub(options: OpenClipOptions, conditioner: str, extra: str) -> LoadedClip:
    open_clip = import_open_clip(conditioner, extra)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(options.model, pretrained=options.pretrained)
        tokenizer = open_clip.get_tokenizer(options.model)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        raise WeightsError(
            f"open_clip could not load {options.model}/{options.pretrained} ({exc}); check the names or put "
            f"{' and '.join(WEIGHT_FILES)} in {cache_folder(options)}."
        ) from exc
    model_cfg = open_clip.get_model_config(options.model) or {}
    return LoadedClip(model, preprocess, tokenizer, model_cfg, {}, None, True)


def build_tiny(seed: int, conditioner: str, extra: str) -> LoadedClip:
    """The tiny random CLIP, seeded without touching the global RNG."""
    open_clip = import_open_clip(conditioner, extra)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**json.loads(json.dumps(TINY_CONFIG)))
    size = TINY_CONFIG["vision_cfg"]["image_size"]
    # The same transform open_clip builds for a local-dir folder with an empty preprocess_cfg,
    # so the model behaves identically before and after a save/reload.
    preprocess = open_clip.image_transform(size, is_train=False)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=TINY_CONFIG["text_cfg"]["context_length"])
    return LoadedClip(model, preprocess, tokenizer, json.loads(json.dumps(TINY_CONFIG)), {}, None, False)


def keep_only_tower(model: nn.Module, tower: Literal["text", "image"]) -> None:
    """Delete the tower a conditioner never runs, to free its memory."""
    if tower == "image":
        keep = {"visual"}
        names = [n for n, _ in model.named_children()]
        names += [n for n, _ in model.named_parameters(recurse=False)] + [n for n, _ in model.named_buffers(recurse=False)]
        for name in names:
            if name not in keep and hasattr(model, name):
                delattr(model, name)
    elif hasattr(model, "visual"):
        delattr(model, "visual")


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """L2 normalisation over the last axis, computed in float32."""
    return F.normalize(x.float(), dim=-1)


class OpenClipConditioner(Conditioner):
    """Base of the OpenCLIP conditioners: loading, space, null condition, persistence."""

    Options: ClassVar[type[StrictModel]] = OpenClipOptions
    #: The CLIP tower :meth:`encode` runs.
    tower: ClassVar[Literal["text", "image"]]
    #: The mka extra that installs this conditioner's dependencies.
    extra: ClassVar[str] = "clip"
    space_summary: ClassVar[str] = "openclip:ViT-H-14/laion2b_s32b_b79k (1024, global)"

    def __init__(self, options: StrictModel | None = None, *, loaded: LoadedClip | None = None, **overrides: Any) -> None:
        super().__init__(options, **overrides)
        loaded = loaded or load_openclip(self.options, self.name, self.extra)
        model = loaded.model.float().eval().requires_grad_(False)
        self.preprocess = loaded.preprocess
        self.tokenizer = loaded.tokenizer
        self._model_cfg = loaded.model_cfg
        self._preprocess_cfg = loaded.preprocess_cfg
        self._source = loaded.source
        with torch.no_grad():
            null = l2_normalise(model.encode_text(loaded.tokenizer([""]))).reshape(1, 1, -1)
        self.embed_dim = int(null.shape[-1])
        # The guidance null condition for every OpenCLIP conditioner: the normalised text
        # embedding of "" (the reference image-to-audio model's uc), kept as a buffer so it
        # follows .to() and exists even after the text tower is dropped.
        self.register_buffer("null_embedding", null)
        # Drop the unused tower only when the full weights can be loaded again for a save;
        # a model built in memory (the tiny test model) stays whole so it can be written out.
        self._complete = not loaded.reloadable
        if loaded.reloadable:
            keep_only_tower(model, self.tower)
        self.clip = model

    # -- contract ------------------------------------------------------------------------------
    @property
    def space(self) -> EmbeddingSpace:
        return EmbeddingSpace(name=space_name(self.options), dim=self.embed_dim, tokens="global")

    @classmethod
    def space_from_options(cls, options: StrictModel) -> EmbeddingSpace | None:
        if not isinstance(options, OpenClipOptions):
            return None
        dim = known_embed_dim(options.model)
        if dim is None:
            return None
        return EmbeddingSpace(name=space_name(options), dim=dim, tokens="global")

    def null_condition(self, batch_size: int = 1) -> Condition:
        embeds = self.null_embedding.to(self.dtype).expand(batch_size, 1, self.embed_dim).contiguous()
        return Condition(embeds, torch.ones(batch_size, 1, dtype=torch.bool, device=embeds.device))

    def global_condition(self, features: torch.Tensor) -> Condition:
        """``[B, D]`` features -> one L2-normalised global token ``[B, 1, D]`` in the conditioner's dtype."""
        embeds = l2_normalise(features).unsqueeze(1).to(self.dtype)
        return Condition(embeds, torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device))

    @property
    def image_size(self) -> int:
        """The side of the square the image transform produces (224 for ViT-H-14)."""
        size = self._model_cfg.get("vision_cfg", {}).get("image_size", 224)
        return int(size if isinstance(size, int) else min(size))

    def transform(self, item: Any) -> torch.Tensor:
        """One image (path, PIL image, uint8 array) -> ``[3, S, S]`` float32 on the CPU: RGB, then open_clip's transform."""
        return self.preprocess(load_image(item, self.image_size))

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[N, 3, S, S]`` transformed images -> ``[N, D]`` unnormalised CLIP image features."""
        return self.clip.visual(pixels.to(self.device, self.dtype))

    def train(self, mode: bool = True) -> "OpenClipConditioner":
        # Frozen encoder: it stays in eval mode whatever the surrounding model does.
        super().train(mode)
        self.clip.eval()
        return self

    @classmethod
    def build_random(cls, preset: str = "tiny", seed: int = 0, **options: Any) -> "OpenClipConditioner":
        """The tiny random CLIP (OFFLINE-NOTES' config), seeded; its space is ``openclip:mka-tiny-clip/random-seed<seed>``."""
        if preset != "tiny":
            raise InputError(f"Unknown random preset '{preset}' for conditioner '{cls.name}'; the valid name is: tiny.")
        fixed = {"model", "pretrained", "weights"} & set(options)
        if fixed:
            raise InputError(
                f"build_random('tiny') chooses {', '.join(sorted(fixed))} itself; pass only the other options of '{cls.name}'."
            )
        opts = cls.Options(**options, model=TINY_MODEL, pretrained=f"random-seed{int(seed)}")
        return cls(opts, loaded=build_tiny(int(seed), cls.name, cls.extra))

    # -- persistence -------------------------------------------------------------------------------
    def save_weights(self, directory: Path) -> bool:
        """Write the open_clip ``local-dir:`` layout into ``directory``.

        A whole model in memory is written from its state; a model loaded from a folder (one
        tower dropped) has that folder's files copied; a model from open_clip's hub writes
        nothing and keeps referring to its model/pretrained tag.
        """
        directory = Path(directory)
        if self._complete:
            save_safetensors(dict(self.clip.state_dict()), directory / WEIGHTS_FILE)
            write_json(directory / CONFIG_FILE, {"model_cfg": self._model_cfg, "preprocess_cfg": self._preprocess_cfg})
            return True
        if self._source is None:
            return False
        for name in WEIGHT_FILES + TOKENIZER_FILES:
            src, dst = self._source / name, directory / name
            if not src.is_file() or (dst.exists() and os.path.samefile(src, dst)):
                continue
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        return True
