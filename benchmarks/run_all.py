"""Run every mka benchmark in one process, print the tables and write one JSON file.

    python -m benchmarks.run_all --quick          # a smoke run (minutes on a CPU)
    python -m benchmarks.run_all                  # the full set (about 25 minutes on 2 CPU cores)
    python -m benchmarks.run_all --only unet e2e  # some sections

The device is CUDA when available, else the CPU (``--device`` overrides); every row names it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_decode, bench_e2e, bench_peak, bench_throughput, bench_train, bench_unet
from benchmarks.common import (ROOT, Context, Row, context_from_args, cpu_has_native_bf16, parser, print_table,
                               write_json)
from mka_core.pipeline import GenerationDefaults

SECTIONS = {
    "peak": ("Matmul peak", bench_peak.run),
    "unet": ("U-Net step vs diffusers peer", bench_unet.run),
    "decode": ("VAE decode and vocoders", bench_decode.run),
    "e2e": ("End to end, one 10 s clip", bench_e2e.run),
    "throughput": ("Throughput", bench_throughput.run),
    "train": ("Training throughput", bench_train.run),
}


def targets(ctx: Context, rows: list[Row]) -> list[Row]:
    """The issue's targets, each as a row: the figure, the limit, met or not."""
    out = []

    def find(bench: str, case: str, dtype: str) -> Row | None:
        return next((r for r in rows if r.bench == bench and r.case == case and r.dtype == dtype), None)

    for dtype in ("float32", "bfloat16"):
        ratio = find("unet", "mka / diffusers", dtype)
        if ratio:
            out.append(Row("targets", "U-Net step mka / diffusers <= 1.0", ratio.value, "x", ctx.device_name, dtype,
                           note="met" if ratio.value <= 1.0 else "NOT met"))
    # A bfloat16 request on a CPU without bf16 instructions runs float32 (see bench_unet).
    step = find("unet", "U-Net step, mka as run for a bf16 request", "bfloat16") or find("unet", "U-Net step, mka", "bfloat16")
    if step and step.ratio is not None:
        out.append(Row("targets", "bf16 U-Net step <= 1.3x floor", step.ratio, "x", ctx.device_name, "bfloat16",
                       note=("met" if step.ratio <= 1.3 else "NOT met") + f" ({step.case})"))
    # The default sampler with the released model's vocoder; on a CPU without bf16 instructions
    # a bfloat16 request runs float32, so the float32 row is the figure.
    defaults = GenerationDefaults()
    case = bench_e2e.case_name(defaults.sampler, defaults.steps, "bigvgan")
    clip = find("e2e", case, "bfloat16")
    ran = "bfloat16"
    if clip is None and not cpu_has_native_bf16():
        clip, ran = find("e2e", case, "float32"), "float32 (no bf16 instructions: a bf16 request runs float32)"
    if clip and ctx.device.type == "cpu":
        out.append(Row("targets", "10 s clip, default sampler, bf16, CPU <= 25 s", clip.value, "s", ctx.device_name,
                       "bfloat16", clip.floor, note=("met" if clip.value <= 25 else "NOT met") + f"; ran {ran}"))
    return out


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections (peak always runs)")
    p.add_argument("--skip", nargs="+", choices=list(SECTIONS), default=[], help="sections to leave out")
    args = p.parse_args()
    ctx = context_from_args(args)
    chosen = [s for s in (args.only or list(SECTIONS)) if s not in args.skip]
    if "peak" not in chosen:
        chosen.insert(0, "peak")  # every floor needs the peaks
    print(f"mka benchmarks on {ctx.device_name} ({'quick' if ctx.quick else 'full'}, {ctx.reps} reps)")
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    for name in chosen:
        title, run = SECTIONS[name]
        start = time.perf_counter()
        section = run(ctx)
        seconds[name] = time.perf_counter() - start
        rows += section
        print_table(f"{title} — {ctx.device_name}", section)
    goal_rows = targets(ctx, rows)
    if goal_rows:
        print_table("Targets", goal_rows)
    path = args.json or ROOT / "benchmarks" / "results" / f"{ctx.device.type}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_json(path, ctx, rows + goal_rows, section_seconds=seconds)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
