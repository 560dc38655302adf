"""The multi-step consistency sampler of latent consistency models (Luo et al. 2023).

A consistency-distilled student (``mka train distill``) is an epsilon-predicting U-Net whose
*consistency function* maps any point of a probability-flow trajectory to the trajectory's
origin in one call::

    x0_pred(x, t) = (x - sqrt(1 - abar_t) eps(x, t)) / sqrt(abar_t)
    f(x, t)       = c_skip(t) x + c_out(t) x0_pred(x, t)

with the boundary-condition scalings (``s`` = ``timestep_scaling``, ``sd`` = ``sigma_data``)::

    c_skip(t) = sd^2 / ((s t)^2 + sd^2)        c_out(t) = s t / sqrt((s t)^2 + sd^2)

so that ``c_skip(0) = 1`` and ``c_out(0) = 0``: at DDPM index 0, ``f(x, 0) = x``.

Sampling with N steps: start from ``x_T``; at each timestep ``tau_i`` predict
``x0 = f(x, tau_i)``; unless it is the last step, re-noise it to the next timestep with fresh
noise from the per-sample CPU generators, ``x = sqrt(abar') x0 + sqrt(1 - abar') z`` (so a seed
gives the same audio on every device); the last step returns ``x0``.

Timesteps come from the *skipping-step* grid the student was trained on: ``original_steps``
DDIM timesteps ``k - 1, 2k - 1, ..., N - 1`` with ``k = N // original_steps`` (19, 39, ..., 999
for 50 over 1000). N steps take every ``len(grid) // N``-th entry from the top: 999 for one
step, 999 and 499 for two, 999, 759, 519 and 279 for four. At most ``original_steps`` steps.

SDEdit (``strength = t0``): the steps are spread over the grid entries at or below DDPM index
``round(t0 * N) - 1`` in the same way, so a two-step student still makes two model calls from
where the start latents were noised (taking the tail of the full list would often leave none).
``start_step`` and mask blending behave as for every sampler (see :mod:`.base`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from pydantic import Field

from mka_core.config import StrictModel
from mka_core.diffusion.noise import randn
from mka_core.diffusion.samplers.base import Denoiser, Sampler, timestep_tensor
from mka_core.diffusion.schedule import NoiseSchedule
from mka_core.errors import InputError

#: The values of the latent consistency models release (and AudioLCM's): sigma_data 0.5 and
#: a timestep scaling of 10, which makes c_skip negligible above t of about 10.
SIGMA_DATA = 0.5
TIMESTEP_SCALING = 10.0
ORIGINAL_STEPS = 50


class ConsistencyOptions(StrictModel):
    """Options of the ``consistency`` sampler (a distilled model records the values it was trained with)."""

    original_steps: int = Field(ORIGINAL_STEPS, ge=1, description="Size of the skipping-step grid the student was distilled on.")
    timestep_scaling: float = Field(TIMESTEP_SCALING, gt=0, description="Scale of t in the boundary-condition scalings.")
    sigma_data: float = Field(SIGMA_DATA, gt=0, description="sigma_data of the boundary-condition scalings.")


def boundary_scalings(t, sigma_data: float = SIGMA_DATA, timestep_scaling: float = TIMESTEP_SCALING):
    """``(c_skip, c_out)`` at DDPM index ``t`` (an int, a float or a tensor): 1 and 0 at t = 0."""
    scaled = t * timestep_scaling
    denominator = scaled**2 + sigma_data**2
    return sigma_data**2 / denominator, scaled / denominator**0.5


def skipping_grid(num_train_steps: int, original_steps: int) -> list[int]:
    """The ascending skipping-step grid ``k - 1, 2k - 1, ...`` with ``k = N // original_steps``."""
    if original_steps > num_train_steps:
        raise InputError(f"original_steps ({original_steps}) cannot exceed the {num_train_steps} training steps.")
    k = num_train_steps // original_steps
    return [(i + 1) * k - 1 for i in range(original_steps)]


def spread(grid_descending: list[int], steps: int) -> list[int]:
    """``steps`` entries of a descending grid, every ``len // steps``-th from the top."""
    if not grid_descending:
        return []
    stride = max(1, len(grid_descending) // steps)
    return grid_descending[::stride][:steps]


class ConsistencySampler(Sampler):
    name = "consistency"
    Options = ConsistencyOptions

    def grid(self, schedule: NoiseSchedule) -> list[int]:
        return skipping_grid(schedule.num_train_steps, self.config.original_steps)

    def timesteps(self, schedule: NoiseSchedule, steps: int) -> list[int]:
        grid = self.grid(schedule)
        if steps > len(grid):
            raise InputError(f"The consistency sampler makes at most {len(grid)} steps (original_steps), got {steps}.")
        return spread(grid[::-1], steps)

    def start_timesteps(self, schedule: NoiseSchedule, steps: int, strength: float | None,
                        start_step: int | None) -> tuple[list[int], bool]:
        if strength is None or start_step is not None:
            return super().start_timesteps(schedule, steps, strength, start_step)
        full = self.timesteps(schedule, steps)
        below = schedule.timesteps_for_strength(self.grid(schedule)[::-1], strength)
        run = spread(below, steps)
        return run, not run or run[0] < full[0]

    def step(self, denoiser: Denoiser, x: torch.Tensor, t: int, t_next: int | None, schedule: NoiseSchedule,
             generators: Sequence[torch.Generator] | None, state: dict) -> torch.Tensor:
        eps = denoiser(x, timestep_tensor(t, x)).float()
        abar = float(schedule.alphas_cumprod64[t])
        c_skip, c_out = boundary_scalings(float(t), self.config.sigma_data, self.config.timestep_scaling)
        x0_pred = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
        x0 = c_skip * x + c_out * x0_pred
        if t_next is None:
            return x0
        abar_next = float(schedule.alphas_cumprod64[t_next])
        noise = randn(x.shape[1:], generators, x.device, batch_size=x.shape[0])
        return math.sqrt(abar_next) * x0 + math.sqrt(1 - abar_next) * noise
