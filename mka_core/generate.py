"""One generation request, from raw inputs to cropped waveforms.

This is what :meth:`Pipeline.__call__`, ``mka generate`` and ``mka serve`` all run. The request
is a :class:`~mka_core.request.GenerationRequest`; keyword arguments build one.

Seeds: sample ``i`` of the flattened batch (input ``j``, candidate ``k``: ``i = j * n + k``)
uses seed ``seed + i`` through its own CPU generator, so a batch of N equals N single runs
with those seeds, and a seed gives the same noise on every device.

``only`` (a range of flattened indices) generates just those outputs of the request: every
input is still conditioned, so each row sees the condition a whole-batch run gives it, and
output ``i`` keeps seed ``seed + i`` and its index. ``mka generate`` under ``torchrun`` gives
each rank one such range.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from mka_core import __version__
from mka_core.conditioning import Condition
from mka_core.errors import InputError
from mka_core.model_origin import warn_if_untrained
from mka_core.pipeline import GenerationResult, Pipeline, check_finite, get_task
from mka_core.request import MAX_BATCH, GenerationRequest, build_request, check_seed
from mka_core.tasks import TaskRequest

#: Keyword arguments of :func:`generate` that are request fields (the rest are run-time objects).
REQUEST_KEYWORDS = ("task", "cond", "cond_options", "duration", "steps", "sampler", "sampler_options", "guidance",
                    "seed", "n", "init_audio", "mask", "task_options")


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


def _is_data(value: Any) -> bool:
    """An in-memory tensor or array (a run-time object, not a request field)."""
    import numpy as np

    if isinstance(value, (list, tuple)):
        return any(_is_data(item) for item in value)
    return isinstance(value, (torch.Tensor, np.ndarray))


def _as_text(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_as_text(item) for item in value]
    return value


def default_task(pipe: Pipeline, request: GenerationRequest, has_init: bool, has_mask: bool) -> str:
    """The task a request without one runs: inpaint with a mask, sdedit with an init audio, else the model's.

    The model's default wins when it takes what was given (a converted inpainting model's own task).
    """
    name = pipe.config.defaults.task
    if request.task is not None:
        return request.task
    task = get_task(name)
    if has_mask and task.mask == "unused":
        return "inpaint"
    if (has_init or "strength" in request.task_options) and not has_mask and task.init_audio == "unused":
        return "sdedit"
    return name


def generate(
    pipe: Pipeline,
    request: GenerationRequest | Sequence[Any] | None = None,
    *,
    condition: Condition | None = None,
    start_latents: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
    only: range | None = None,
    **fields: Any,
) -> GenerationResult:
    """Generate audio for ``request``; see :class:`~mka_core.pipeline.Pipeline` for the duration rule.

    ``request`` is a :class:`GenerationRequest`, or the inputs (a list of prompts or file
    paths) with the other request fields as keyword arguments (``task``, ``cond``, ``steps``,
    ``seed``...; see ``REQUEST_KEYWORDS``). ``init_audio`` and ``mask`` may also be tensors
    or arrays in memory; ``condition`` (a precomputed :class:`Condition`), ``start_latents``
    and ``progress`` are run-time objects that no request records. The result's ``request`` is
    the request as it ran, every default resolved (what a sidecar records).
    """
    unknown = sorted(set(fields) - set(REQUEST_KEYWORDS))
    if unknown:
        raise TypeError(f"generate() got unexpected keyword argument(s): {', '.join(unknown)}")
    init_data = mask_data = None
    if isinstance(request, GenerationRequest):
        if any(value is not None for value in fields.values()):
            raise InputError("Give either a GenerationRequest or keyword arguments, not both; "
                             "use request.with_changes(...) to change a request.")
    else:
        fields = {key: _as_text(value) for key, value in fields.items()}
        if _is_data(fields.get("init_audio")):
            init_data = fields.pop("init_audio")
        if _is_data(fields.get("mask")):
            mask_data = fields.pop("mask")
        if isinstance(request, (str, Path)):  # one input given bare: a batch of one, not of its characters
            request = [request]
        inputs = [str(item) for item in request] if request is not None else None
        request = build_request(inputs=inputs, **fields)
    return _run(pipe, request, init_data, mask_data, condition, start_latents, progress, only)


def warn_precision(pipe: Pipeline) -> None:
    """Say once per pipeline when its precision is not what was asked or is slow here (``mka: warning:`` at the CLI)."""
    if getattr(pipe, "_precision_warned", False):
        return
    import warnings

    from mka_core.models.precision import precision_warnings

    pipe._precision_warned = True
    for message in precision_warnings(pipe.device, getattr(pipe, "requested_dtype", pipe.dtype), pipe.dtype):
        warnings.warn(message, UserWarning, stacklevel=4)


def _run(pipe: Pipeline, request: GenerationRequest, init_data: Any, mask_data: Any, condition: Condition | None,
         start_latents: torch.Tensor | None, progress: Callable[[int, int], None] | None,
         only: range | None) -> GenerationResult:
    warn_precision(pipe)
    defaults = pipe.config.defaults
    init_audio = init_data if init_data is not None else request.init_audio
    mask = mask_data if mask_data is not None else request.mask
    task_name = default_task(pipe, request, init_audio is not None, mask is not None)
    task_obj = get_task(task_name)
    steps = request.steps if request.steps is not None else defaults.steps
    guidance = request.guidance if request.guidance is not None else defaults.guidance
    sampler = request.sampler or defaults.sampler
    sampler_options = dict(request.sampler_options)
    if not sampler_options and sampler == defaults.sampler:
        sampler_options = dict(defaults.sampler_options)
    check_sampler(sampler, sampler_options)
    options = task_options(task_obj, task_name, request.task_options)
    n = request.n

    # -- what drives the batch ----------------------------------------------------------------
    inputs = list(request.inputs) or None
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
    rows = _rows(only, total)
    base_seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    check_seed(base_seed, total)

    duration = pipe.check_duration(request.duration) if request.duration is not None else None
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
        conditioner = _conditioner(pipe, request)
        conditioner_name = conditioner.name
        if conditioner is pipe.conditioner:
            null = pipe.null_condition(len(rows))
        else:
            null = conditioner.null_condition(1).to(pipe.device, pipe.dtype).expand(len(rows))
        check_finite(null.embeds, f"conditioner '{conditioner.name}' (its null condition)", module=conditioner,
                     dtype=conditioner.dtype)
        if inputs or condition is not None:
            if condition is None:
                # Every input is encoded, whatever ``only`` keeps: a text batch pads to its longest
                # prompt, so a row's condition depends on the whole batch.
                with torch.no_grad():
                    condition = conditioner(inputs)
                check_finite(condition.embeds, f"conditioner '{conditioner.name}'", module=conditioner,
                             dtype=conditioner.dtype)
            else:
                check_finite(condition.embeds, "caller's precomputed condition")
            cond_obj = _select(condition.to(pipe.device, pipe.dtype).repeat_interleave(n), rows, total)
        else:
            # An optional condition left out: unconditional generation is the null condition.
            cond_obj, guidance = null, 1.0

    # -- seeds and request -----------------------------------------------------------------------
    from mka_core.diffusion.noise import make_generators

    seeds = [base_seed + i for i in rows]
    init = init_lengths = None
    if waves is not None:
        init = torch.stack([_fit_length(w, num_samples) for w in waves]).repeat_interleave(n, dim=0)[list(rows)]
        init_lengths = [min(waves[i // n].numel(), num_samples) for i in rows]
    mask_tensor = None
    if mask is not None:
        from mka_core.masks import mask_from_input

        mask_tensor = mask_from_input(mask, frames=frames, n_mels=pipe.config.mel.n_mels,
                                      num_samples=num_samples, sample_rate=pipe.sample_rate,
                                      hop_length=pipe.hop_length)
        mask_tensor = mask_tensor.expand(len(rows), -1, -1, -1).contiguous()
    task_request = TaskRequest(
        batch_size=len(rows), frames=frames, num_samples=num_samples, generators=make_generators(seeds),
        sampler=sampler, steps=steps, guidance=guidance, condition=cond_obj, null_condition=null,
        init_audio=init, init_audio_lengths=init_lengths, mask=mask_tensor, start_latents=start_latents,
        options=options, progress=progress, extra={"sampler_options": sampler_options},
    )
    task_obj.check(pipe, task_request)
    output = task_obj.run(pipe, task_request)
    waveforms = pipe.vocode(output.mel)[:, :num_samples]
    if waveforms.shape[1] < num_samples:
        waveforms = torch.nn.functional.pad(waveforms, (0, num_samples - waveforms.shape[1]))

    ran = request.with_changes(
        task=task_name, cond=conditioner_name, task_options=options.to_json_dict(), sampler=sampler,
        sampler_options=sampler_options, steps=steps, guidance=guidance, duration=float(duration), seed=base_seed,
    )
    metadata = []
    for i in rows:
        j = i // n
        raw = inputs[j] if inputs else None
        metadata.append({
            "mka_version": __version__,
            "task": task_name,
            "input": str(raw) if raw is not None else None,
            "index": i,
            "input_index": j,
            "candidate": i % n,
            "seed": base_seed + i,
            "conditioner": conditioner_name,
            "sampler": sampler,
            "steps": steps,
            "guidance": guidance,
            "duration": float(duration),
            "sample_rate": pipe.sample_rate,
            "task_options": options.to_json_dict(),
            "decoder": getattr(pipe, "decoder", "vae"),  # "light": the model's light decoder made the mel
            **output.metadata,
        })
    result = GenerationResult(waveforms.float().cpu(), pipe.sample_rate, output.mel.float().cpu(),
                              None if output.latents is None else output.latents.float().cpu(), metadata)
    result.request = ran
    result.indices = list(rows)
    # A `mka new-model` folder: its outputs come from random weights; said once per pipeline,
    # after they exist (a failed request shows its error alone).
    warn_if_untrained(pipe)
    return result


def _rows(only: range | None, total: int) -> range:
    if only is None:
        return range(total)
    if not isinstance(only, range) or only.step != 1 or not 0 <= only.start < only.stop <= total:
        raise InputError(f"'only' must be a non-empty range of output indices inside 0-{total - 1}, got {only!r}.")
    return only


def _select(condition: Condition, rows: range, total: int) -> Condition:
    return condition if len(rows) == total else condition[rows.start:rows.stop]


def _conditioner(pipe: Pipeline, request: GenerationRequest):
    """The request's conditioner, built once per (name, options) by the pipeline's cache."""
    return pipe.conditioner_for(request.cond, request.cond_options or None)


def task_options(task_obj, task_name: str, given: dict[str, Any]):
    """The task's options model; a rejected value is one sentence naming the task's plugin and its options.

    It is an :class:`InputError` (the value is the caller's to fix), worded as the plugin's options error.
    """
    from pydantic import ValidationError

    from mka_core.plugins.faults import options_error

    try:
        return type(task_obj).Options(**dict(given or {}))
    except ValidationError as exc:
        raise InputError(str(options_error(type(task_obj), exc, "task"))) from exc


def check_sampler(name: str, options: dict[str, Any]) -> None:
    """Unknown samplers and rejected sampler options fail before anything heavy runs."""
    from pydantic import ValidationError

    from mka_core.diffusion.samplers import get_sampler, sampler_class
    from mka_core.plugins.faults import options_error

    try:
        get_sampler(name, **options)
    except ValidationError as exc:
        raise InputError(str(options_error(sampler_class(name), exc, "sampler"))) from exc
    except TypeError as exc:
        raise InputError(f"Invalid options for sampler '{name}': {exc}.") from exc
