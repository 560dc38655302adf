"""Samplers and guidance: exact denoisers, the reference update, seeds, SDEdit starts, blending."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from mka_core.diffusion.guidance import GuidedDenoiser, guidance_dropout
from mka_core.diffusion.noise import make_generators, randn
from mka_core.diffusion.samplers import get_sampler, sampler_names
from mka_core.diffusion.schedule import NoiseSchedule
from mka_core.errors import InputError

#: The samplers mka registers itself (through the same register_samplers hook a plugin uses).
BUILTIN = ["consistency", "ddim", "dpm++2m"]
SCHEDULE = NoiseSchedule()
SHAPE = (4, 10, 8)
ABAR = SCHEDULE.alphas_cumprod64


@dataclass
class Cond:
    """A stand-in for any condition object: guidance only reads these two fields."""

    embeds: torch.Tensor
    mask: torch.Tensor


def exact_denoiser(x0: torch.Tensor):
    """The true eps when every sample's data is the single point x0."""
    def denoise(x, t):
        a = ABAR[t.cpu()].view(-1, 1, 1, 1)
        return ((x.double() - a.sqrt() * x0.double()) / (1 - a).sqrt()).float()
    return denoise


def gaussian_denoiser(mu: float, s: float):
    """The true eps when the data are N(mu, s^2 I): the probability-flow ODE is known in closed form."""
    def denoise(x, t):
        a = ABAR[t.cpu()].view(-1, 1, 1, 1)
        x = x.double()
        x0_mean = mu + (a.sqrt() * s**2 / (a * s**2 + 1 - a)) * (x - a.sqrt() * mu)
        return ((x - a.sqrt() * x0_mean) / (1 - a).sqrt()).float()
    return denoise


def seeded(seeds):
    gens = make_generators(seeds)
    return randn(SHAPE, gens), gens


# -- timesteps ------------------------------------------------------------------------------

def test_ddim_reference_timesteps():
    ddim = get_sampler("ddim")
    assert ddim.timesteps(SCHEDULE, 100) == list(range(991, 0, -10))
    assert ddim.timesteps(SCHEDULE, 30) == list(range(1, 1000, 33))[:30][::-1]  # exactly S calls
    assert ddim.timesteps(SCHEDULE, 1000) == list(range(999, -1, -1))


@pytest.mark.parametrize("spacing", ["logsnr", "linear"])
@pytest.mark.parametrize("steps", [1, 2, 10, 25, 100, 1000])
def test_dpm_timesteps_are_exactly_s_distinct_steps_from_999_to_0(spacing, steps):
    ts = get_sampler("dpm++2m", spacing=spacing).timesteps(SCHEDULE, steps)
    assert len(ts) == steps and ts[0] == 999 and all(a > b for a, b in zip(ts, ts[1:]))
    assert ts[-1] == (0 if steps > 1 else 999)


# -- accuracy -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,steps,options", [
    ("ddim", 100, {}), ("ddim", 10, {}), ("ddim", 25, {"eta": 0.5}), ("ddim", 50, {"eta": 1.0}),
    ("dpm++2m", 10, {}), ("dpm++2m", 25, {}), ("dpm++2m", 100, {}), ("dpm++2m", 25, {"spacing": "linear"}),
])
def test_exact_denoiser_lands_on_x0(name, steps, options):
    x0 = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    x_T, gens = seeded([1, 2])
    out = get_sampler(name, **options).sample(exact_denoiser(x0), x_T, schedule=SCHEDULE, steps=steps, generators=gens)
    assert out.dtype == torch.float32
    assert (out - x0).abs().max() < 1e-3


