"""End-to-end time of one 10 s clip: DDIM 100 steps vs DPM-Solver++(2M) at 25 (the default), 15 and 10.

The ``base`` pipeline (VAE and U-Net at the paper's sizes, random weights: speed does not
depend on the values) driven by a small random CLAP-text stand-in of the released model's
1024-wide, 77-token space (a real BERT-base encoder adds a one-off ~0.1-0.3 s on a CPU), with
the released model's BigVGAN and, for the shorter runs, the paper's HiFi-GAN V1 as the
vocoder. Each row splits the time into sampling (conditioner included), VAE decode and
vocoder, and is compared with its floor: FLOPs of steps x U-Net + decode + vocoder over the
matmul peak.

A bfloat16 request on a CPU without bfloat16 instructions runs float32 (see
``mka_core.models.precision``), so there the bfloat16 rows would time the float32 runs again:
they are left out and the targets read the float32 rows, saying so.
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
#: (sampler, steps, vocoder) of each timed run.
CASES = [("ddim", 100, "bigvgan"), ("dpm++2m", 25, "bigvgan"), ("dpm++2m", 25, "hifigan"),
         ("dpm++2m", 15, "hifigan"), ("dpm++2m", 10, "bigvgan"), ("dpm++2m", 10, "hifigan")]
QUICK_CASES = [("dpm++2m", 10, "bigvgan")]
VOCODER_PRESETS = {"bigvgan": "base", "hifigan": "v1", "griffin-lim": None}


def base_pipeline(device: torch.device, dtype: str = "float32", vocoder: str = "bigvgan"):
    """A random ``base`` pipeline (see the module docstring)."""
    from mka_core.pipeline import Pipeline, PipelineConfig
    from mka_core.plugins import manager
    from mka_core.presets import build_core_models, build_vocoder

    conditioner = manager.get("conditioner", "clap-text").build_random("tiny", 0, dim=1024)
    torch.manual_seed(0)
    vae, unet = build_core_models("base", conditioner.space.dim)
    voc = build_vocoder(vocoder, VOCODER_PRESETS[vocoder])
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


def stage_flops(pipe, width: int, batch: int = 1, vocoder=None) -> dict[str, float]:
    """FLOPs of one guided U-Net step, the VAE decode and the vocoder at a latent width."""
    from benchmarks.bench_decode import count_flops
    from benchmarks.bench_unet import unet_flops

    flops = {"unet_step": unet_flops(pipe.unet, 2 * batch, width)}
    z = torch.randn(batch, 4, 10, width)
    flops["decode"] = count_flops(lambda: pipe.vae.decode(z))
    vocoder = vocoder if vocoder is not None else pipe.vocoder
    flops["vocoder"] = count_flops(lambda: vocoder(torch.randn(batch, 80, width * 8) - 3))
    return flops


def generate_once(pipe, sampler: str, steps: int, batch: int = 1, seed: int = 0):
    return pipe([PROMPT] * batch, sampler=sampler, steps=steps, duration=10.0, seed=seed, guidance=3.0)


def run(ctx: Context) -> list[Row]:
    from mka_core.devices import resolve_dtype
    from mka_core.models.precision import compute_dtype
    from mka_core.presets import build_vocoder

    cases = QUICK_CASES if ctx.quick else CASES
    pipe = base_pipeline(torch.device("cpu"))
    vocoders = {"bigvgan": pipe.vocoder}
    for name in {vocoder for _, _, vocoder in cases} - set(vocoders):
        vocoders[name] = build_vocoder(name, VOCODER_PRESETS[name]).eval()
    width = pipe.latent_shape(pipe.frames_for(10.0)[0])[2]
    flops = {name: stage_flops(pipe, width, vocoder=voc) for name, voc in vocoders.items()}
    rows: list[Row] = []
    for dtype_name in ("float32", "bfloat16"):
        if dtype_name != "float32" and compute_dtype(ctx.device, resolve_dtype(dtype_name)) == torch.float32:
            continue  # the same float32 run again (see the module docstring)
        warmed: set[str] = set()
        for sampler, steps, vocoder in cases:
            pipe.vocoder = vocoders[vocoder]
            pipe.config = pipe.config.model_copy(update={"vocoder": vocoder})
            pipe.to(ctx.device, dtype_name)
            if vocoder not in warmed:  # allocator, oneDNN primitives, null condition: once per vocoder
                generate_once(pipe, "dpm++2m", 1)
                warmed.add(vocoder)
            timer = StageTimer(pipe)
            with PeakMemory(ctx.device) as mem:
                sync(ctx.device)
                start = time.perf_counter()
                result = generate_once(pipe, sampler, steps)
                sync(ctx.device)
                total = time.perf_counter() - start
            timer.remove()
            assert result.waveforms.shape == (1, 160000)
            s = timer.seconds
            f = flops[vocoder]
            total_flops = steps * f["unet_step"] + f["decode"] + f["vocoder"]
            # The U-Net and VAE run in the timed dtype, the vocoder in float32.
            floor = (floor_seconds(ctx, steps * f["unet_step"] + f["decode"], dtype_name)
                     + floor_seconds(ctx, f["vocoder"], "float32"))
            note = (f"sampling {s.get('sample', 0):.1f} s ({s.get('sample', 0) / steps:.2f} s/step), decode "
                    f"{s.get('decode_latents', 0):.1f} s, vocoder {s.get('vocode', 0):.1f} s; peak "
                    f"{mem.gib or 0:.2f} GiB")
            rows.append(Row("e2e", case_name(sampler, steps, vocoder), total, "s", ctx.device_name, dtype_name,
                            floor, note=note,
                            extra={"stages_s": dict(s), "flops": total_flops, "peak_gib": mem.gib,
                                   "sampler": sampler, "steps": steps, "vocoder": vocoder,
                                   "effective_dtype": str(pipe.dtype)}))
    return rows


def case_name(sampler: str, steps: int, vocoder: str) -> str:
    return f"10 s clip, {sampler} {steps} steps, {vocoder}"


def main() -> None:
    standalone("End to end, one 10 s clip", run, __doc__.splitlines()[0], needs_peaks=True)


if __name__ == "__main__":
    main()
