"""DDIM (Song et al. 2021) on the reference release's timesteps.

Timesteps ("uniform" in the reference, diffusers' "leading" with offset 1): ``c = N // S``,
``arange(0, N, c) + 1``, run in descending order: 991, 981, ..., 1 for S = 100. When S does not
divide N the first S of them are kept, so a run always makes exactly S model calls.

Update, with ``a = abar_t`` and ``a' = abar`` of the next timestep::

    x0    = (x - sqrt(1 - a) eps) / sqrt(a)                 (never clipped)
    sigma = eta sqrt((1 - a') / (1 - a)) sqrt(1 - a / a')
    x'    = sqrt(a') x0 + sqrt(1 - a' - sigma^2) eps + sigma z

with ``z`` from the per-sample generators (drawn only when ``eta > 0``). The level after the
last step is ``final_alpha``: ``"one"`` (mka's default) lands on the clean signal;
``"reference"`` lands on ``abar_0`` = 0.99915 as the reference does (diffusers'
``set_alpha_to_one=False``), about 0.029 eps away; converted models record that mode.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from pydantic import Field

from mka_core.config import StrictModel
from mka_core.diffusion.noise import randn
from mka_core.diffusion.samplers.base import Denoiser, Sampler, abar_at, timestep_tensor
from mka_core.diffusion.schedule import NoiseSchedule


class DDIMOptions(StrictModel):
    """Options of the ``ddim`` sampler."""

    eta: float = Field(0.0, ge=0.0, description="Stochasticity: 0 is the deterministic DDIM of the paper, 1 is DDPM-like.")
    final_alpha: Literal["one", "reference"] = Field(
        "one", description="Level after the last step: 'one' = clean signal; 'reference' = abar_0 as the reference release."
    )


class DDIMSampler(Sampler):
    name = "ddim"
    Options = DDIMOptions

    @property
    def eta(self) -> float:
        return self.config.eta

    def timesteps(self, schedule: NoiseSchedule, steps: int) -> list[int]:
        n = schedule.num_train_steps
        stride = max(1, n // steps)
        offset = 1 if stride > 1 else 0  # with every step used, +1 would run past N - 1
        return [t + offset for t in range(0, n, stride)][:steps][::-1]

    def final_alpha(self, schedule: NoiseSchedule) -> float:
        return float(schedule.alphas_cumprod64[0]) if self.config.final_alpha == "reference" else 1.0

    def step(self, denoiser: Denoiser, x: torch.Tensor, t: int, t_next: int | None, schedule: NoiseSchedule,
             generators: Sequence[torch.Generator] | None, state: dict) -> torch.Tensor:
        eps = denoiser(x, timestep_tensor(t, x)).float()
        a_t = float(schedule.alphas_cumprod64[t])
        a_prev = abar_at(schedule, t_next, self.final_alpha(schedule))
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        sigma = 0.0
        if self.eta > 0 and a_prev < 1.0:
            sigma = self.eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
        x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            x_prev = x_prev + sigma * randn(x.shape[1:], generators, x.device, batch_size=x.shape[0])
        return x_prev
