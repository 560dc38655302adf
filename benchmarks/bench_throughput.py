"""Throughput in clips/s for batches of 1 to 16 (10 s clips, default sampler, whole pipeline).

A batch of B prompts is one request: the sampler runs the U-Net on 2B samples per step
(guidance batched), then the VAE and the vocoder run B samples per call (the pipeline's
``decode_batch_size`` is set to B here; its default of 1 keeps every output bit-identical to a
single run). On a CPU a 25-step sweep over batches 1-16 takes over 20 minutes of sampling
for figures that do not depend on the step count's share of the work much, so the CPU runs 5
steps (``--quick``: batches 1, 2, 4 only); the steps used are in every row.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.bench_e2e import base_pipeline, generate_once, stage_flops
from benchmarks.bench_peak import floor_seconds
from benchmarks.common import Context, PeakMemory, Row, standalone, sync


def plan(ctx: Context) -> tuple[list[int], int]:
    """(batch sizes, sampler steps)."""
    if ctx.device.type == "cpu":
        return ([1, 2, 4], 5) if ctx.quick else ([1, 2, 4, 8, 16], 5)
    return ([1, 4, 16], 25) if ctx.quick else ([1, 2, 4, 8, 16], 25)


def run(ctx: Context, dtype: str | None = None) -> list[Row]:
    batches, steps = plan(ctx)
    dtype = dtype or ("bfloat16" if ctx.device.type == "cuda" else "float32")
    pipe = base_pipeline(torch.device("cpu"))
    width = pipe.latent_shape(pipe.frames_for(10.0)[0])[2]
    flops = stage_flops(pipe, width)
    pipe.to(ctx.device, dtype)
    generate_once(pipe, "dpm++2m", 1)  # warm-up
    rows = []
    for batch in batches:
        pipe.decode_batch_size = batch
        with PeakMemory(ctx.device) as mem:
            sync(ctx.device)
            start = time.perf_counter()
            result = generate_once(pipe, "dpm++2m", steps, batch=batch)
            sync(ctx.device)
            seconds = time.perf_counter() - start
        assert result.waveforms.shape[0] == batch
        per_clip = batch * (steps * flops["unet_step"] + flops["decode"])
        floor = floor_seconds(ctx, per_clip, dtype) + floor_seconds(ctx, batch * flops["vocoder"], "float32")
        rows.append(Row("throughput", f"batch {batch}, dpm++2m {steps} steps", batch / seconds, "clips/s",
                        ctx.device_name, dtype, batch / floor,
                        note=f"{seconds:.1f} s per batch; peak {mem.gib or 0:.2f} GiB ({mem.kind})",
                        extra={"seconds": seconds, "batch": batch, "steps": steps, "peak_gib": mem.gib}))
    return rows


def main() -> None:
    standalone("Throughput", run, __doc__.splitlines()[0], needs_peaks=True)


if __name__ == "__main__":
    main()
