"""The noise schedule: 1000 steps, scaled-linear betas, epsilon prediction.

``betas = linspace(sqrt(0.00085), sqrt(0.012), 1000) ** 2`` computed in float64, as the
reference does; the cumulative products are kept in float64 for the samplers' coefficients
and exposed in float32 for training.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from pydantic import Field

from mka_core.config import StrictModel


class ScheduleConfig(StrictModel):
    num_train_steps: int = Field(1000, ge=2, description="Diffusion steps N.")
    beta_start: float = Field(0.00085, gt=0, description="First beta.")
    beta_end: float = Field(0.012, gt=0, description="Last beta.")
    beta_schedule: Literal["scaled_linear", "linear"] = Field(
        "scaled_linear", description="scaled_linear: linspace of sqrt(beta) squared (the paper); linear: linspace of beta."
    )
    prediction: Literal["eps"] = Field("eps", description="What the U-Net predicts.")
    loss: Literal["mse", "l1"] = Field("mse", description="Training loss on the prediction (family-B inpainting used L1).")
    #: Optional exact cumulative products (e.g. read from a converted checkpoint's buffers).
    alphas_cumprod: list[float] | None = Field(None, description="Override of abar_t, length num_train_steps.")


class NoiseSchedule:
    """Schedule arithmetic shared by training and every sampler."""

    def __init__(self, config: ScheduleConfig | None = None) -> None:
        self.config = config or ScheduleConfig()
        n = self.config.num_train_steps
        if self.config.alphas_cumprod is not None:
            abar = torch.tensor(self.config.alphas_cumprod, dtype=torch.float64)
            if abar.numel() != n:
                raise ValueError(f"alphas_cumprod has {abar.numel()} values, expected {n}")
            alphas = abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
            betas = 1 - alphas
        else:
            if self.config.beta_schedule == "scaled_linear":
                betas = torch.linspace(self.config.beta_start**0.5, self.config.beta_end**0.5, n, dtype=torch.float64) ** 2
            else:
                betas = torch.linspace(self.config.beta_start, self.config.beta_end, n, dtype=torch.float64)
            abar = torch.cumprod(1.0 - betas, dim=0)
        self.betas = betas
        self.alphas_cumprod64 = abar
        self.alphas_cumprod = abar.float()

    @property
    def num_train_steps(self) -> int:
        return self.config.num_train_steps

    def _gather(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        values = self.alphas_cumprod64.to(like.device)[t.to(like.device).long()].to(torch.float32)
        return values.view(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
        abar = self._gather(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def eps_to_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = self._gather(t, x_t)
        return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        abar = self.alphas_cumprod64[t.long()]
        return (abar / (1 - abar)).float()

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.randint(0, self.num_train_steps, (batch,), generator=generator).to(device)



def diffusion_loss(eps_pred: torch.Tensor, noise: torch.Tensor, kind: str = "mse",
                   weights: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """Per-batch mean of the epsilon-prediction error (MSE or L1)."""
    diff = eps_pred.float() - noise.float()
    per_sample = diff.pow(2) if kind == "mse" else diff.abs()
    per_sample = per_sample.flatten(1).mean(dim=1)
    if weights is not None:
        per_sample = per_sample * torch.as_tensor(weights, device=per_sample.device, dtype=per_sample.dtype)
    return per_sample.mean()
