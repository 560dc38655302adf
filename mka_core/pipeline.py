"""The pipeline: conditioner + task + VAE + U-Net + vocoder + sampler.

Generation reads straight down: inputs -> conditioner (prepare, encode) -> task (sampler
over the U-Net) -> VAE decode -> vocoder -> waveform cropped to the exact requested length.

Durations: a request of ``d`` seconds needs ``ceil(d * 62.5)`` mel frames; the model works on
a multiple of its frame granularity (VAE downsampling x U-Net downsampling: 16 frames in the
base preset, i.e. 0.256 s), so the frame count is rounded *up* to that multiple, generated,
vocoded, and the waveform is then cropped to exactly ``round(d * 16000)`` samples. The
reference code instead returns ``int(7.8 d)`` latent columns rounded up to a multiple of 4
(10.24 s for 10 s).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import torch

from mka_core.audio.mel import MelConfig, MelFrontEnd
from mka_core.conditioning import Condition, Conditioner, EmbeddingSpace, check_space
from mka_core.config import StrictModel
from mka_core.devices import dtype_name, resolve_device, resolve_dtype
from mka_core.diffusion.schedule import NoiseSchedule, ScheduleConfig
from mka_core.errors import InputError
from mka_core.geometry import MAX_DURATION, check_duration, frames_for
from mka_core.models.unet import UNet
from mka_core.models.vae_contract import DEFAULT_VAE, LatentAutoencoder, vae_name
from mka_core.models.vocoders.base import Vocoder
from mka_core.tasks import Task, TaskOutput, TaskRequest

class GenerationDefaults(StrictModel):
    """Settings used when a request does not give them (recorded per model)."""

    task: str = "t2a"
    sampler: str = "dpm++2m"
    #: Options of the default sampler (a converted reference model records
    #: ``{"final_alpha": "reference"}`` for DDIM, so its last step lands where the reference's does).
    sampler_options: dict[str, Any] = {}
    steps: int = 25
    guidance: float = 3.0
    duration: float = 10.0


class PipelineConfig(StrictModel):
    """What a pipeline directory's ``model_index.json`` records besides its components."""

    mel: MelConfig = MelConfig()
    conditioner: str
    space: EmbeddingSpace
    vocoder: str
    #: Registered name of the VAE (``register_vaes``); folders written before it existed hold mka's own.
    vae: str = DEFAULT_VAE
    schedule: ScheduleConfig = ScheduleConfig()
    defaults: GenerationDefaults = GenerationDefaults()
    max_duration: float = MAX_DURATION
    #: Where the model came from (preset name, converted checkpoint, training run).
    origin: str = "mka"
    #: The weights' licence (an SPDX-style name such as "CC-BY-SA-4.0"), when the folder states one;
    #: its LICENSE.txt and ATTRIBUTION files sit beside model_index.json.
    licence: str | None = None
    #: The decoder that turns latents into mels by default: the VAE's, or the folder's optional
    #: light decoder (``light_decoder/``, see mka_core.models.light_decoder); folders without it say "vae".
    decoder: Literal["vae", "light"] = "vae"


@dataclass
class GenerationResult:
    """Waveforms ``[B, N]`` at ``sample_rate`` with the mels and per-sample metadata."""

    waveforms: torch.Tensor
    sample_rate: int
    mels: torch.Tensor
    latents: torch.Tensor | None
    metadata: list[dict[str, Any]] = field(default_factory=list)
    #: The GenerationRequest as it ran (every default resolved) and each row's flattened-batch index.
    request: Any = None
    indices: list[int] = field(default_factory=list)

    def numpy(self):
        return self.waveforms.float().cpu().numpy()


