"""The noise schedule: N = 1000 steps, scaled-linear betas, epsilon prediction.

``betas = linspace(sqrt(beta_start), sqrt(beta_end), N) ** 2`` in float64, as the reference
computes them (float32 would move ``alphas_cumprod`` by up to ~1e-6 relative). The cumulative
products are kept twice: in float64 for the samplers' coefficients and rounded once to
float32 for training. Timesteps are DDPM indices ``0 .. N-1``; index ``t`` has noise level
``abar_t`` and ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``.

Per-timestep coefficients are computed in float64 on the CPU, rounded once to float32 and
cached per device, then gathered there by ``t`` (no float64 on MPS, no host sync in training,
never half precision).
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Sequence

import torch
from pydantic import Field, model_validator

from mka_core.config import StrictModel
from mka_core.errors import InputError

LossKind = Literal["mse", "l1"]


class ScheduleConfig(StrictModel):
    """The diffusion schedule a model was trained with (stored with the model)."""

    num_train_steps: int = Field(1000, ge=2, description="Diffusion steps N.")
    beta_start: float = Field(0.00085, gt=0, lt=1, description="First beta.")
    beta_end: float = Field(0.012, gt=0, lt=1, description="Last beta.")
    beta_schedule: Literal["scaled_linear", "linear"] = Field(
        "scaled_linear", description="scaled_linear: linspace of sqrt(beta), squared (the paper); linear: linspace of beta."
    )
    prediction: Literal["eps"] = Field("eps", description="What the U-Net predicts.")
    loss: LossKind = Field("mse", description="Training loss on the prediction (mse: the paper; l1: an option).")
    alphas_cumprod: list[float] | None = Field(
        None, description="Exact abar_t values (length N) that override the betas, e.g. a converted checkpoint's buffer."
    )

    @model_validator(mode="after")
    def _check_override_length(self) -> ScheduleConfig:
        if self.alphas_cumprod is not None and len(self.alphas_cumprod) != self.num_train_steps:
            raise ValueError(f"alphas_cumprod has {len(self.alphas_cumprod)} values; num_train_steps is {self.num_train_steps}")
        return self


class NoiseSchedule:
    """Schedule arithmetic shared by training and every sampler."""

    config_class = ScheduleConfig

    def __init__(self, config: ScheduleConfig | None = None) -> None:
        self.config = config or ScheduleConfig()
        cfg, n = self.config, self.config.num_train_steps
        if cfg.alphas_cumprod is not None:
            abar = torch.tensor(cfg.alphas_cumprod, dtype=torch.float64)
            betas = 1 - abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        else:
            if cfg.beta_schedule == "scaled_linear":
                betas = torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, n, dtype=torch.float64) ** 2
            else:
                betas = torch.linspace(cfg.beta_start, cfg.beta_end, n, dtype=torch.float64)
            abar = torch.cumprod(1.0 - betas, dim=0)
        self.betas: torch.Tensor = betas  # float64, CPU
        self.alphas_cumprod64: torch.Tensor = abar  # float64, CPU: the samplers' coefficients
        self.alphas_cumprod: torch.Tensor = abar.float()  # float32: what a checkpoint stores
        self._tables: dict[tuple[str, str], torch.Tensor] = {}

    @property
    def num_train_steps(self) -> int:
        return self.config.num_train_steps

    def _table(self, name: str, device: torch.device) -> torch.Tensor:
        """A per-timestep float32 table on ``device``, computed in float64 (``1 - abar`` near
        t = 0 would lose ~1e-5 relative in float32)."""
        key = (name, str(device))
        if key not in self._tables:
            abar = self.alphas_cumprod64
            values = {"abar": abar, "sqrt_abar": abar.sqrt(), "sqrt_one_minus_abar": (1 - abar).sqrt(),
                      "snr": abar / (1 - abar)}[name]
            self._tables[key] = values.to(torch.float32).to(device)
        return self._tables[key]

    def _gather(self, name: str, t: torch.Tensor | int, like: torch.Tensor | None) -> torch.Tensor:
        device = like.device if like is not None else torch.as_tensor(t).device
        values = self._table(name, device)[torch.as_tensor(t, device=device).long().reshape(-1)]
        return values if like is None else values.view(-1, *([1] * (like.dim() - 1)))

    def abar(self, t: torch.Tensor | int, like: torch.Tensor | None = None) -> torch.Tensor:
        """``abar_t`` as float32, shaped ``[B, 1, ...]`` to broadcast against ``like`` (on its device)."""
        return self._gather("abar", t, like)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
        return self._gather("sqrt_abar", t, x0) * x0 + self._gather("sqrt_one_minus_abar", t, x0) * noise

    def eps_to_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The clean signal implied by a noise prediction: ``(x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``."""
        return (x_t - self._gather("sqrt_one_minus_abar", t, x_t) * eps) / self._gather("sqrt_abar", t, x_t)

    def snr(self, t: torch.Tensor | int) -> torch.Tensor:
        """Signal-to-noise ratio ``abar_t / (1 - abar_t)``, float32, on ``t``'s device."""
        return self._gather("snr", t, None).reshape(torch.as_tensor(t).shape)

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None,
                         device: torch.device | str = "cpu") -> torch.Tensor:
        """Uniform training timesteps in ``[0, N)`` drawn on the CPU (same draw on every device)."""
        return torch.randint(0, self.num_train_steps, (batch,), generator=generator).to(device)

    def timesteps_for_strength(self, timesteps: Sequence[int], strength: float) -> list[int]:
        """The part of a descending timestep list an SDEdit run with ``t0 = strength`` goes through.

        ``strength`` in (0, 1] names the DDPM level ``t0 * N``: the steps at or below index
        ``round(t0 * N) - 1`` are kept (all of them at 1.0, none when ``t0 * N < 0.5``).
        """
        if not 0.0 < float(strength) <= 1.0:
            raise InputError(f"Strength (SDEdit t0) must be in (0, 1], got {strength}.")
        last = int(round(float(strength) * self.num_train_steps)) - 1
        return [int(t) for t in timesteps if int(t) <= last]

    def diffusion_loss(self, unet_fn: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor], x0: torch.Tensor,
                       cond: Any, t: torch.Tensor, noise: torch.Tensor, kind: LossKind | None = None) -> torch.Tensor:
        """Training loss of one batch: noise ``x0`` to ``t``, predict the noise, compare.

        ``unet_fn(x_t, t, cond) -> eps`` may run in reduced precision; the loss is float32.
        ``kind`` defaults to the config's ``loss``.
        """
        x_t = self.add_noise(x0.float(), noise.float(), t)
        return epsilon_loss(unet_fn(x_t, t, cond), noise, kind or self.config.loss)


def epsilon_loss(eps_pred: torch.Tensor, noise: torch.Tensor, kind: LossKind = "mse",
                 weights: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """Mean epsilon-prediction error (MSE or L1) in float32, optionally weighted per sample."""
    if kind not in ("mse", "l1"):
        raise InputError(f"Unknown diffusion loss '{kind}'; choose one of: mse, l1.")
    diff = eps_pred.float() - noise.float()
    per_sample = (diff.square() if kind == "mse" else diff.abs()).flatten(1).mean(dim=1)
    if weights is not None:
        per_sample = per_sample * torch.as_tensor(weights, device=per_sample.device, dtype=per_sample.dtype)
    return per_sample.mean()
