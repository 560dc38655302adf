"""VAE decode and vocoder time for a 10 s clip (BigVGAN, HiFi-GAN, Griffin-Lim), against floors.

Geometry of a 10 s request in mka: 640 mel frames (10.24 s, cropped to 10 s afterwards), latent
4x10x80. The VAE runs in the timed dtype; vocoders always run float32 (as in the pipeline).
Long clips: the VAE decode of a 60 s latent whole and in overlapping time slices (the
pipeline's default above 256 columns), with peak memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.bench_peak import floor_seconds
from benchmarks.common import Context, PeakMemory, Row, standalone, time_call

FRAMES_10S = 640


def count_flops(fn) -> float:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def base_vae():
    from mka_core.models.vae import AutoencoderKL, VAEConfig

    torch.manual_seed(0)
    return AutoencoderKL(VAEConfig.preset("base")).eval().requires_grad_(False)


def vocoder(name: str):
    from mka_core.presets import build_vocoder

    torch.manual_seed(0)
    preset = {"bigvgan": "base", "hifigan": "v1", "griffin-lim": None}[name]
    return build_vocoder(name, preset).eval().requires_grad_(False)


def latent(frames: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 4, 10, frames // 8, generator=torch.Generator().manual_seed(3))


def mel(frames: int, batch: int = 1) -> torch.Tensor:
    # Values in the front end's range (log10 magnitude, about -5 .. 1).
    return torch.rand(batch, 80, frames, generator=torch.Generator().manual_seed(4)) * 4 - 4.5


def run(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    dev = ctx.device_name
    vae = base_vae()
    z = latent(FRAMES_10S)
    vae_flops = count_flops(lambda: vae.decode(z))
    dtypes = [("float32", torch.float32), ("bfloat16", torch.bfloat16)]
    for dtype_name, dtype in dtypes:
        from mka_core.models.precision import compute_dtype

        run_dtype = compute_dtype(ctx.device, dtype)
        vae.to(ctx.device, run_dtype)
        zd = z.to(ctx.device, run_dtype)
        with PeakMemory(ctx.device) as mem:
            timing = time_call(lambda: vae.decode(zd), ctx.device, reps=ctx.reps)
        note = f"{vae_flops / 1e9:.0f} GFLOP; peak {fmt_mem(mem)}"
        if run_dtype != dtype:
            note += "; runs float32 (no bf16 instructions)"
        rows.append(Row("decode", "VAE decode 10 s", timing.best, "s", dev, dtype_name,
                        floor_seconds(ctx, vae_flops, dtype_name), note=note))
    vae.to(ctx.device, torch.float32)

    for name in ("bigvgan", "hifigan", "griffin-lim"):
        voc = vocoder(name)
        m = mel(FRAMES_10S)
        flops = count_flops(lambda: voc(m))
        voc.to(ctx.device)
        md = m.to(ctx.device)
        reps = 1 if (ctx.quick and ctx.device.type == "cpu" and name == "bigvgan") else ctx.reps
        with PeakMemory(ctx.device) as mem:
            timing = time_call(lambda: voc(md), ctx.device, reps=reps)
        rows.append(Row("decode", f"vocoder {name} 10 s", timing.best, "s", dev, "float32",
                        floor_seconds(ctx, flops, "float32"),
                        note=f"{flops / 1e9:.0f} GFLOP; {10.24 / timing.best:.2f}x real time; peak {fmt_mem(mem)}"))
        del voc

    if not ctx.quick:
        rows += long_clip_rows(ctx, vae)
    return rows


def long_clip_rows(ctx: Context, vae) -> list[Row]:
    """60 s latent: whole-clip decode vs the pipeline's overlapping time slices."""
    from mka_core.pipeline import Pipeline

    z = latent(60 * 64).to(ctx.device)  # 3840 frames = 61.44 s, 480 latent columns
    rows = []
    for label, tile in (("whole", None), ("slices", Pipeline.decode_tile_columns)):
        overlap = Pipeline.decode_tile_overlap if tile else 8
        with PeakMemory(ctx.device) as mem:
            timing = time_call(lambda: vae.decode(z, tile=tile, overlap=overlap), ctx.device, reps=1, warmup=0)
        note = f"peak {fmt_mem(mem)}" + (f"; {tile}-column slices, {overlap} overlap" if tile else "")
        rows.append(Row("decode", f"VAE decode 61 s, {label}", timing.best, "s", ctx.device_name, "float32", note=note))
    return rows


def fmt_mem(mem: PeakMemory) -> str:
    return "-" if mem.gib is None else f"{mem.gib:.2f} GiB ({mem.kind})"


def main() -> None:
    standalone("VAE decode and vocoders", run, __doc__.splitlines()[0], needs_peaks=True)


if __name__ == "__main__":
    main()
