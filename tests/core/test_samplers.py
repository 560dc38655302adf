"""Schedule, guidance and samplers: exact denoisers, ODE accuracy, seeds, SDEdit, blending."""

from __future__ import annotations

import math

import pytest
import torch

from mka_core.conditioning import Condition
from mka_core.diffusion.guidance import GuidedDenoiser, guidance_dropout
from mka_core.diffusion.noise import make_generators, randn
from mka_core.diffusion.samplers import get_sampler
from mka_core.diffusion.schedule import NoiseSchedule, ScheduleConfig
from mka_core.errors import InputError

SCHEDULE = NoiseSchedule()
SHAPE = (4, 10, 8)


def exact_denoiser(x0: torch.Tensor):
    def denoise(x, t):
        a = SCHEDULE.alphas_cumprod64[t].float().view(-1, 1, 1, 1)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()
    return denoise


def gaussian_denoiser(mu: float, s: float):
    """The exact eps-prediction when the data are N(mu, s^2 I): the probability-flow ODE is known."""
    def denoise(x, t):
        a = SCHEDULE.alphas_cumprod64[t].view(-1, 1, 1, 1)
        x = x.double()
        var = a * s**2 + (1 - a)
        x0_mean = mu + (a.sqrt() * s**2 / var) * (x - a.sqrt() * mu)
        return ((x - a.sqrt() * x0_mean) / (1 - a).sqrt()).float()
    return denoise


def test_schedule_values():
    abar = SCHEDULE.alphas_cumprod64
    assert abs(abar[0].item() - 0.99915) < 1e-9
    betas = torch.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=torch.float64) ** 2
    assert torch.allclose(abar, torch.cumprod(1 - betas, 0), atol=0, rtol=0)
    linear = NoiseSchedule(ScheduleConfig(beta_start=0.0015, beta_end=0.0205, beta_schedule="linear"))
    assert abs(linear.betas[-1].item() - 0.0205) < 1e-12


def test_ddim_reference_timesteps():
    assert get_sampler("ddim").timesteps(SCHEDULE, 100) == list(range(991, 0, -10))
    assert len(get_sampler("dpm++2m").timesteps(SCHEDULE, 25)) == 25


@pytest.mark.parametrize("name,steps,options", [("ddim", 100, {}), ("ddim", 10, {}), ("ddim", 25, {"eta": 0.5}),
                                                  ("dpm++2m", 10, {}), ("dpm++2m", 25, {}), ("dpm++2m", 100, {})])
def test_exact_denoiser_lands_on_x0(name, steps, options):
    x0 = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    gens = make_generators([1, 2])
    x_T = randn(SHAPE, gens)
    out = get_sampler(name, **options).sample(exact_denoiser(x0), x_T, schedule=SCHEDULE, steps=steps, generators=gens)
    assert (out - x0).abs().max() < 1e-3


def test_reference_final_alpha_matches_the_reference_update():
    x0 = torch.randn(1, *SHAPE)
    x_T = torch.randn(1, *SHAPE)
    out = get_sampler("ddim", final_alpha="reference").sample(exact_denoiser(x0), x_T, schedule=SCHEDULE, steps=10)
    # Direct float64 loop of the reference rule: x_prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev) eps.
    x = x_T.double()
    ts = list(range(901, 0, -100))
    for i, t in enumerate(ts):
        a_t = SCHEDULE.alphas_cumprod64[t]
        a_prev = SCHEDULE.alphas_cumprod64[ts[i + 1]] if i + 1 < len(ts) else SCHEDULE.alphas_cumprod64[0]
        eps = (x - a_t.sqrt() * x0.double()) / (1 - a_t).sqrt()
        x0_hat = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        x = a_prev.sqrt() * x0_hat + (1 - a_prev).sqrt() * eps
    assert (out.double() - x).abs().max() < 1e-5


def test_dpm_solver_25_steps_solves_the_ode_better_than_ddim_100():
    mu, s = 0.7, 0.5
    den = gaussian_denoiser(mu, s)
    x_T = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(5))
    # Gaussian data: (x_t - alpha_t mu) / sqrt(alpha_t^2 s^2 + sigma_t^2) is constant along the ODE.
    a_T = SCHEDULE.alphas_cumprod64[999]
    exact = mu + s * (x_T.double() - a_T.sqrt() * mu) / (a_T * s**2 + 1 - a_T).sqrt()
    fast = get_sampler("dpm++2m").sample(den, x_T, schedule=SCHEDULE, steps=25)
    ddim100 = get_sampler("ddim").sample(den, x_T, schedule=SCHEDULE, steps=100)
    err_fast, err_ddim = (fast - exact).abs().mean().item(), (ddim100 - exact).abs().mean().item()
    assert err_fast < 2e-3 and err_fast < err_ddim


