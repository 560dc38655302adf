"""The arithmetic of latent consistency distillation, apart from the trainer plumbing.

* :class:`ScheduleTables` - per-DDPM-index ``alpha = sqrt(abar)``, ``sigma = sqrt(1 - abar)`` and
  ``lambda = log(alpha / sigma)``, computed in float64 and rounded once to float32 on the device.
* :func:`teacher_step` - one step of the teacher's probability-flow ODE solver from ``t`` to
  ``s < t`` (per sample), with the guided teacher as the data predictor:

  - ``ddim``: ``x_s = alpha_s x0 + sigma_s eps`` (first order; LCM's and AudioLCM's choice);
  - ``dpm-solver-2``: single-step second-order DPM-Solver++ (2S) through the integer midpoint
    ``m = s + (t - s) // 2``, ``r = (lambda_m - lambda_t) / h``, ``h = lambda_s - lambda_t``::

        x_m = (sigma_m / sigma_t) x_t - alpha_m expm1(-r h) x0_t
        D   = (1 - 1 / (2 r)) x0_t + 1 / (2 r) x0_m
        x_s = (sigma_s / sigma_t) x_t - alpha_s expm1(-h) D

    twice the teacher forwards of DDIM per step, second order in h.
* :func:`consistency_output` - ``f(x, t) = c_skip(t) x + c_out(t) x0_pred(x, t)``, the boundary
  condition ``f(x, 0) = x`` built in (see :mod:`mka_core.diffusion.samplers.consistency`).
* :func:`consistency_distance` - the distance between the student's and the target network's
  outputs: ``l2`` (mean squared error) or ``huber`` (pseudo-Huber, ``sqrt(d^2 + c^2) - c``).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch

from mka_core.diffusion.samplers.consistency import boundary_scalings
from mka_core.diffusion.schedule import NoiseSchedule

#: ``x0_fn(x, t) -> (x0, eps)``: the guided teacher's data and noise predictions at ``t`` (``[B]``).
Predictor = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Solver = Literal["ddim", "dpm-solver-2"]


class ScheduleTables:
    """``alpha``, ``sigma`` and ``lambda`` per DDPM index as float32 tensors on one device."""

    def __init__(self, schedule: NoiseSchedule, device: torch.device) -> None:
        abar = schedule.alphas_cumprod64
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        self.alpha = alpha.float().to(device)
        self.sigma = sigma.float().to(device)
        self.lam = (alpha / sigma).log().float().to(device)

    def at(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The table ``name`` gathered at ``t`` and shaped ``[B, 1, ...]`` to broadcast against ``like``."""
        return getattr(self, name)[t.long()].view(-1, *([1] * (like.dim() - 1)))


def x0_from_eps(tables: ScheduleTables, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (x - tables.at("sigma", t, x) * eps) / tables.at("alpha", t, x)


def teacher_step(solver: Solver, predict: Predictor, tables: ScheduleTables, x_t: torch.Tensor,
                 t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The teacher's ODE solution at ``s`` starting from ``x_t`` at ``t`` (both ``[B]`` long, ``s < t``)."""
    x0_t, eps_t = predict(x_t, t)
    if solver == "ddim":
        return tables.at("alpha", s, x_t) * x0_t + tables.at("sigma", s, x_t) * eps_t
    if solver != "dpm-solver-2":
        raise ValueError(f"unknown teacher solver {solver!r}")
    m = s + (t - s) // 2
    lam_t, lam_m, lam_s = (tables.at("lam", i, x_t) for i in (t, m, s))
    h = lam_s - lam_t
    r = (lam_m - lam_t) / h
    sigma_t = tables.at("sigma", t, x_t)
    x_m = (tables.at("sigma", m, x_t) / sigma_t) * x_t - tables.at("alpha", m, x_t) * torch.expm1(-r * h) * x0_t
    x0_m, _ = predict(x_m, m)
    data = (1 - 1 / (2 * r)) * x0_t + (1 / (2 * r)) * x0_m
    return (tables.at("sigma", s, x_t) / sigma_t) * x_t - tables.at("alpha", s, x_t) * torch.expm1(-h) * data


def consistency_output(tables: ScheduleTables, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, *,
                       sigma_data: float, timestep_scaling: float) -> torch.Tensor:
    """``c_skip(t) x + c_out(t) x0_pred``: the student's (or target network's) estimate of the origin."""
    c_skip, c_out = boundary_scalings(t.double(), sigma_data, timestep_scaling)
    shape = (-1, *([1] * (x.dim() - 1)))
    c_skip, c_out = c_skip.float().view(shape), c_out.float().view(shape)
    return c_skip * x + c_out * x0_from_eps(tables, x, eps, t)


def consistency_distance(a: torch.Tensor, b: torch.Tensor, kind: Literal["l2", "huber"], huber_c: float) -> torch.Tensor:
    """Mean distance in float32: squared error, or pseudo-Huber ``sqrt(d^2 + c^2) - c``."""
    diff = a.float() - b.float()
    if kind == "l2":
        return diff.square().mean()
    return (diff.square() + huber_c**2).sqrt().sub(huber_c).mean()