def check_finite(tensor: torch.Tensor, stage: str, *, module: torch.nn.Module | None = None,
                 dtype: torch.dtype | None = None) -> torch.Tensor:
    """Stop with a clear message when a stage produced NaN or Inf.

    The message names the stage and, only on this failure path, says why when it can tell:
    ``module``'s own weights hold NaN/Inf (a damaged model file), or the stage ran in float16,
    whose range ends at 65504 (an overflow; float32 or bfloat16 have the range to spare).
    """
    if torch.isfinite(tensor).all():
        return tensor
    from mka_core.errors import NumericalError

    bad = int((~torch.isfinite(tensor)).sum().item())
    damaged = module is not None and any(not torch.isfinite(p).all() for p in module.parameters())
    if damaged:
        hint = "its weights contain NaN/Inf values, so the model files are damaged; re-download, re-export or retrain it"
    elif dtype == torch.float16:
        hint = "float16 overflowed (its largest value is 65504); retry with --dtype float32 or bfloat16"
    else:
        hint = "check the inputs and the model's weights (a model that diverged in training produces this)"
    raise NumericalError(f"The {stage} produced {bad} NaN/Inf values; {hint}.")


class Pipeline:
    """A complete model. Build with :meth:`from_pretrained` or :func:`mka_core.presets.build_pipeline`."""

    def __init__(
        self,
        config: PipelineConfig,
        conditioner: Conditioner,
        vae: LatentAutoencoder,
        unet: UNet,
        vocoder: Vocoder,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "float32",
        light_decoder: torch.nn.Module | None = None,
    ) -> None:
        if light_decoder is not None and (problem := light_decoder.fits(vae)):
            raise InputError(f"This light decoder does not fit the model's VAE: {problem}; train one for this model "
                             "with mka train light-decoder --teacher MODEL.")
        if config.decoder == "light" and light_decoder is None:
            # A pipeline rebuilt from another's config (a trainer's export) without its light
            # decoder records the decoder it actually has; loading a folder checks this earlier.
            config = config.model_copy(update={"decoder": "vae"})
        if config.vae != vae_name(vae):  # the config records the VAE actually used
            config = config.model_copy(update={"vae": vae_name(vae)})
        self.config = config
        self.conditioner = conditioner
        self.vae = vae
        self.unet = unet
        self.vocoder = vocoder
        self.light_decoder = light_decoder
        #: "vae" or "light": which decoder :meth:`decode_latents` runs (see :meth:`use_decoder`).
        self.decoder: str = config.decoder
        self.schedule = NoiseSchedule(config.schedule)
        self.mel_frontend = MelFrontEnd(config.mel)
        self._null_cache: dict[str, Condition] = {}
        #: Conditioners other than the model's own, built once per (name, options); see conditioner_for.
        self._conditioners: dict[tuple[str, str], Conditioner] = {}
        self._conditioner_lock = threading.RLock()
        self.to(device, dtype)
        for module in self.modules():
            module.eval()
            module.requires_grad_(False)

    # -- devices ----------------------------------------------------------------------------
    def modules(self) -> list[torch.nn.Module]:
        extra = [self.light_decoder] if getattr(self, "light_decoder", None) is not None else []
        return [self.conditioner, self.vae, self.unet, self.vocoder, self.mel_frontend, *extra]

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> "Pipeline":
        """Move to ``device`` and run the U-Net and VAE in ``dtype``.

        ``requested_dtype`` keeps what was asked; ``dtype`` is what runs. They differ for
        bfloat16 on a CPU without bfloat16 instructions, which runs float32 instead (3-5x
        faster there, see :mod:`mka_core.models.precision`); ``precision_note`` then says so.
        """
        from mka_core.models.precision import compute_dtype

        self.device = resolve_device(device) if device is not None else self.device
        if dtype is not None or not hasattr(self, "requested_dtype"):
            self.requested_dtype = resolve_dtype(dtype)
        self.dtype = compute_dtype(self.device, self.requested_dtype)
        self.precision_note: str | None = None
        if self.dtype != self.requested_dtype:
            self.precision_note = (
                f"{dtype_name(self.requested_dtype)} was requested, but this CPU has no {dtype_name(self.requested_dtype)} "
                f"instructions; running {dtype_name(self.dtype)}, which is faster here (MKA_CPU_BF16=1 forces emulation)."
            )
        self._compiled_unet = None
        # The U-Net and VAE run in the working dtype; the mel front end, the vocoder and
        # the sampler state stay in float32 where precision matters and costs little.
        self.unet.to(self.device, self.dtype)
        self.vae.to(self.device, self.dtype)
        if getattr(self, "light_decoder", None) is not None:
            self.light_decoder.to(self.device, self.dtype)
        self.conditioner.to(self.device, self.dtype if self.device.type != "cpu" else torch.float32)
        for other in getattr(self, "_conditioners", {}).values():
            other.to(self.device, self.dtype if self.device.type != "cpu" else torch.float32)
        self.vocoder.to(self.device, torch.float32)
        self.mel_frontend.to(self.device)
        self._null_cache.clear()
        if os.environ.get("MKA_COMPILE", "").strip().lower() in ("1", "true", "yes"):
            self.compile()  # opt-in for the CLI and servers: compiled U-Net, CUDA graphs on a GPU
        return self

    # -- geometry -----------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.config.mel.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.mel.hop_length

    @property
    def vae_factor(self) -> int:
        """Mel frames per latent column (the VAE's time downsampling, from its contract)."""
        return self.vae.downsampling[1]

    @property
    def frame_granularity(self) -> int:
        """Mel frames per latent column times the U-Net's own downsampling."""
        return self.vae_factor * self.unet.config.downsample_factor

    def check_duration(self, duration: float) -> float:
        return check_duration(duration, self.config.max_duration)

    def frames_for(self, duration: float) -> tuple[int, int]:
        """(mel frames to generate, exact output samples) for ``duration`` seconds."""
        return frames_for(duration, sample_rate=self.sample_rate, hop_length=self.hop_length,
                          granularity=self.frame_granularity, max_duration=self.config.max_duration)

    def latent_shape(self, frames: int) -> tuple[int, int, int]:
        if frames % self.frame_granularity:
            raise InputError(f"{frames} mel frames is not a multiple of {self.frame_granularity}.")
        return self.vae.latent_shape(self.config.mel.n_mels, frames)

    # -- engine steps (public: tasks, plugins and training use them) ---------------------------
    @torch.no_grad()
    def mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` waveform -> ``[B, 1, n_mels, frames]`` log-mel (float32)."""
        return self.mel_frontend(waveform.to(self.device, torch.float32))

    @torch.no_grad()
    def init_mel(self, request: TaskRequest) -> torch.Tensor:
        """``[B, 1, n_mels, request.frames]`` log-mel of the request's init audio.

        The request's waveform (already cropped or zero-padded to the requested length) is
        padded with silence to ``frames * hop`` samples, so its mel lines up column for column
        with the mel the model generates.
        """
        if request.init_audio is None:
            raise InputError("This task needs an init audio (--init FILE).")
        wave = request.init_audio.float()
        target = request.frames * self.hop_length
        if wave.shape[-1] < target:
            wave = torch.nn.functional.pad(wave, (0, target - wave.shape[-1]))
        mel = self.mel(wave[..., :target])
        if mel.shape[-1] > request.frames:
            mel = mel[..., : request.frames]
        elif mel.shape[-1] < request.frames:  # a front end that drops a last partial frame
            mel = torch.nn.functional.pad(mel, (0, request.frames - mel.shape[-1]), mode="replicate")
        return mel

    @torch.no_grad()
    def encode_mel(self, mel: torch.Tensor, generators: Sequence[torch.Generator] | None = None, sample: bool = False) -> torch.Tensor:
        """Mel -> scaled latents. ``sample=False`` takes the posterior mean (deterministic)."""
        posterior = self.vae.encode(mel.to(self.device, self.dtype))
        if sample:
            from mka_core.diffusion.noise import randn

            noise = randn(posterior.mean.shape[1:], list(generators or []), self.device, torch.float32)
            z = posterior.mean.float() + posterior.std.float() * noise
        else:
            z = posterior.mean.float()
        return check_finite(z, "VAE encoder", module=self.vae, dtype=self.dtype) * self.vae.scale_factor_value

    #: Decode latents wider than this many columns in overlapping time slices (None: never).
    #: The decoder's attention is global in time, so slices change the result slightly; they
    #: bound its memory and its quadratic attention cost on long clips. 256 columns = 32.8 s.
    decode_tile_columns: int | None = 256
    #: Columns shared by neighbouring slices, cross-faded linearly (16 = 2 s).
    decode_tile_overlap: int = 16

    #: Samples per VAE-decode / vocoder call. 1 makes every output bit-identical to a single
    #: run of the same seed (Griffin-Lim in particular amplifies batched rounding differences);
    #: raise it for throughput on a GPU.
    decode_batch_size: int = 1

    def _in_chunks(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        size = max(1, int(self.decode_batch_size))
        return torch.cat([fn(x[i : i + size]) for i in range(0, x.shape[0], size)])

    def use_decoder(self, name: str) -> "Pipeline":
        """Decode with ``"vae"`` (the VAE decoder) or ``"light"`` (the folder's light decoder) from now on."""
        if name not in ("vae", "light"):
            raise InputError(f"Unknown decoder '{name}'; choose 'vae' or 'light'.")
        if name == "light" and self.light_decoder is None:
            raise InputError("This model has no light decoder; train one with mka train light-decoder --teacher MODEL "
                             "or decode with the VAE (--decoder vae).")
        self.decoder = name
        return self

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.to(self.device, self.dtype)
        if self.decoder == "light":
            # Fully convolutional with a local receptive field: no time slices needed, memory grows linearly.
            mel = self._in_chunks(lambda z: self.light_decoder(z).float(), latents)
            return check_finite(mel, "light decoder", module=self.light_decoder, dtype=self.dtype)
        tile = self.decode_tile_columns
        overlap = min(self.decode_tile_overlap, tile - 1) if tile else 0
        mel = self._in_chunks(lambda z: self.vae.decode_latents(z, tile=tile, overlap=overlap).float(), latents)
        return check_finite(mel, "VAE decoder", module=self.vae, dtype=self.dtype)

    @torch.no_grad()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        # Vocoders take the log10 mel; a front end with another scaling (family B) converts here.
        mel = self.mel_frontend.to_log10(mel.to(self.device, torch.float32))
        if mel.dim() == 4:
            mel = mel.squeeze(1)
        wav = self._in_chunks(self.vocoder, mel)
        return check_finite(wav, "vocoder", module=self.vocoder, dtype=torch.float32)

    def null_condition(self, batch_size: int) -> Condition:
        """The guidance null condition, encoded once per device/dtype and reused."""
        key = f"{self.conditioner.name}"
        if key not in self._null_cache:
            with torch.no_grad():
                self._null_cache[key] = self.conditioner.null_condition(1).to(self.device, self.dtype)
        return self._null_cache[key].expand(batch_size)

    @torch.no_grad()
    def sample(
        self,
        request: TaskRequest,
        *,
        strength: float | None = None,
        start_latents: torch.Tensor | None = None,
        known_latents: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        extra_channels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the sampler over the U-Net with guidance; returns latents (float32).

        ``strength`` with ``start_latents``: SDEdit (noise the latents to ``strength * N``
        and denoise from there). ``known_latents``/``known_mask``: training-free inpainting
        (blend the known region at every step; mask 1 = regenerate). ``extra_channels``:
        concatenated to the U-Net input at every step (fine-tuned inpainting).
        """
        from mka_core.diffusion.guidance import GuidedDenoiser
        from mka_core.diffusion.noise import randn
        from mka_core.diffusion.samplers import get_sampler

        shape = self.latent_shape(request.frames)
        if start_latents is None and request.start_latents is not None:
            start_latents = request.start_latents
        x_T = randn(shape, request.generators, self.device, torch.float32)
        # A consistency-distilled student takes the guidance scale as an input: one forward per step.
        student = self.unet.config.guidance_embed_dim is not None
        denoiser = GuidedDenoiser(
            self._unet_fn(extra_channels, guidance=request.guidance if student else None),
            request.condition.to(self.device, self.dtype) if request.condition is not None else None,
            request.null_condition.to(self.device, self.dtype) if request.null_condition is not None else None,
            1.0 if student else request.guidance,
        )
        defaults = self.config.defaults
        options = request.extra.get("sampler_options")  # the GenerationRequest's, defaults resolved
        if options is None:
            options = defaults.sampler_options if request.sampler == defaults.sampler else {}
        sampler = get_sampler(request.sampler, **options)
        latents = sampler.sample(
            denoiser,
            x_T,
            schedule=self.schedule,
            steps=request.steps,
            strength=strength,
            start_latents=start_latents,
            known_latents=known_latents,
            known_mask=known_mask,
            generators=request.generators,
            progress=request.progress,
        )
        return check_finite(latents.float(), "sampler (U-Net)", module=self.unet, dtype=self.dtype)

    def compile(self, mode: str | None = "auto") -> "Pipeline":
        """Run the U-Net through ``torch.compile`` from now on (CUDA graphs on a GPU).

        The first sampling run pays the compile (tens of seconds, much less once inductor's
        on-disk cache under ``$MKA_HOME/cache/inductor`` is warm); every step after that replays
        the compiled graph. Moving the pipeline (:meth:`to`) drops the compiled U-Net.
        """
        from mka_core.models.compiled import compile_unet

        self._compiled_unet = compile_unet(self.unet, mode=mode)
        return self

    def _unet_fn(self, extra_channels: torch.Tensor | None, guidance: float | None = None) -> Callable[..., torch.Tensor]:
        unet, dtype = self._compiled_unet or self.unet, self.dtype
        takes_context = self.unet.config.context_dim is not None
        # The extra input channels are the same at every step: cast and repeat them once per batch size.
        extras: dict[int, torch.Tensor] = {}

        def model(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None, context_mask: torch.Tensor | None):
            if not takes_context:  # a context-free U-Net (e.g. the released inpainting model)
                context = context_mask = None
            x = x.to(dtype)
            if extra_channels is not None:
                if x.shape[0] not in extras:
                    extra = extra_channels.to(x.device, dtype)
                    if extra.shape[0] != x.shape[0]:  # guidance doubles the batch
                        extra = extra.repeat(x.shape[0] // extra.shape[0], 1, 1, 1)
                    extras[x.shape[0]] = extra
                x = torch.cat([x, extras[x.shape[0]]], dim=1)
            student = {} if guidance is None else {"guidance": guidance}
            eps = unet(x, t, context=context, context_mask=context_mask, **student)
            return eps.float()

        return model

    # -- the front door ------------------------------------------------------------------------
    def conditioner_for(self, name: str | None, options: Mapping[str, Any] | None = None) -> Conditioner:
        """The model's own conditioner, or another registered one of the same space, built once.

        ``options`` override the saved conditioner options (``--cond-option``). Each (name,
        options) pair is built once per pipeline and reused by later calls (the CLI, the server
        and the Python API all ask through here). The space is checked *before* any weights
        load: a conditioner of another space is refused with the spaces and the conditioners
        that fit, even where its own weights are missing.
        """
        if (name is None or name == self.conditioner.name) and not options:
            return self.conditioner
        name = name or self.conditioner.name
        key = (name, json.dumps(dict(options or {}), sort_keys=True, default=str))
        with self._conditioner_lock:
            cached = self._conditioners.get(key)
            if cached is None:
                cached = self._build_conditioner(name, dict(options or {}))
                self._conditioners[key] = cached
            return cached

    def _build_conditioner(self, name: str, options: dict[str, Any]) -> Conditioner:
        from mka_core.plugins import manager

        cls = manager.get("conditioner", name)
        saved = self._saved_conditioner_options(cls, options)
        space = cls.space_from_options(saved) if saved is not None else None
        if space is not None and space != self.config.space:  # refused before any weights load
            raise_space_mismatch(self.config.space, name, space, self.fitting_conditioners())
        if self._conditioner_dir is None:
            raise InputError(f"Cannot switch to conditioner '{name}': this pipeline was not loaded from a directory.")
        conditioner = cls.from_pretrained(self._conditioner_dir, **options)
        if conditioner.space != self.config.space:
            check_space(self.config.space, conditioner, self.fitting_conditioners())
        conditioner.to(self.device, self.dtype if self.device.type != "cpu" else torch.float32).eval()
        conditioner.requires_grad_(False)
        return conditioner

    _conditioner_dir: Path | None = None

    def _saved_conditioner_options(self, cls: type[Conditioner], overrides: Mapping[str, Any] | None = None) -> StrictModel | None:
        """The saved options as ``cls`` reads them (plus ``overrides``), or None when they do not fit ``cls``.

        The options of a conditioner the user names are checked here, before anything loads: a
        value its options model rejects is reported as that plugin's error.
        """
        if self._conditioner_dir is None:
            return None
        from mka_core.conditioning import CONDITIONER_CONFIG
        from mka_core.weights import read_json

        data = read_json(self._conditioner_dir / CONDITIONER_CONFIG)
        saved, same_class = data.get("options", {}), data.get("conditioner") == cls.name
        fields = cls.Options.model_fields
        # Saved weights belong to the conditioner that saved them; another class keeps its own default.
        values = {k: v for k, v in saved.items() if k in fields and (same_class or k != "weights")}
        if values.get("weights") == ".":
            values["weights"] = str(self._conditioner_dir)
        try:
            base = cls.Options(**values)
        except Exception:
            return None
        if not overrides:
            return base
        from mka_core.plugins.faults import validate_options

        return validate_options(cls, {**base.model_dump(), **overrides}, "conditioner")

    def fitting_conditioners(self) -> list[str]:
        """Registered conditioners that would write into this model's space."""
        from mka_core.plugins import manager

        fitting = [self.config.conditioner]
        for name in manager.names("conditioner"):
            if name == self.config.conditioner:
                continue
            cls = manager.get("conditioner", name)
            options = self._saved_conditioner_options(cls)
            if options is not None and cls.space_from_options(options) == self.config.space:
                fitting.append(name)
        return sorted(set(fitting))

    def __call__(self, inputs: Sequence[Any] | None = None, **kwargs: Any) -> GenerationResult:
        from mka_core.generate import generate

        return generate(self, inputs, **kwargs)

    # -- persistence ---------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        from mka_core.pipeline_io import save_pipeline

        return save_pipeline(self, Path(directory), overwrite=overwrite)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "auto",
                        dtype: str | torch.dtype = "float32") -> "Pipeline":
        from mka_core.pipeline_io import load_pipeline

        return load_pipeline(Path(directory), device=device, dtype=dtype)

    def describe(self) -> dict[str, Any]:
        return {
            "conditioner": self.config.conditioner,
            "space": self.config.space.model_dump(),
            "vocoder": self.config.vocoder,
            "vae": self.config.vae,
            "decoder": self.decoder,
            "device": str(self.device),
            "dtype": dtype_name(self.dtype),
            "origin": self.config.origin,
            "licence": self.config.licence,
            **({"requested_dtype": dtype_name(self.requested_dtype)} if self.requested_dtype != self.dtype else {}),
        }


def raise_space_mismatch(model_space: EmbeddingSpace, name: str, space: EmbeddingSpace, fitting: Sequence[str]) -> None:
    from mka_core.errors import SpaceMismatchError

    hint = f" Conditioners that fit: {', '.join(fitting)}." if fitting else ""
    raise SpaceMismatchError(
        f"The model was trained in the embedding space {model_space.describe()}, but conditioner "
        f"'{name}' writes into {space.describe()}.{hint}"
    )


def get_task(name: str) -> Task:
    from mka_core.plugins import manager

    return manager.get("task", name)()


__all__ = ["Pipeline", "PipelineConfig", "GenerationDefaults", "GenerationResult", "TaskOutput", "get_task"]
