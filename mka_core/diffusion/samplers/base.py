"""The sampler interface, and what every sampler shares: SDEdit starts and mask blending.

A sampler turns noise into latents with a ``denoiser(x, t) -> eps`` (guidance folded in, see
:class:`mka_core.diffusion.guidance.GuidedDenoiser`). ``t`` is a ``[B]`` long tensor of DDPM
indices. The model may run in bfloat16/float16; the sampler state stays float32 and every
coefficient is computed in float64 from the schedule and rounded once.

A subclass gives its options (``Options``, a StrictModel), its ``timesteps`` and one ``step``.
The shared :meth:`Sampler.sample` adds:

* **SDEdit start** (``strength`` or ``start_step``, with ``start_latents``): only the tail of
  the timestep list is run, from the start latents noised to its first level with ``x_T`` as
  the noise. ``strength = t0`` in (0, 1] keeps the steps at or below DDPM index
  ``round(t0 * N) - 1`` (1.0 = plain sampling from ``x_T``); ``start_step = k`` skips the first
  ``k`` entries of the list (0 = plain sampling). A start past the last step returns the start
  latents unchanged. A sampler may place an SDEdit start's steps itself by overriding
  :meth:`Sampler.start_timesteps` (the consistency sampler spreads its few steps below ``t0``).
* **Mask blending** (``known_latents`` + ``known_mask``, mask 1 = regenerate; training-free
  inpainting): the known region starts as the known latents noised to the first level, after
  every step it is replaced by them noised to the new level (fresh noise from the per-sample
  generators), and after the last step by the known latents themselves, exactly.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import torch
from pydantic import ValidationError

from mka_core.config import StrictModel
from mka_core.diffusion.noise import randn
from mka_core.diffusion.schedule import NoiseSchedule
from mka_core.errors import InputError, validation_sentence

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``progress(steps_done, total_steps)``, called after every step.
Progress = Callable[[int, int], None]


class Sampler:
    """Base class: ``sampler.sample(denoiser, x_T, schedule=..., steps=...) -> x0``."""

    name: ClassVar[str]
    Options: ClassVar[type[StrictModel]]

    def __init__(self, config: StrictModel | None = None, **options: Any) -> None:
        if config is None:
            try:
                config = self.Options(**options)
            except ValidationError as exc:
                raise InputError(validation_sentence(exc, f"options for sampler '{self.name}'")) from None
        elif options:
            raise TypeError("pass either a config object or keyword options, not both")
        self.config = config

    # -- what a sampler defines -------------------------------------------------------------
    def timesteps(self, schedule: NoiseSchedule, steps: int) -> list[int]:  # pragma: no cover - abstract
        """The ``steps`` model-evaluation timesteps (DDPM indices), descending and distinct."""
        raise NotImplementedError

    def step(self, denoiser: Denoiser, x: torch.Tensor, t: int, t_next: int | None, schedule: NoiseSchedule,
             generators: Sequence[torch.Generator] | None, state: dict) -> torch.Tensor:  # pragma: no cover
        """One update from timestep ``t`` to ``t_next`` (None: the end of sampling).

        ``state`` is a dict private to one ``sample`` call (multistep history).
        """
        raise NotImplementedError

    # -- shared driver ------------------------------------------------------------------------
    def sample(
        self,
        denoiser: Denoiser,
        x_T: torch.Tensor,
        *,
        schedule: NoiseSchedule,
        steps: int,
        strength: float | None = None,
        start_step: int | None = None,
        start_latents: torch.Tensor | None = None,
        known_latents: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        generators: Sequence[torch.Generator] | None = None,
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """Run the sampler from ``x_T`` (pure noise, float32 state) and return the latents."""
        if not 1 <= int(steps) <= schedule.num_train_steps:
            raise InputError(f"The number of sampling steps must be at least 1 and at most {schedule.num_train_steps}, got {steps}.")
        run, partial = self.start_timesteps(schedule, int(steps), strength, start_step)
        x = x_T.float()
        device = x.device
        if partial:
            if start_latents is None:
                raise InputError("An SDEdit start (strength < 1 or start_step > 0) needs start_latents to noise.")
            start = start_latents.float().to(device)
            if not run:
                return start.clone()
            x = schedule.add_noise(start, x, run[0])
        blend = known_latents is not None or known_mask is not None
        if blend:
            if known_latents is None or known_mask is None:
                raise InputError("Mask blending needs both known_latents and known_mask (1 = regenerate).")
            known = known_latents.float().to(device)
            keep = 1.0 - known_mask.float().to(device)  # 1 where the known latents stay
            x = self._blend(x, known, keep, schedule, run[0], generators)
        state: dict = {}
        for i, t in enumerate(run):
            t_next = run[i + 1] if i + 1 < len(run) else None
            x = self.step(denoiser, x, t, t_next, schedule, generators, state)
            if blend:
                x = x * (1 - keep) + keep * known if t_next is None else self._blend(x, known, keep, schedule, t_next, generators)
            if progress is not None:
                progress(i + 1, len(run))
        return x

    def start_timesteps(self, schedule: NoiseSchedule, steps: int, strength: float | None,
                        start_step: int | None) -> tuple[list[int], bool]:
        """The timesteps a run goes through, and whether it is an SDEdit start (a partial run).

        By default the tail of :meth:`timesteps` (see the module docstring); a sampler whose
        steps are few and far apart (the consistency sampler) may instead spread its steps over
        the part of the schedule below the start.
        """
        timesteps = self.timesteps(schedule, steps)
        run = self._start(timesteps, schedule, strength, start_step)
        return run, len(run) < len(timesteps)

    @staticmethod
    def _start(timesteps: list[int], schedule: NoiseSchedule, strength: float | None, start_step: int | None) -> list[int]:
        if strength is not None and start_step is not None:
            raise InputError("Give either strength or start_step for an SDEdit start, not both.")
        if strength is not None:
            return schedule.timesteps_for_strength(timesteps, strength)
        if start_step is not None:
            if not 0 <= int(start_step) <= len(timesteps):
                raise InputError(f"start_step must be in [0, {len(timesteps)}] for {len(timesteps)} steps, got {start_step}.")
            return timesteps[int(start_step):]
        return timesteps

    @staticmethod
    def _blend(x: torch.Tensor, known: torch.Tensor, keep: torch.Tensor, schedule: NoiseSchedule, t: int,
               generators: Sequence[torch.Generator] | None) -> torch.Tensor:
        noise = randn(x.shape[1:], generators, x.device, batch_size=x.shape[0])
        return x * (1 - keep) + keep * schedule.add_noise(known, noise, t)


def abar_at(schedule: NoiseSchedule, t: int | None, final: float) -> float:
    """``abar_t`` in float64; ``final`` for the level after the last step (``t`` None)."""
    return final if t is None else float(schedule.alphas_cumprod64[t])


def timestep_tensor(t: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
