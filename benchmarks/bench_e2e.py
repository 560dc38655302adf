"""End-to-end time of one 10 s clip: DDIM 100 steps vs DPM-Solver++(2M) at 25 (the default) and 10.

The ``base`` pipeline (VAE, U-Net, BigVGAN at the paper's sizes, random weights: speed does not
depend on the values) driven by a small random CLAP-text stand-in of the released model's
1024-wide, 77-token space (a real BERT-base encoder adds a one-off ~0.1-0.3 s on a CPU). Each
row splits the time into sampling (conditioner included), VAE decode and vocoder, and is
compared with its floor: FLOPs of steps x U-Net + decode + vocoder over the matmul peak.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.bench_peak import floor_seconds
from benchmarks.common import Context, PeakMemory, Row, standalone, sync

PROMPT = "a dog barks while rain falls on a tin roof"
CASES = [("ddim", 100), ("dpm++2m", 25), ("dpm++2m", 10)]
QUICK_CASES = [("dpm++2m", 10)]


def base_pipeline(device: torch.device, dtype: str = "float32", vocoder: str = "bigvgan"):
    """A random ``base`` pipeline (see the module docstring)."""
    from mka_core.pipeline import Pipeline, PipelineConfig
    from mka_core.plugins import manager
    from mka_core.presets import build_core_models, build_vocoder

    conditioner = manager.get("conditioner", "clap-text").build_random("tiny", 0, dim=1024)
    torch.manual_seed(0)
    vae, unet = build_core_models("base", conditioner.space.dim)
    voc = build_vocoder(vocoder, {"bigvgan": "base", "hifigan": "v1", "griffin-lim": None}[vocoder])
    config = PipelineConfig(conditioner="clap-text", space=conditioner.space, vocoder=vocoder, origin="random:base")
    return Pipeline(config, conditioner, vae, unet, voc, device=device, dtype=dtype)


class StageTimer:
    """Wraps a pipeline's sample / decode_latents / vocode to time each stage of a run."""

    STAGES = ("sample", "decode_latents", "vocode")

    def __init__(self, pipe) -> None:
        self.pipe = pipe
        self.seconds: dict[str, float] = {}
        for name in self.STAGES:
            setattr(pipe, name, self._wrap(name, getattr(pipe, name)))

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            sync(self.pipe.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(self.pipe.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            return out

        return timed

    def reset(self) -> None:
        self.seconds = {}

    def remove(self) -> None:
        for name in self.STAGES:
            self.pipe.__dict__.pop(name, None)


def stage_flops(pipe, width: int, batch: int = 1) -> dict[str, float]:
    """FLOPs of one guided U-Net step, the VAE decode and the vocoder at a latent width."""
    from benchmarks.bench_decode import count_flops
    from benchmarks.bench_unet import unet_flops

    flops = {"unet_step": unet_flops(pipe.unet, 2 * batch, width)}
    z = torch.randn(batch, 4, 10, width)
    flops["decode"] = count_flops(lambda: pipe.vae.decode(z))
    flops["vocoder"] = count_flops(lambda: pipe.vocoder(torch.randn(batch, 80, width * 8) - 3))
    return flops


def generate_once(pipe, sampler: str, steps: int, batch: int = 1, seed: int = 0):
    return pipe([PROMPT] * batch, sampler=sampler, steps=steps, duration=10.0, seed=seed, guidance=3.0)


def run(ctx: Context) -> list[Row]:
    pipe = base_pipeline(torch.device("cpu"))
    width = pipe.latent_shape(pipe.frames_for(10.0)[0])[2]
    flops = stage_flops(pipe, width)
    rows: list[Row] = []
    cases = QUICK_CASES if ctx.quick else CASES
    for dtype_name in ("float32", "bfloat16"):
        pipe.to(ctx.device, dtype_name)
        timer = StageTimer(pipe)
        generate_once(pipe, "dpm++2m", 1)  # warm-up: allocator, oneDNN primitives, null condition
        for sampler, steps in cases:
            timer.reset()
            with PeakMemory(ctx.device) as mem:
                sync(ctx.device)
                start = time.perf_counter()
                result = generate_once(pipe, sampler, steps)
                sync(ctx.device)
                total = time.perf_counter() - start
            assert result.waveforms.shape == (1, 160000)
            s = timer.seconds
            total_flops = steps * flops["unet_step"] + flops["decode"] + flops["vocoder"]
            # The U-Net and VAE run in the timed dtype, the vocoder in float32.
            floor = (floor_seconds(ctx, steps * flops["unet_step"] + flops["decode"], dtype_name)
                     + floor_seconds(ctx, flops["vocoder"], "float32"))
            note = (f"sampling {s.get('sample', 0):.1f} s ({s.get('sample', 0) / steps:.2f} s/step), decode "
                    f"{s.get('decode_latents', 0):.1f} s, vocoder {s.get('vocode', 0):.1f} s; peak "
                    f"{mem.gib or 0:.2f} GiB")
            if pipe.dtype != pipe.requested_dtype:
                note += "; runs float32 (no bf16 instructions)"
            rows.append(Row("e2e", f"10 s clip, {sampler} {steps} steps", total, "s", ctx.device_name, dtype_name,
                            floor, note=note,
                            extra={"stages_s": dict(s), "flops": total_flops, "peak_gib": mem.gib,
                                   "effective_dtype": str(pipe.dtype)}))
        timer.remove()
    return rows


def main() -> None:
    standalone("End to end, one 10 s clip", run, __doc__.splitlines()[0], needs_peaks=True)


if __name__ == "__main__":
    main()
