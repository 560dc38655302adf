"""One generation request, from raw inputs to cropped waveforms.

This is what :meth:`Pipeline.__call__`, ``mka generate`` and ``mka serve`` all run.

Seeds: sample ``i`` of the flattened batch (input ``j``, candidate ``k``: ``i = j * n + k``)
uses seed ``seed + i`` through its own CPU generator, so a batch of N equals N single runs
with those seeds, and a seed gives the same noise on every device.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from mka_core import __version__
from mka_core.conditioning import Condition
from mka_core.errors import InputError
from mka_core.pipeline import GenerationResult, Pipeline, check_finite, get_task
from mka_core.tasks import TaskRequest

MAX_BATCH = 256


def _load_init_audio(pipe: Pipeline, init_audio: Any, count: int, duration: float | None) -> list[torch.Tensor]:
    """Init audios as mono waveforms at the model's rate.

    Only what the request can use is decoded: ``duration`` seconds when it is given, else a
    little more than the model's longest duration (enough to tell the file is too long), so an
    hour-long multichannel recording never has to fit in memory.
    """
    from mka_core.audio.io import load_audio

    max_seconds = float(duration) if duration is not None else pipe.config.max_duration + 1.0
    items = list(init_audio) if isinstance(init_audio, (list, tuple)) else [init_audio]
    waves = []
    for item in items:
        if isinstance(item, torch.Tensor):
            wave = item.detach().float().flatten().cpu()
            if wave.numel() == 0:
                raise InputError("The init audio tensor is empty.")
            if not torch.isfinite(wave).all():
                raise InputError("The init audio tensor contains NaN or infinite samples.")
        else:
            wave = load_audio(item, pipe.sample_rate, max_seconds=max_seconds)
        waves.append(wave)
    if len(waves) == 1 and count > 1:
        waves = waves * count
    if len(waves) != count:
        raise InputError(f"Got {len(waves)} init audios for {count} inputs; give one, or one per input.")
    return waves


def _init_audio_duration(pipe: Pipeline, wave: torch.Tensor, init_audio: Any) -> float:
    """The init audio's length as the request's duration, or a sentence that names the init audio
    (a too-short or too-long file is the user's input at fault, not a --duration they never gave)."""
    from mka_core.geometry import MIN_DURATION

    seconds = wave.numel() / pipe.sample_rate
    first = init_audio[0] if isinstance(init_audio, (list, tuple)) else init_audio
    name = f"The init audio {first}" if isinstance(first, (str, Path)) else "The init audio"
    if seconds < MIN_DURATION:
        raise InputError(
            f"{name} is only {seconds:.4g} s long; give at least {MIN_DURATION:g} s of audio, or pass a duration "
            "(--duration) to pad it with silence."
        )
    if seconds > pipe.config.max_duration:
        raise InputError(
            f"{name} is longer than the {pipe.config.max_duration:g} s this model generates; pass a duration "
            "(--duration) to use its beginning."
        )
    return seconds


def _fit_length(wave: torch.Tensor, length: int) -> torch.Tensor:
    if wave.numel() >= length:
        return wave[:length]
    return torch.nn.functional.pad(wave, (0, length - wave.numel()))


def generate(
    pipe: Pipeline,
    inputs: Sequence[Any] | None = None,
    *,
    task: str | None = None,
    cond: str | None = None,
    condition: Condition | None = None,
    duration: float | None = None,
    steps: int | None = None,
    sampler: str | None = None,
    guidance: float | None = None,
    seed: int | None = None,
    n: int = 1,
    init_audio: Any = None,
    mask: Any = None,
    task_options: dict[str, Any] | None = None,
    start_latents: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationResult:
    """Generate audio; see :class:`~mka_core.pipeline.Pipeline` for the duration rule."""
    defaults = pipe.config.defaults
    task_name = task or defaults.task
    task_obj = get_task(task_name)
    steps = int(steps if steps is not None else defaults.steps)
    guidance = float(guidance if guidance is not None else defaults.guidance)
    sampler = sampler or defaults.sampler
    if steps < 1 or steps > 1000:
        raise InputError(f"Steps must be between 1 and 1000, got {steps}.")
    if not isinstance(n, int) or n < 1:
        raise InputError(f"The number of candidates per input must be at least 1, got {n}.")
    try:
        options = task_obj.Options(**(task_options or {}))
    except Exception as exc:
        raise InputError(f"Invalid options for task '{task_name}': {_first_error(exc)}") from exc

    # -- what drives the batch ----------------------------------------------------------------
    inputs = list(inputs) if inputs is not None else None
    if task_obj.condition == "required" and not inputs and condition is None:
        raise InputError(f"Task '{task_name}' needs a condition: give at least one input (a prompt, image or video).")
    if task_obj.init_audio == "required" and init_audio is None:
        raise InputError(f"Task '{task_name}' needs an init audio (--init FILE).")
    if task_obj.mask == "required" and mask is None:
        raise InputError(f"Task '{task_name}' needs a mask (--mask).")
    if condition is not None:
        count = condition.batch_size
    elif inputs:
        count = len(inputs)
    elif isinstance(init_audio, (list, tuple)):
        count = len(init_audio)
    else:
        count = 1
    total = count * n
    if total > MAX_BATCH:
        raise InputError(f"{total} outputs in one request is more than the limit of {MAX_BATCH}; split the request.")

    if duration is not None:
        duration = pipe.check_duration(duration)
    uses_init = init_audio is not None and task_obj.init_audio != "unused"
    waves = _load_init_audio(pipe, init_audio, count, duration) if uses_init else None
    if duration is None and waves is not None:
        duration = _init_audio_duration(pipe, waves[0], init_audio)
    elif duration is None:
        duration = defaults.duration
    frames, num_samples = pipe.frames_for(float(duration))

    # -- conditions ----------------------------------------------------------------------------
    cond_obj = null = None
    conditioner_name = None
    if task_obj.condition != "unused":
        conditioner = pipe.conditioner_for(cond)
        conditioner_name = conditioner.name
        if conditioner is pipe.conditioner:
            null = pipe.null_condition(total)
        else:
            null = conditioner.null_condition(1).to(pipe.device, pipe.dtype).expand(total)
        check_finite(null.embeds, f"conditioner '{conditioner.name}' (its null condition)", module=conditioner,
                     dtype=conditioner.dtype)
        if inputs or condition is not None:
            if condition is None:
                with torch.no_grad():
                    condition = conditioner(inputs)
                check_finite(condition.embeds, f"conditioner '{conditioner.name}'", module=conditioner,
                             dtype=conditioner.dtype)
            else:
                check_finite(condition.embeds, "caller's precomputed condition")
            cond_obj = condition.to(pipe.device, pipe.dtype).repeat_interleave(n)
        else:
            # An optional condition left out: unconditional generation is the null condition.
            cond_obj, guidance = null, 1.0

    # -- seeds and request -----------------------------------------------------------------------
    from mka_core.diffusion.noise import make_generators

    base_seed = int(seed) if seed is not None else secrets.randbelow(2**31)
    seeds = [base_seed + i for i in range(total)]
    init = init_lengths = None
    if waves is not None:
        init = torch.stack([_fit_length(w, num_samples) for w in waves]).repeat_interleave(n, dim=0)
        init_lengths = [min(w.numel(), num_samples) for w in waves for _ in range(n)]
    mask_tensor = None
    if mask is not None:
        from mka_core.masks import mask_from_input

        mask_tensor = mask_from_input(mask, frames=frames, n_mels=pipe.config.mel.n_mels,
                                      num_samples=num_samples, sample_rate=pipe.sample_rate,
                                      hop_length=pipe.hop_length)
        mask_tensor = mask_tensor.expand(total, -1, -1, -1).contiguous()
    request = TaskRequest(
        batch_size=total, frames=frames, num_samples=num_samples, generators=make_generators(seeds),
        sampler=sampler, steps=steps, guidance=guidance, condition=cond_obj, null_condition=null,
        init_audio=init, init_audio_lengths=init_lengths, mask=mask_tensor, start_latents=start_latents, options=options, progress=progress,
    )
    task_obj.check(pipe, request)
    output = task_obj.run(pipe, request)
    waveforms = pipe.vocode(output.mel)[:, :num_samples]
    if waveforms.shape[1] < num_samples:
        waveforms = torch.nn.functional.pad(waveforms, (0, num_samples - waveforms.shape[1]))

    metadata = []
    for i in range(total):
        j = i // n
        raw = inputs[j] if inputs else None
        metadata.append({
            "mka_version": __version__,
            "task": task_name,
            "input": str(raw) if raw is not None else None,
            "input_index": j,
            "candidate": i % n,
            "seed": seeds[i],
            "conditioner": conditioner_name,
            "sampler": sampler,
            "steps": steps,
            "guidance": guidance,
            "duration": float(duration),
            "sample_rate": pipe.sample_rate,
            "task_options": options.to_json_dict(),
            **output.metadata,
        })
    return GenerationResult(waveforms.float().cpu(), pipe.sample_rate, output.mel.float().cpu(),
                            None if output.latents is None else output.latents.float().cpu(), metadata)


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))
    return str(exc)
