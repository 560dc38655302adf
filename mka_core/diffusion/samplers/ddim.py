"""DDIM (Song et al. 2021) with the reference release's timesteps.

Timesteps ("leading", offset 1): ``c = N // S``, ``arange(0, N, c) + 1`` -> 1, 11, ..., 991 for
S = 100, run in descending order. ``final_alpha="reference"`` makes the last step land on
``abar[0]`` (0.99915) as the reference does; ``"one"`` (mka's default) lands on the clean
signal. x0 is never clipped.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch

from mka_core.diffusion.noise import randn
from mka_core.diffusion.samplers.base import Denoiser, Sampler, abar
from mka_core.diffusion.schedule import NoiseSchedule


class DDIMSampler(Sampler):
    name = "ddim"

    def __init__(self, eta: float = 0.0, final_alpha: Literal["one", "reference"] = "one") -> None:
        self.eta = float(eta)
        self.final_alpha_mode = final_alpha

    def timesteps(self, schedule: NoiseSchedule, steps: int) -> list[int]:
        n = schedule.num_train_steps
        stride = max(1, n // steps)
        # The reference keeps every value of arange(0, N, c); taking the first `steps` of them
        # is identical whenever S divides N (e.g. 100 -> 1..991) and gives exactly S otherwise.
        offset = 1 if stride > 1 else 0  # with every step used, the +1 would run past N - 1
        return [t + offset for t in range(0, n, stride)][:steps][::-1]

    def final_alpha(self, schedule: NoiseSchedule) -> float:
        return float(schedule.alphas_cumprod64[0]) if self.final_alpha_mode == "reference" else 1.0

    def step(self, denoiser: Denoiser, x: torch.Tensor, t: int, t_next: int | None, schedule: NoiseSchedule,
             generators: Sequence[torch.Generator] | None, state: dict) -> torch.Tensor:
        eps = denoiser(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)).float()
        a_t = float(schedule.alphas_cumprod64[t])
        a_prev = abar(schedule, t_next, self.final_alpha(schedule))
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        sigma = 0.0
        if self.eta > 0 and a_prev < 1.0:
            sigma = self.eta * math.sqrt((1 - a_prev) / (1 - a_t)) * math.sqrt(1 - a_t / a_prev)
        direction = math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
        x_prev = math.sqrt(a_prev) * x0 + direction
        if sigma > 0:
            x_prev = x_prev + sigma * randn(x.shape[1:], generators, x.device, batch_size=x.shape[0])
        return x_prev
