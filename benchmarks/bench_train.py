"""Training throughput (samples/s) of the ``base`` U-Net and VAE: forward, backward, AdamW step.

U-Net: the diffusion loss (noise a 4x10x78 latent at a random step, predict the noise, MSE)
with a 77x1024 context. VAE: a 1x80x624 mel, reconstruction L1 plus the 1e-6 KL term (the
discriminator of the full VAE recipe is not included). Floors take a backward pass as twice
the forward's FLOPs. float32 everywhere; on CUDA also bfloat16 autocast.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.bench_peak import floor_seconds
from benchmarks.common import Context, PeakMemory, Row, standalone


def batches(ctx: Context) -> dict[str, int]:
    if ctx.device.type == "cpu":
        return {"unet": 2, "vae": 1}
    return {"unet": 16, "vae": 8}


def unet_step_fn(ctx: Context, batch: int, autocast: torch.dtype | None):
    from mka_core.diffusion.schedule import NoiseSchedule
    from mka_core.models.unet import UNet, UNetConfig

    torch.manual_seed(0)
    unet = UNet(UNetConfig.preset("base")).to(ctx.device).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-5)
    schedule = NoiseSchedule()
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(batch, 4, 10, 78, generator=gen).to(ctx.device)
    context = torch.randn(batch, 77, 1024, generator=gen).to(ctx.device)

    def step():
        t = schedule.sample_timesteps(batch, gen, ctx.device)
        noise = torch.randn(x0.shape, generator=gen).to(ctx.device)
        with torch.autocast(ctx.device.type, dtype=autocast, enabled=autocast is not None):
            loss = schedule.diffusion_loss(lambda x, tt, c: unet(x, tt, c), x0, context, t, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return unet, step


def vae_step_fn(ctx: Context, batch: int, autocast: torch.dtype | None):
    from mka_core.models.vae import AutoencoderKL, VAEConfig

    torch.manual_seed(0)
    vae = AutoencoderKL(VAEConfig.preset("base")).to(ctx.device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-5)
    gen = torch.Generator().manual_seed(2)
    mel = (torch.rand(batch, 1, 80, 624, generator=gen) * 4 - 4.5).to(ctx.device)

    def step():
        with torch.autocast(ctx.device.type, dtype=autocast, enabled=autocast is not None):
            recon, posterior = vae(mel, generator=gen)
            loss = (recon.float() - mel).abs().mean() + 1e-6 * posterior.kl().float().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return vae, step


def forward_flops(model: torch.nn.Module, fn) -> float:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def run(ctx: Context) -> list[Row]:
    rows = []
    sizes = batches(ctx)
    modes: list[tuple[str, torch.dtype | None]] = [("float32", None)]
    if ctx.device.type == "cuda":
        modes.append(("bfloat16", torch.bfloat16))
    for name, build in (("unet", unet_step_fn), ("vae", vae_step_fn)):
        batch = sizes[name]
        for dtype_name, autocast in modes:
            model, step = build(ctx, batch, autocast)
            if name == "unet":
                x = torch.randn(batch, 4, 10, 78, device=ctx.device)
                c = torch.randn(batch, 77, 1024, device=ctx.device)
                t = torch.full((batch,), 500, device=ctx.device)
                fwd = forward_flops(model, lambda: model(x, t, c))
            else:
                m = torch.randn(batch, 1, 80, 624, device=ctx.device)
                fwd = forward_flops(model, lambda: model(m, sample_posterior=False))
            reps = 1 if (ctx.quick and ctx.device.type == "cpu") else ctx.reps
            with PeakMemory(ctx.device) as mem:
                with torch.enable_grad():
                    timing = _time_training(step, ctx, reps)
            floor = floor_seconds(ctx, 3 * fwd, dtype_name)
            rows.append(Row("train", f"{name} training, batch {batch}", batch / timing.best, "samples/s",
                            ctx.device_name, dtype_name + (" autocast" if autocast else ""), batch / floor,
                            note=f"{timing.best:.2f} s/step; {3 * fwd / 1e9:.0f} GFLOP/step; peak {mem.gib or 0:.2f} GiB"))
            del model, step
    return rows


def _time_training(step, ctx: Context, reps: int):
    # time_call runs under inference_mode; training needs autograd, so time by hand.
    import time

    from benchmarks.common import Timing, sync

    step()
    sync(ctx.device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        sync(ctx.device)
        times.append(time.perf_counter() - start)
    return Timing(times)


def main() -> None:
    standalone("Training throughput", run, __doc__.splitlines()[0], needs_peaks=True)


if __name__ == "__main__":
    main()