def test_seeds_batch_and_determinism():
    den = gaussian_denoiser(0.0, 1.0)
    sampler = get_sampler("dpm++2m")
    def run(seeds):
        gens = make_generators(seeds)
        return sampler.sample(den, randn(SHAPE, gens), schedule=SCHEDULE, steps=5, generators=gens)
    batch = run([7, 8, 9])
    assert torch.equal(batch, run([7, 8, 9]))
    assert not torch.allclose(batch[0], batch[1])
    for i, seed in enumerate([7, 8, 9]):
        assert (batch[i] - run([seed])[0]).abs().max() < 1e-5


def test_guidance_is_one_batched_forward_and_equals_two():
    calls = []
    weight = torch.randn(3)

    def model(x, t, context, mask):
        calls.append(x.shape[0])
        pooled = (context * mask[..., None]).sum(1) @ weight
        return x * 0.5 + pooled.view(-1, 1, 1, 1)

    cond = Condition(torch.randn(2, 4, 3), torch.tensor([[True] * 4, [True, True, False, False]]))
    null = Condition(torch.randn(1, 2, 3), torch.ones(1, 2, dtype=torch.bool))
    x, t = torch.randn(2, *SHAPE), torch.tensor([5, 5])
    guided = GuidedDenoiser(model, cond, null, 3.0)(x, t)
    assert calls == [4]
    e_c = model(x, t, cond.embeds, cond.mask)
    e_u = model(x, t, null.expand(2).embeds, null.expand(2).mask)
    assert torch.allclose(guided, e_u + 3.0 * (e_c - e_u), atol=1e-6)
    calls.clear()
    den = GuidedDenoiser(model, cond, null, 1.0)
    get_sampler("ddim").sample(den, x, schedule=SCHEDULE, steps=4)
    assert calls == [2, 2, 2, 2]


def test_guidance_dropout_replaces_by_the_null_condition():
    cond = Condition(torch.ones(64, 3, 2), torch.ones(64, 3, dtype=torch.bool))
    null = Condition(torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.bool))
    out = guidance_dropout(cond, null, 0.5, torch.Generator().manual_seed(0))
    dropped = out.embeds.abs().sum((1, 2)) == 0
    assert 10 < dropped.sum() < 54
    assert torch.equal(out.mask[dropped], torch.tensor([[True, False, False]]).expand(int(dropped.sum()), 3))


def test_sdedit_strength():
    x0 = torch.randn(1, *SHAPE)
    start = torch.randn(1, *SHAPE)
    gens = make_generators([3])
    x_T = randn(SHAPE, gens)
    for name in ("ddim", "dpm++2m"):
        sampler = get_sampler(name)
        full = sampler.sample(exact_denoiser(x0), x_T, schedule=SCHEDULE, steps=20)
        same = sampler.sample(exact_denoiser(x0), x_T, schedule=SCHEDULE, steps=20, strength=1.0, start_latents=start)
        assert torch.equal(full, same)
        untouched = sampler.sample(exact_denoiser(x0), x_T, schedule=SCHEDULE, steps=20, strength=1e-4, start_latents=start)
        assert torch.equal(untouched, start)
        partial = sampler.sample(exact_denoiser(x0), x_T, schedule=SCHEDULE, steps=20, strength=0.4, start_latents=start)
        assert (partial - x0).abs().max() < 1e-3


def test_mask_blending_keeps_the_known_region():
    known = torch.randn(2, *SHAPE)
    mask = torch.zeros(2, *SHAPE)
    mask[..., 4:] = 1  # regenerate the second half
    gens = make_generators([0, 1])
    out = get_sampler("dpm++2m").sample(gaussian_denoiser(0, 1), randn(SHAPE, gens), schedule=SCHEDULE, steps=8,
                                        known_latents=known, known_mask=mask, generators=gens)
    assert torch.equal(out[..., :4], known[..., :4])
    assert not torch.allclose(out[..., 4:], known[..., 4:])


def test_bad_sampler_settings():
    with pytest.raises(InputError, match="Unknown sampler"):
        get_sampler("euler-a")
    with pytest.raises(InputError, match="at least 1"):
        get_sampler("ddim").sample(exact_denoiser(torch.zeros(1, *SHAPE)), torch.zeros(1, *SHAPE), schedule=SCHEDULE, steps=0)