def linear_model(seed: int):
    """A random linear eps-model (channel mixing plus a timestep-dependent bias) in any dtype."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.eye(4, dtype=torch.float64) * 0.9 + 0.05 * torch.randn(4, 4, generator=gen, dtype=torch.float64)
    bias = 0.1 * torch.randn(4, 1, 1, generator=gen, dtype=torch.float64)

    def model(x, t):
        w, b = weight.to(x.dtype), bias.to(x.dtype)
        return torch.einsum("oc,bchw->bohw", w, x) + b * (t.to(x.dtype) / 1000).view(-1, 1, 1, 1)
    return model


@pytest.mark.parametrize("final_alpha,steps", [("reference", 100), ("reference", 10), ("one", 25)])
def test_ddim_matches_a_float64_loop_of_the_reference_rule(final_alpha, steps):
    model = linear_model(3)
    x_T = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(4))
    out = get_sampler("ddim", final_alpha=final_alpha).sample(model, x_T, schedule=SCHEDULE, steps=steps)
    # x0_hat = (x - sqrt(1 - a) eps) / sqrt(a); x_prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev) eps,
    # with a_prev of the last step (t = 1) = abar_0 in the reference, 1 in mka's default.
    c = 1000 // steps
    ts = [t + 1 for t in range(0, 1000, c)][::-1]
    x = x_T.double()
    for i, t in enumerate(ts):
        a = ABAR[t]
        a_prev = ABAR[ts[i + 1]] if i + 1 < len(ts) else (ABAR[0] if final_alpha == "reference" else torch.tensor(1.0, dtype=torch.float64))
        eps = model(x, torch.full((2,), t))
        x0_hat = (x - (1 - a).sqrt() * eps) / a.sqrt()
        x = a_prev.sqrt() * x0_hat + (1 - a_prev).sqrt() * eps
    assert x.abs().max() > 0.1  # a real signal, not a collapse to zero
    assert (out.double() - x).abs().max() < 1e-5


def test_dpm_solver_25_steps_solves_the_ode_better_than_ddim_100():
    mu, s = 0.7, 0.5
    den = gaussian_denoiser(mu, s)
    x_T = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(5))
    # Gaussian data: (x_t - alpha_t mu) / sqrt(alpha_t^2 s^2 + sigma_t^2) is constant along the ODE.
    a_T = ABAR[999]
    exact = mu + s * (x_T.double() - a_T.sqrt() * mu) / (a_T * s**2 + 1 - a_T).sqrt()
    errors = {}
    for label, name, steps in (("dpm25", "dpm++2m", 25), ("dpm10", "dpm++2m", 10), ("ddim100", "ddim", 100)):
        out = get_sampler(name).sample(den, x_T, schedule=SCHEDULE, steps=steps)
        errors[label] = (out.double() - exact).abs().mean().item()
    assert errors["dpm25"] < 2e-3 and errors["dpm25"] < errors["ddim100"], errors
    assert errors["dpm10"] < 2e-2, errors


def test_half_precision_model_keeps_a_float32_state():
    model = linear_model(6)
    x_T = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(7))
    for name in BUILTIN:  # the consistency sampler re-noises: fresh generators give both runs the same noise
        full = get_sampler(name).sample(model, x_T, schedule=SCHEDULE, steps=10, generators=make_generators([1]))
        half = get_sampler(name).sample(lambda x, t: model(x.bfloat16(), t), x_T, schedule=SCHEDULE, steps=10,
                                        generators=make_generators([1]))
        assert half.dtype == torch.float32
        assert (half - full).abs().max() < 0.1 * full.abs().max()


# -- seeds ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,options", [("dpm++2m", {}), ("ddim", {"eta": 0.7}), ("consistency", {})])
def test_seeds_batch_and_determinism(name, options):
    den = gaussian_denoiser(0.0, 1.0)
    sampler = get_sampler(name, **options)

    def run(seeds):
        x_T, gens = seeded(seeds)
        return sampler.sample(den, x_T, schedule=SCHEDULE, steps=5, generators=gens)
    batch = run([7, 8, 9])
    assert torch.equal(batch, run([7, 8, 9]))
    assert not torch.allclose(batch[0], batch[1])
    for i, seed in enumerate([7, 8, 9]):
        assert (batch[i] - run([seed])[0]).abs().max() < 1e-5


def test_noise_is_drawn_per_sample_on_the_cpu():
    gens = make_generators([3, 4])
    noise = randn(SHAPE, gens, dtype=torch.float64)
    assert noise.dtype == torch.float64 and noise.shape == (2, *SHAPE)
    assert torch.equal(noise[1].float(), torch.randn(SHAPE, generator=torch.Generator().manual_seed(4)))
    torch.manual_seed(11)
    global_draw = randn(SHAPE, None, batch_size=2)
    torch.manual_seed(11)
    assert torch.equal(global_draw, torch.randn(2, *SHAPE))  # the reference's torch.randn(n, ...) after a seed
    with pytest.raises(ValueError, match="one generator per sample"):
        randn(SHAPE, make_generators([1]), batch_size=2)


# -- guidance -------------------------------------------------------------------------------

def pooled_model(calls: list, weight: torch.Tensor):
    def model(x, t, context, mask):
        calls.append(x.shape[0])
        pooled = (context * mask[..., None]).sum(1) @ weight
        return x * 0.5 + pooled.view(-1, 1, 1, 1) + t.view(-1, 1, 1, 1) * 1e-3
    return model


def test_guidance_is_one_batched_forward_and_equals_two():
    calls: list = []
    model = pooled_model(calls, torch.randn(3))
    cond = Cond(torch.randn(2, 4, 3), torch.tensor([[True] * 4, [True, True, False, False]]))
    null = Cond(torch.randn(1, 2, 3), torch.ones(1, 2, dtype=torch.bool))  # fewer tokens, batch 1
    x, t = torch.randn(2, *SHAPE), torch.tensor([5, 5])
    guided = GuidedDenoiser(model, cond, null, 3.0)(x, t)
    assert calls == [4]
    e_c = model(x, t, cond.embeds, cond.mask)
    e_u = model(x, t, null.embeds.expand(2, -1, -1), null.mask.expand(2, -1))
    assert (guided - (e_u + 3.0 * (e_c - e_u))).abs().max() < 1e-6


def test_guidance_scale_one_or_no_null_is_a_single_forward_per_step():
    calls: list = []
    model = pooled_model(calls, torch.randn(3))
    cond = Cond(torch.randn(2, 4, 3), torch.ones(2, 4, dtype=torch.bool))
    null = Cond(torch.zeros(1, 4, 3), torch.ones(1, 4, dtype=torch.bool))
    x = torch.randn(2, *SHAPE)
    for denoiser in (GuidedDenoiser(model, cond, null, 1.0), GuidedDenoiser(model, cond, None, 3.0)):
        calls.clear()
        get_sampler("ddim").sample(denoiser, x, schedule=SCHEDULE, steps=4)
        assert calls == [2, 2, 2, 2] and denoiser.calls == 4
    # No condition at all: the null condition drives the model (unconditional sampling).
    uncond = GuidedDenoiser(model, None, null, 3.0)
    t = torch.tensor([9, 9])
    assert torch.equal(uncond(x, t), model(x, t, null.embeds.expand(2, -1, -1), null.mask.expand(2, -1)))
    with pytest.raises(ValueError, match="batch"):
        GuidedDenoiser(model, cond, null, 3.0)(torch.randn(3, *SHAPE), torch.tensor([1, 1, 1]))


def test_guidance_runs_a_half_precision_model_and_returns_float32():
    calls: list = []
    model = pooled_model(calls, torch.randn(3, dtype=torch.bfloat16))
    cond = Cond(torch.randn(1, 2, 3, dtype=torch.bfloat16), torch.ones(1, 2, dtype=torch.bool))
    null = Cond(torch.zeros(1, 1, 3), torch.ones(1, 1, dtype=torch.bool))  # float32 null is cast once
    eps = GuidedDenoiser(model, cond, null, 3.0)(torch.randn(1, *SHAPE, dtype=torch.bfloat16), torch.tensor([3]))
    assert eps.dtype == torch.float32


def test_guidance_dropout_replaces_by_the_null_condition():
    cond = Cond(torch.ones(64, 3, 2), torch.ones(64, 3, dtype=torch.bool))
    null = Cond(torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.bool))
    out = guidance_dropout(cond, null, 0.5, torch.Generator().manual_seed(0))
    dropped = out.embeds.abs().sum((1, 2)) == 0
    assert 10 < int(dropped.sum()) < 54
    assert torch.equal(out.mask[dropped], torch.tensor([[True, False, False]]).expand(int(dropped.sum()), 3))
    assert torch.equal(out.embeds[~dropped], cond.embeds[~dropped])
    again = guidance_dropout(cond, null, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(again.embeds, out.embeds)
    assert torch.equal(guidance_dropout(cond, null, 0.0).embeds, cond.embeds)
    assert int((guidance_dropout(cond, null, 1.0).embeds.abs().sum((1, 2)) == 0).sum()) == 64
    # The default p is the paper's 0.1.
    many = Cond(torch.ones(4000, 1, 2), torch.ones(4000, 1, dtype=torch.bool))
    rate = (guidance_dropout(many, null, generator=torch.Generator().manual_seed(1)).embeds.sum((1, 2)) == 0).float().mean()
    assert 0.08 < rate.item() < 0.12


# -- SDEdit starts --------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILTIN)
def test_sdedit_strength_and_start_step(name):
    x0 = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(8))
    start = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(9))
    x_T, _ = seeded([3])
    sampler = get_sampler(name)
    den = exact_denoiser(x0)

    def run(**kwargs):  # fresh generators per run: samplers that draw noise draw the same
        return sampler.sample(den, x_T, schedule=SCHEDULE, steps=20, generators=make_generators([3]), **kwargs)
    plain = run()
    assert torch.equal(plain, run(strength=1.0, start_latents=start))
    assert torch.equal(plain, run(start_step=0, start_latents=start))
    for strength in (0.05, 0.2, 0.5, 0.9):
        out = run(strength=strength, start_latents=start)
        assert (out - x0).abs().max() < 1e-3, strength
    untouched = run(strength=1e-4, start_latents=start)
    assert torch.equal(untouched, start)


def test_sdedit_noises_the_start_to_the_first_level_it_runs():
    start = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(10))
    x_T, _ = seeded([5])
    seen, progress = [], []

    def recorder(x, t):
        seen.append((int(t[0]), x.clone()))
        return torch.zeros_like(x)
    get_sampler("ddim").sample(recorder, x_T, schedule=SCHEDULE, steps=100, strength=0.3, start_latents=start,
                               progress=lambda i, n: progress.append((i, n)))
    assert [t for t, _ in seen] == list(range(291, 0, -10))
    assert torch.allclose(seen[0][1], SCHEDULE.add_noise(start, x_T, 291), atol=1e-6)
    assert progress[0] == (1, 30) and progress[-1] == (30, 30)
    seen.clear()
    get_sampler("ddim").sample(recorder, x_T, schedule=SCHEDULE, steps=100, start_step=70, start_latents=start)
    assert [t for t, _ in seen] == list(range(291, 0, -10))


def test_sdedit_arguments_are_checked():
    x_T, _ = seeded([0])
    den = exact_denoiser(torch.zeros(1, *SHAPE))
    with pytest.raises(InputError, match="start_latents"):
        get_sampler("ddim").sample(den, x_T, schedule=SCHEDULE, steps=10, strength=0.5)
    with pytest.raises(InputError, match="not both"):
        get_sampler("ddim").sample(den, x_T, schedule=SCHEDULE, steps=10, strength=0.5, start_step=2, start_latents=x_T)
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        get_sampler("ddim").sample(den, x_T, schedule=SCHEDULE, steps=10, strength=1.5, start_latents=x_T)
    with pytest.raises(InputError, match="start_step"):
        get_sampler("ddim").sample(den, x_T, schedule=SCHEDULE, steps=10, start_step=11, start_latents=x_T)


# -- mask blending --------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILTIN)
def test_mask_blending_keeps_the_known_region(name):
    known = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(12))
    mask = torch.zeros(2, 1, *SHAPE[1:])  # broadcast over channels
    mask[..., 4:] = 1  # regenerate the second half
    sampler = get_sampler(name)
    first_input = []

    def den(x, t):
        if not first_input:
            first_input.append(x.clone())
        return gaussian_denoiser(0, 1)(x, t)
    x_T, gens = seeded([0, 1])
    out = sampler.sample(den, x_T, schedule=SCHEDULE, steps=8, known_latents=known, known_mask=mask, generators=gens)
    assert torch.equal(out[..., :4], known[..., :4])
    assert not torch.allclose(out[..., 4:], known[..., 4:])
    # The known region enters the model noised to the first level with the samples' own next noise.
    replay = make_generators([0, 1])
    randn(SHAPE, replay)
    t0 = sampler.timesteps(SCHEDULE, 8)[0]
    expected = SCHEDULE.add_noise(known, randn(SHAPE, replay), t0)
    assert torch.allclose(first_input[0][..., :4], expected[..., :4], atol=1e-6)
    assert torch.equal(first_input[0][..., 4:], x_T[..., 4:])
    # Same seeds -> same result; a batch equals its single runs.
    x_T, gens = seeded([0, 1])
    again = sampler.sample(den, x_T, schedule=SCHEDULE, steps=8, known_latents=known, known_mask=mask, generators=gens)
    assert torch.equal(out, again)
    x_T, gens = seeded([1])
    single = sampler.sample(den, x_T, schedule=SCHEDULE, steps=8, known_latents=known[1:], known_mask=mask[1:], generators=gens)
    assert (single[0] - out[1]).abs().max() < 1e-5


def test_mask_blending_with_the_exact_denoiser_lands_on_the_target_everywhere():
    target = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(13))
    mask = (torch.rand(1, 1, *SHAPE[1:], generator=torch.Generator().manual_seed(14)) > 0.5).float()
    x_T, gens = seeded([2])
    out = get_sampler("dpm++2m").sample(exact_denoiser(target), x_T, schedule=SCHEDULE, steps=10,
                                        known_latents=target, known_mask=mask, generators=gens)
    assert (out - target).abs().max() < 1e-3
    with pytest.raises(InputError, match="both known_latents and known_mask"):
        get_sampler("ddim").sample(exact_denoiser(target), x_T, schedule=SCHEDULE, steps=4, known_latents=target)


# -- registry -------------------------------------------------------------------------------

def test_registry_and_bad_settings():
    assert sampler_names() == BUILTIN
    assert get_sampler(" DDIM ", eta=0.3).config.eta == 0.3
    with pytest.raises(InputError, match="choose one of: consistency, ddim, dpm\\+\\+2m"):
        get_sampler("euler-a")
    with pytest.raises(InputError, match="Invalid options for sampler 'ddim'"):
        get_sampler("ddim", eta=-1)
    with pytest.raises(InputError, match="Invalid options for sampler 'dpm\\+\\+2m'"):
        get_sampler("dpm++2m", eta=0.5)
    den = exact_denoiser(torch.zeros(1, *SHAPE))
    for steps in (0, 1001):
        with pytest.raises(InputError, match="at least 1 and at most 1000"):
            get_sampler("ddim").sample(den, torch.zeros(1, *SHAPE), schedule=SCHEDULE, steps=steps)


# -- the consistency sampler ----------------------------------------------------------------

def test_consistency_boundary_condition_and_scalings():
    from mka_core.diffusion.samplers.consistency import boundary_scalings

    c_skip, c_out = boundary_scalings(0)
    assert (c_skip, c_out) == (1.0, 0.0)
    t = torch.tensor([0.0, 1.0, 19.0, 999.0], dtype=torch.float64)
    c_skip, c_out = boundary_scalings(t)
    assert c_skip[0] == 1 and c_out[0] == 0
    # sigma_data 0.5, timestep scaling 10: the skip weight fades within a few steps of t = 0.
    assert torch.allclose(c_skip, 0.25 / ((10 * t) ** 2 + 0.25)) and torch.allclose(c_out, 10 * t / ((10 * t) ** 2 + 0.25).sqrt())
    assert c_skip[2] < 1e-3 and c_out[3] > 0.999999


def test_consistency_timesteps_follow_the_skipping_step_grid():
    sampler = get_sampler("consistency")
    assert sampler.timesteps(SCHEDULE, 1) == [999]
    assert sampler.timesteps(SCHEDULE, 2) == [999, 499]
    assert sampler.timesteps(SCHEDULE, 4) == [999, 759, 519, 279]
    assert sampler.timesteps(SCHEDULE, 50) == list(range(999, 0, -20))
    assert get_sampler("consistency", original_steps=10).timesteps(SCHEDULE, 2) == [999, 499]
    assert get_sampler("consistency", original_steps=10).timesteps(SCHEDULE, 3) == [999, 699, 399]
    with pytest.raises(InputError, match="at most 50 steps"):
        sampler.timesteps(SCHEDULE, 51)


def test_consistency_step_predicts_x0_then_renoises_with_the_samples_own_noise():
    x0 = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(20))
    seen = []

    def den(x, t):
        seen.append((int(t[0]), x.clone()))
        return exact_denoiser(x0)(x, t)
    x_T, gens = seeded([4, 5])
    out = get_sampler("consistency").sample(den, x_T, schedule=SCHEDULE, steps=4, generators=gens)
    assert [t for t, _ in seen] == [999, 759, 519, 279]
    assert (out - x0).abs().max() < 1e-4  # the exact x0 prediction, with c_skip(279) ~ 3e-7 of x
    # The second model input is x0's prediction at 999 noised to 759 with each sample's next noise.
    replay = make_generators([4, 5])
    randn(SHAPE, replay)  # x_T
    a = ABAR[759]
    c_skip, c_out = 0.25 / (9990.0**2 + 0.25), 9990.0 / (9990.0**2 + 0.25) ** 0.5
    expected = a.sqrt() * (c_skip * x_T.double() + c_out * x0.double()) + (1 - a).sqrt() * randn(SHAPE, replay).double()
    assert (seen[1][1].double() - expected).abs().max() < 1e-4


def test_consistency_sdedit_spreads_its_steps_below_the_start():
    x0 = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(21))
    start = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(22))
    seen = []

    def den(x, t):
        seen.append((int(t[0]), x.clone()))
        return exact_denoiser(x0)(x, t)
    x_T, gens = seeded([6])
    out = get_sampler("consistency").sample(den, x_T, schedule=SCHEDULE, steps=2, strength=0.5, start_latents=start,
                                            generators=gens)
    # Two model calls, both at or below t0 * N: a two-step student still does two steps from the start.
    assert [t for t, _ in seen] == [499, 259]
    assert torch.allclose(seen[0][1], SCHEDULE.add_noise(start, x_T, 499), atol=1e-6)
    assert (out - x0).abs().max() < 1e-4
    seen.clear()
    get_sampler("consistency").sample(den, x_T, schedule=SCHEDULE, steps=4, start_step=2, start_latents=start)
    assert [t for t, _ in seen] == [519, 279]
