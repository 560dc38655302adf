"""Noise schedule: the paper's values in float64, noising, SNR, SDEdit levels, training loss."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from mka_core.diffusion.schedule import NoiseSchedule, ScheduleConfig, epsilon_loss
from mka_core.errors import InputError

SCHEDULE = NoiseSchedule()


def test_scaled_linear_values_in_float64():
    abar = SCHEDULE.alphas_cumprod64
    assert abar.dtype == torch.float64 and SCHEDULE.alphas_cumprod.dtype == torch.float32
    assert abar[0].item() == pytest.approx(0.99915, abs=1e-12)
    # Independent float64 product in plain Python.
    prod, start, stop = 1.0, math.sqrt(0.00085), math.sqrt(0.012)
    for i in range(1000):
        prod *= 1 - (start + (stop - start) * i / 999) ** 2
    assert abar[-1].item() == pytest.approx(prod, rel=1e-12)
    assert abar[-1].item() == pytest.approx(0.0046601, abs=1e-7)
    assert torch.equal(SCHEDULE.alphas_cumprod, abar.float())
    # The same formula in float32 drifts by ~1e-6 relative: the float64 path is what is tested above.
    betas32 = torch.linspace(start, stop, 1000, dtype=torch.float32) ** 2
    drift = ((torch.cumprod(1 - betas32, 0).double() - abar) / abar).abs().max().item()
    assert 1e-7 < drift < 1e-5


def test_linear_schedule_and_exact_override():
    linear = NoiseSchedule(ScheduleConfig(beta_start=0.0015, beta_end=0.0205, beta_schedule="linear"))
    assert linear.betas[0].item() == pytest.approx(0.0015, abs=1e-15)
    assert linear.betas[-1].item() == pytest.approx(0.0205, abs=1e-15)
    assert torch.allclose(linear.betas.diff(), torch.full((999,), 0.019 / 999, dtype=torch.float64), atol=1e-15)
    override = NoiseSchedule(ScheduleConfig(alphas_cumprod=SCHEDULE.alphas_cumprod.tolist()))
    assert torch.equal(override.alphas_cumprod, SCHEDULE.alphas_cumprod)
    assert torch.allclose(override.betas, SCHEDULE.betas, atol=1e-6)
    with pytest.raises(ValidationError, match="num_train_steps"):
        ScheduleConfig(alphas_cumprod=[0.9, 0.8])
    with pytest.raises(ValidationError):
        ScheduleConfig(beta_schedul="linear")


def test_add_noise_and_eps_to_x0_invert_each_other():
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 4, 10, 8, generator=gen), torch.randn(3, 4, 10, 8, generator=gen)
    t = torch.tensor([0, 500, 999])
    x_t = SCHEDULE.add_noise(x0, noise, t)
    a = SCHEDULE.alphas_cumprod64[t].view(-1, 1, 1, 1)
    assert torch.allclose(x_t.double(), a.sqrt() * x0.double() + (1 - a).sqrt() * noise.double(), atol=1e-6)
    assert x_t.dtype == torch.float32
    assert torch.allclose(SCHEDULE.eps_to_x0(x_t, noise, t), x0, atol=1e-4)
    # Coefficients come from float64: sqrt(1 - abar_0) in float32 arithmetic would be ~1e-5 off.
    coef = SCHEDULE.add_noise(torch.zeros(1, 1), torch.ones(1, 1), torch.tensor([0])).item()
    assert coef == pytest.approx(math.sqrt(0.00085), rel=1e-7)
    # A scalar timestep broadcasts over the batch.
    assert torch.equal(SCHEDULE.add_noise(x0, noise, 500)[1], x_t[1])


def test_snr_decreases_and_matches_its_definition():
    snr = SCHEDULE.snr(torch.arange(1000))
    assert snr.dtype == torch.float32 and bool((snr.diff() < 0).all())
    assert snr[0].item() == pytest.approx(0.99915 / 0.00085, rel=1e-6)


def test_timesteps_for_strength():
    ddim = list(range(991, 0, -10))
    assert SCHEDULE.timesteps_for_strength(ddim, 1.0) == ddim
    half = SCHEDULE.timesteps_for_strength(ddim, 0.5)
    assert half[0] == 491 and half[-1] == 1 and len(half) == 50
    assert SCHEDULE.timesteps_for_strength(ddim, 0.2)[0] == 191
    assert SCHEDULE.timesteps_for_strength(ddim, 1e-4) == []
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(InputError, match=r"\(0, 1\]"):
            SCHEDULE.timesteps_for_strength(ddim, bad)


def test_sample_timesteps_cover_the_range_reproducibly():
    t = SCHEDULE.sample_timesteps(4000, torch.Generator().manual_seed(1))
    assert t.dtype == torch.long and int(t.min()) == 0 and int(t.max()) == 999
    assert torch.equal(t, SCHEDULE.sample_timesteps(4000, torch.Generator().manual_seed(1)))


def test_diffusion_loss():
    gen = torch.Generator().manual_seed(2)
    x0, noise = torch.randn(4, 4, 10, 8, generator=gen), torch.randn(4, 4, 10, 8, generator=gen)
    t = SCHEDULE.sample_timesteps(4, gen)
    seen = {}

    def oracle(x_t, t, cond):  # recovers the noise exactly from x_t and the clean x0
        seen["cond"] = cond
        a = SCHEDULE.alphas_cumprod64[t].view(-1, 1, 1, 1)
        return ((x_t.double() - a.sqrt() * x0.double()) / (1 - a).sqrt()).to(torch.bfloat16)

    assert SCHEDULE.diffusion_loss(oracle, x0, "c", t, noise).item() < 1e-4
    assert seen["cond"] == "c"
    def zero(x_t, t, cond):
        return torch.zeros_like(x_t)

    assert SCHEDULE.diffusion_loss(zero, x0, None, t, noise).item() == pytest.approx(noise.square().mean().item(), rel=1e-5)
    assert SCHEDULE.diffusion_loss(zero, x0, None, t, noise, kind="l1").item() == pytest.approx(noise.abs().mean().item(), rel=1e-5)
    l1_schedule = NoiseSchedule(ScheduleConfig(loss="l1"))
    assert l1_schedule.diffusion_loss(zero, x0, None, t, noise).item() == pytest.approx(noise.abs().mean().item(), rel=1e-5)
    # Gradients reach the model, and per-sample weights weigh samples.
    scale = torch.zeros((), requires_grad=True)
    SCHEDULE.diffusion_loss(lambda x_t, t, c: scale * x_t, x0, None, t, noise).backward()
    assert scale.grad is not None and scale.grad.abs().item() > 0
    weighted = epsilon_loss(torch.zeros(2, 3), torch.ones(2, 3), weights=[1.0, 0.0])
    assert weighted.item() == pytest.approx(0.5)
    with pytest.raises(InputError, match="mse, l1"):
        epsilon_loss(torch.zeros(1, 1), torch.zeros(1, 1), kind="huber")
