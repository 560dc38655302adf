"""Per-step U-Net latency of the ``base`` preset against its floor and its diffusers peer.

One step = one batched guidance forward: batch 2 (null + condition), latent 4x10x78 (10 s),
context 77x1024. FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (attention
through SDPA's math kernel so its matmuls are counted too); the floor is FLOPs / matmul peak.
The peer is diffusers' ``UNet2DConditionModel`` holding the same weights; both are checked to
compute the same function, then timed in alternation in this process.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.bench_peak import floor_seconds
from benchmarks.common import Context, PeakMemory, Row, standalone, time_alternating
from mka_core.models.precision import compute_dtype

BATCH, LATENT, CONTEXT = 2, (4, 10, 78), (77, 1024)
#: Largest |mka - diffusers| allowed, relative to the output's largest magnitude.
MATCH_TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2}


def base_unet(seed: int = 0):
    """The ``base`` U-Net with all weights perturbed (the zero-initialised convs would make
    every output zero and the equality check empty)."""
    from mka_core.models.unet import UNet, UNetConfig

    torch.manual_seed(seed)
    unet = UNet(UNetConfig.preset("base")).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return unet


def step_inputs(device: torch.device, dtype: torch.dtype, batch: int = BATCH, width: int = LATENT[2]):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(batch, LATENT[0], LATENT[1], width, generator=gen).to(device, dtype)
    t = torch.full((batch,), 500, dtype=torch.long, device=device)
    context = torch.randn(batch, *CONTEXT, generator=gen).to(device, dtype)
    return x, t, context


def unet_flops(unet, batch: int = BATCH, width: int = LATENT[2]) -> float:
    """FLOPs of one forward (float32 on the CPU; counts do not depend on device or dtype)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    x, t, context = step_inputs(torch.device("cpu"), torch.float32, batch, width)
    param = next(unet.parameters())
    cpu_unet = unet if param.device.type == "cpu" and param.dtype == torch.float32 else None
    if cpu_unet is None:
        raise ValueError("count FLOPs on the float32 CPU model before moving it")
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        cpu_unet(x, t, context)
    return float(counter.get_total_flops())


def check_same_function(mka, peer, x, t, context, dtype_name: str) -> float:
    with torch.inference_mode():
        a = mka(x, t, context).float()
        b = peer(x, t, context).float()
    diff = (a - b).abs().max().item()
    scale = a.abs().max().item()
    if not diff <= MATCH_TOLERANCE[dtype_name] * max(scale, 1e-6):
        raise AssertionError(f"mka and diffusers U-Nets disagree in {dtype_name}: max |diff| {diff:.3g} at scale {scale:.3g}")
    return diff


def run(ctx: Context) -> list[Row]:
    from benchmarks.unet_peer import PeerCall, build_peer

    unet = base_unet()
    flops = unet_flops(unet)
    peer = PeerCall(build_peer(unet))
    rows: list[Row] = []
    dev = ctx.device_name
    for dtype_name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        if compute_dtype(ctx.device, dtype) != dtype:
            # No bf16 instructions: mka runs float32 for a bfloat16 request (the pipeline's
            # policy), and timing either network in emulated bfloat16 would take minutes per step
            # and measure torch's emulation, not the models.
            fp32 = rows[0]
            rows.append(Row("unet", "U-Net step, mka as run for a bf16 request", fp32.value, "s", dev, dtype_name,
                            floor_seconds(ctx, flops, dtype_name),
                            note="runs float32: this CPU has no bf16 instructions (figure of the float32 rows); "
                                 "the peer is not timed in emulated bfloat16"))
            continue
        unet.to(ctx.device, dtype)
        peer.to(ctx.device, dtype)
        x, t, context = step_inputs(ctx.device, dtype)
        diff = check_same_function(unet, peer, x, t, context, dtype_name)
        with PeakMemory(ctx.device) as mem:
            timings = time_alternating({"mka": lambda: unet(x, t, context), "diffusers": lambda: peer(x, t, context)},
                                       ctx.device, reps=ctx.reps, warmup=1)
        floor = floor_seconds(ctx, flops, dtype_name)
        mka_t, peer_t = timings["mka"], timings["diffusers"]
        extra = {"flops": flops, "max_abs_diff_vs_peer": diff, "times_mka": mka_t.times, "times_peer": peer_t.times}
        rows.append(Row("unet", "U-Net step, mka", mka_t.best, "s", dev, dtype_name, floor,
                        note=f"{flops / 1e9:.1f} GFLOP/step, best of {ctx.reps}, median {mka_t.median:.3f} s", extra=extra))
        rows.append(Row("unet", "U-Net step, diffusers peer", peer_t.best, "s", dev, dtype_name, floor,
                        note=f"max |diff| vs mka {diff:.2g}; median {peer_t.median:.3f} s"))
        rows.append(Row("unet", "mka / diffusers", mka_t.best / peer_t.best, "x", dev, dtype_name,
                        note=f"medians: {mka_t.median / peer_t.median:.3f}x; target <= 1.0"))
        rows.append(Row("unet", "peak memory during timing", mem.gib or 0.0, "GiB", dev, dtype_name, note=mem.kind))
    if ctx.device.type == "cuda":
        rows += compiled_rows(ctx, unet, flops)
    unet.to("cpu", torch.float32)
    return rows


def compiled_rows(ctx: Context, unet, flops: float) -> list[Row]:
    """GPU only: the U-Net under torch.compile (CUDA graphs via mode="reduce-overhead")."""
    from benchmarks.common import time_call
    from mka_core.models.compiled import compile_unet

    rows = []
    for dtype_name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        unet.to(ctx.device, dtype)
        x, t, context = step_inputs(ctx.device, dtype)
        compiled = compile_unet(unet)
        import time

        start = time.perf_counter()
        with torch.inference_mode():
            compiled(x, t, context)
            compiled(x, t, context)
        warm = time.perf_counter() - start
        timing = time_call(lambda: compiled(x, t, context), ctx.device, reps=max(ctx.reps, 10), warmup=2)
        rows.append(Row("unet", "U-Net step, mka torch.compile", timing.best, "s", ctx.device_name, dtype_name,
                        floor_seconds(ctx, flops, dtype_name), note=f"compile + warm-up {warm:.0f} s (cached after)"))
    return rows


def main() -> None:
    standalone("U-Net step", run, __doc__.splitlines()[0], needs_peaks=True)


if __name__ == "__main__":
    main()
