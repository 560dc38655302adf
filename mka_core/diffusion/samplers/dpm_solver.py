"""DPM-Solver++(2M) (Lu et al. 2022): multistep, second order, data (x0) prediction.

Timesteps: exactly S distinct DDPM indices from N-1 down to 0. ``spacing="logsnr"`` (default)
spaces them uniformly in log-SNR ``lambda`` (the variable the solver integrates in);
``"linear"`` spaces them uniformly in t. Rounding to integer indices can make neighbours
collide where lambda moves fast (near t = 0 with many steps); colliding indices are pushed
apart by one, so a run always makes exactly S model calls. After the evaluation at t = 0 the
run lands on the clean signal (sigma = 0), where the update is the data prediction itself:
the final step is first order, as ``lower_order_final`` asks. The first step is first order
too (no history yet), also after an SDEdit start.

With ``alpha = sqrt(abar)``, ``sigma = sqrt(1 - abar)``, ``lambda = log(alpha / sigma)``,
``h = lambda_t - lambda_s`` and ``r = h_prev / h``, the step from s to t is::

    D   = x0_s                                       (first order)
    D   = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev          (second order)
    x_t = (sigma_t / sigma_s) x_s - alpha_t (exp(-h) - 1) D

On a Gaussian problem whose probability-flow ODE is known in closed form, 25 log-SNR steps
land closer to the exact solution than 100 DDIM steps (tests/core/test_samplers.py).
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
import torch
from pydantic import Field

from mka_core.config import StrictModel
from mka_core.diffusion.samplers.base import Denoiser, Sampler, timestep_tensor
from mka_core.diffusion.schedule import NoiseSchedule


class DPMSolverOptions(StrictModel):
    """Options of the ``dpm++2m`` sampler."""

    spacing: Literal["logsnr", "linear"] = Field(
        "logsnr", description="Timestep spacing from N-1 to 0: uniform in log-SNR (default) or uniform in t."
    )


def log_snr(schedule: NoiseSchedule) -> np.ndarray:
    """``lambda_t = log(alpha_t / sigma_t)`` for every DDPM index, float64 (decreasing in t)."""
    abar = schedule.alphas_cumprod64.numpy()
    return 0.5 * np.log(abar / (1 - abar))


def distinct_descending(values: np.ndarray, n: int) -> list[int]:
    """Round a descending grid to distinct integers in ``[0, n)``, keeping room for the rest."""
    steps, out = len(values), []
    for i, value in enumerate(values):
        t = int(round(float(value)))
        if out:
            t = min(t, out[-1] - 1)
        out.append(min(max(t, steps - 1 - i), n - 1))
    return out


class DPMSolverPP2M(Sampler):
    name = "dpm++2m"
    Options = DPMSolverOptions

    def timesteps(self, schedule: NoiseSchedule, steps: int) -> list[int]:
        n = schedule.num_train_steps
        if self.config.spacing == "linear":
            grid = np.linspace(n - 1, 0, steps)
        else:
            lam = log_snr(schedule)
            targets = np.linspace(lam[-1], lam[0], steps)
            # np.interp wants increasing x: lambda increases as t decreases.
            grid = np.interp(targets, lam[::-1], np.arange(n - 1, -1, -1, dtype=np.float64))
        return distinct_descending(grid, n)

    def step(self, denoiser: Denoiser, x: torch.Tensor, t: int, t_next: int | None, schedule: NoiseSchedule,
             generators: Sequence[torch.Generator] | None, state: dict) -> torch.Tensor:
        abar_s = float(schedule.alphas_cumprod64[t])
        alpha_s, sigma_s = math.sqrt(abar_s), math.sqrt(1 - abar_s)
        eps = denoiser(x, timestep_tensor(t, x)).float()
        x0 = (x - sigma_s * eps) / alpha_s
        if t_next is None:
            # sigma_t = 0: h is infinite, exp(-h) = 0, and x_t is the data prediction.
            return x0
        lambda_s = math.log(alpha_s / sigma_s)
        abar_t = float(schedule.alphas_cumprod64[t_next])
        alpha_t, sigma_t = math.sqrt(abar_t), math.sqrt(1 - abar_t)
        h = math.log(alpha_t / sigma_t) - lambda_s
        data = x0
        if "x0_prev" in state:
            r = (lambda_s - state["lambda_prev"]) / h
            data = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * state["x0_prev"]
        state["x0_prev"], state["lambda_prev"] = x0, lambda_s
        return (sigma_t / sigma_s) * x - alpha_t * math.expm1(-h) * data
