"""Few-step generation in one run: a consistency student at 1, 2 and 4 steps beside its 25-step
DPM-Solver++ teacher and DDIM 100, the default model's 5 s clip with Python start-up, and on
CUDA batch throughput, torch.compile, CUDA graphs and bfloat16.

    python -m benchmarks.few_step                     # the full run on this machine's device
    python -m benchmarks.few_step --device cpu --quick  # smoke run, GPU section as a CPU dry run

Sections (every row names its device; on CUDA the GPU's name):

1. **base preset, 10 s clip, end to end** (``base`` VAE and U-Net, a random 1024-wide CLAP-text
   stand-in conditioner as in ``bench_e2e``): the teacher with ``dpm++2m`` 25 steps and ``ddim``
   100 steps (guided: two samples per U-Net call), and the student with the ``consistency``
   sampler at 1, 2 and 4 steps (guidance folded in: one sample per call). The student is built
   the way ``mka train distill`` builds its student before training (``make_student``: the
   teacher's U-Net plus the zero-initialised guidance input) on the random base weights:
   **an untrained student, for timing only** - the rows say so. Speed does not depend on the
   weights' values. Each row splits sampling, decode and vocoder; the student rows are also
   timed with the light decoder (``default`` size, random weights) and cheaper vocoders, the
   options ``benchmarks/decode.py`` measures with quality.
2. **default model, 5 s clip, start-up included**: wall time of a subprocess running
   ``python -m mka_core.cli.main generate PROMPT --duration 5`` (the embedded model with its
   recorded sampler and steps), beside a subprocess that only imports torch (the floor of any
   Python start-up here).
3. **GPU** (on CUDA; with ``--quick`` or ``--gpu-dry-run`` on another device, the same code at
   tiny sizes, labelled as a dry run): student 2-step clips/s at batches 1, 2, 4, ..., 64 in
   bfloat16 and float32, eager vs ``torch.compile`` (inductor) vs ``torch.compile`` with CUDA
   graphs (``mode="reduce-overhead"``, what :meth:`Pipeline.compile` uses on CUDA), and the
   per-clip time at batch 1 against the issue's 20 ms target.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.bench_e2e import PROMPT, StageTimer, VOCODER_PRESETS
from benchmarks.common import Context, PeakMemory, Row, context_from_args, parser, print_table, sync, write_json

UNTRAINED = "untrained student (random weights): timing only"


# -- building ---------------------------------------------------------------------------------------
def teacher_and_student(preset: str, device: torch.device, vocoder: str = "bigvgan"):
    """(teacher, student) pipelines of ``preset`` sharing conditioner, VAE and vocoder; the student
    also holds a random ``default``-size light decoder (unused unless asked for)."""
    from mka_core.models.light_decoder import LightDecoder
    from mka_core.pipeline import GenerationDefaults, Pipeline, PipelineConfig
    from mka_core.plugins import manager
    from mka_core.presets import build_core_models, build_vocoder
    from training.targets.distill import make_student

    vocoder = vocoder if preset == "base" else "griffin-lim"  # the tiny preset's vocoder
    conditioner = manager.get("conditioner", "clap-text").build_random("tiny", 0, dim=1024)
    torch.manual_seed(0)
    vae, unet = build_core_models(preset, conditioner.space.dim)
    voc = build_vocoder(vocoder, VOCODER_PRESETS[vocoder] if preset == "base" else "tiny")
    voc.eval().requires_grad_(False)
    config = PipelineConfig(conditioner="clap-text", space=conditioner.space, vocoder=vocoder, origin=f"random:{preset}")
    teacher = Pipeline(config, conditioner, vae, unet, voc, device=device)
    student_unet = make_student(unet, 256)
    defaults = GenerationDefaults(sampler="consistency", steps=2, guidance=3.0)
    student_config = config.model_copy(update={"defaults": defaults, "origin": f"untrained-student:{preset}"})
    light = LightDecoder.for_vae(vae, "default")
    student = Pipeline(student_config, conditioner, vae, student_unet, voc, device=device, light_decoder=light)
    return teacher, student


def vocoders_for(preset: str) -> dict[str, torch.nn.Module]:
    from mka_core.presets import build_vocoder

    torch.manual_seed(0)
    if preset != "base":
        return {"griffin-lim": build_vocoder("griffin-lim", "tiny")}
    gl16 = build_vocoder("griffin-lim")
    gl16 = type(gl16)(gl16.config.model_copy(update={"iterations": 16}))
    return {"bigvgan": None, "hifigan": build_vocoder("hifigan", "v1"), "griffin-lim 16 it.": gl16}


def generate(pipe, sampler: str, steps: int, seconds: float, batch: int = 1):
    return pipe([PROMPT] * batch, sampler=sampler, steps=steps, duration=seconds, seed=0, guidance=3.0)


# -- section 1: the base preset's 10 s clip ---------------------------------------------------------
def end_to_end(ctx: Context) -> list[Row]:
    preset, seconds = ("tiny", 1.0) if ctx.quick else ("base", 10.0)
    teacher, student = teacher_and_student(preset, ctx.device)
    base_vocoder = teacher.vocoder
    vocoders = {name: (v if v is not None else base_vocoder) for name, v in vocoders_for(preset).items()}
    first = next(iter(vocoders))
    cases = [(teacher, "teacher", "dpm++2m", 25, "vae", first), (teacher, "teacher", "ddim", 100, "vae", first)]
    for steps in (1, 2, 4):
        cases.append((student, UNTRAINED, "consistency", steps, "vae", first))
    for name in vocoders:
        cases.append((student, UNTRAINED, "consistency", 2, "light", name))
    if ctx.quick:
        cases = [c for c in cases if not (c[2] == "ddim")]  # the smoke run skips the 100-step case
    rows = []
    for pipe in (teacher, student):
        generate(pipe, pipe.config.defaults.sampler if pipe is student else "dpm++2m", 1, seconds)  # warm-up
    for pipe, who, sampler, steps, decoder, vocoder in cases:
        pipe.vocoder = vocoders[vocoder].eval().requires_grad_(False).to(ctx.device)
        pipe.use_decoder(decoder)
        timer = StageTimer(pipe)
        with PeakMemory(ctx.device) as mem:
            sync(ctx.device)
            start = time.perf_counter()
            result = generate(pipe, sampler, steps, seconds)
            sync(ctx.device)
            total = time.perf_counter() - start
        timer.remove()
        assert result.waveforms.shape == (1, int(seconds * 16000))
        s = timer.seconds
        decoder_name = "VAE decoder" if decoder == "vae" else "light decoder"
        case = f"{preset} {seconds:g} s, {sampler} {steps} steps, {decoder_name}, {vocoder}"
        note = (f"{who}; sampling {s.get('sample', 0):.2f} s, decode {s.get('decode_latents', 0):.2f} s, "
                f"vocoder {s.get('vocode', 0):.2f} s; peak {mem.gib or 0:.2f} GiB")
        rows.append(Row("few-step", case, total, "s", ctx.device_name, "float32", note=note,
                        extra={"stages_s": dict(s), "sampler": sampler, "steps": steps, "decoder": decoder,
                               "vocoder": vocoder, "untrained_student": pipe is student}))
    teacher.vocoder = student.vocoder = base_vocoder
    return rows


# -- section 2: the default model's 5 s clip, start-up included --------------------------------------
def startup(ctx: Context, student: Path | None = None) -> list[Row]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        generate = [sys.executable, "-m", "mka_core.cli.main", "generate", PROMPT, "--duration", "5", "--seed", "0",
                    "--device", str(ctx.device), "-o", str(Path(tmp) / "clip.wav")]
        runs = [("python -c 'import torch' (start-up floor)", [sys.executable, "-c", "import torch"]),
                ("mka generate, default model, 5 s clip, start-up included", generate)]
        if student is not None:
            # A student of the default model (mka train distill --teacher default): its recorded
            # sampler and step count, the same prompt and length.
            runs.append((f"mka generate --model {student.name} (distilled default model), 5 s clip, start-up included",
                         [*generate, "--model", str(student)]))
        for label, command in runs:
            best = None
            for _ in range(1 if ctx.quick else 3):
                start = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True, env=env)
                wall = time.perf_counter() - start
                if done.returncode != 0:
                    raise SystemExit(f"few_step: `{' '.join(command)}` failed:\n{done.stderr[-2000:]}")
                best = wall if best is None else min(best, wall)
            rows.append(Row("startup", label, best, "s", ctx.device_name, "float32",
                            note="wall time of a fresh process, best of the runs"))
    return rows


# -- section 3: GPU throughput, torch.compile, CUDA graphs, bfloat16 ---------------------------------
def gpu(ctx: Context, compile_: bool = True) -> list[Row]:
    dry = ctx.device.type != "cuda"
    preset, seconds = ("tiny", 1.0) if dry else ("base", 10.0)
    batches = [1, 2] if dry else ([1, 4, 16, 64] if ctx.quick else [1, 2, 4, 8, 16, 32, 64])
    label = ctx.device_name + (" (dry run: tiny sizes on a non-CUDA device)" if dry else "")
    _, student = teacher_and_student(preset, ctx.device, vocoder="bigvgan" if not dry else "griffin-lim")
    modes = [("eager", None)]
    if compile_:
        modes += [("torch.compile", "default"), ("torch.compile + CUDA graphs", "reduce-overhead")]
        # Every batch size is its own compiled graph (static shapes): fewer sizes for the compiled
        # rows, and room for all of them in dynamo's per-function cache (default 8 entries).
        import torch._dynamo

        for knob in ("cache_size_limit", "recompile_limit"):
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, max(64, getattr(torch._dynamo.config, knob)))
    compiled_batches = [b for b in batches if b in (1, 8, 64)] or batches[:1]
    rows = []
    for dtype in ("bfloat16", "float32"):
        for mode_label, mode in modes:
            if dry and mode is not None and dtype != "float32":
                continue  # a dry run compiles in one dtype: CPU compiles take minutes each
            student.to(ctx.device, dtype)
            if mode is not None:
                student.compile(mode=None if mode == "default" else mode)
            # A dry run compiles once per mode (batch 1, light decoder): the path, not the sweep.
            compiled_dry = dry and mode is not None
            sizes = batches if mode is None else (batches[:1] if dry else compiled_batches)
            for decoder in (("light",) if compiled_dry else ("vae", "light")):
                student.use_decoder(decoder)
                for batch in sizes:
                    student.decode_batch_size = batch
                    start = time.perf_counter()
                    generate(student, "consistency", 2, seconds, batch)  # warm-up (and the compile, once per shape)
                    sync(ctx.device)
                    warm_s = time.perf_counter() - start
                    reps = 1 if dry else 3
                    best = float("inf")
                    for _ in range(reps):
                        sync(ctx.device)
                        start = time.perf_counter()
                        generate(student, "consistency", 2, seconds, batch)
                        sync(ctx.device)
                        best = min(best, time.perf_counter() - start)
                    per_clip_ms = best / batch * 1e3
                    note = f"{UNTRAINED}; {per_clip_ms:.1f} ms per clip; first call {warm_s:.1f} s"
                    if batch == 1 and not dry and preset == "base":
                        note += f"; target <= 20 ms: {'met' if per_clip_ms <= 20 else 'NOT met'}"
                    rows.append(Row("gpu", f"{preset} {seconds:g} s, consistency 2 steps, batch {batch}, {mode_label}, "
                                    f"{'VAE' if decoder == 'vae' else 'light'} decoder", batch / best, "clips/s", label,
                                    str(student.dtype).removeprefix("torch."), note=note,
                                    extra={"batch": batch, "mode": mode_label, "decoder": decoder, "seconds": best,
                                           "requested_dtype": dtype, "gpu": label}))
    return rows


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=("e2e", "startup", "gpu"), help="run only these sections")
    p.add_argument("--gpu-dry-run", action="store_true", help="run the GPU section on a non-CUDA device (tiny sizes)")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile / CUDA-graph rows")
    p.add_argument("--student", type=Path, default=None,
                   help="a distilled default model (mka train distill --teacher default) to time in the start-up section")
    args = p.parse_args()
    ctx = context_from_args(args)
    chosen = args.only or ["e2e", "startup", "gpu"]
    run_gpu = ctx.device.type == "cuda" or args.gpu_dry_run or ctx.quick
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"few-step benchmarks on {ctx.device_name} ({'quick' if ctx.quick else 'full'}); load average {load:.2f}")
    rows: list[Row] = []
    if "e2e" in chosen:
        section = end_to_end(ctx)
        print_table(f"End to end — {ctx.device_name}", section)
        rows += section
    if "startup" in chosen:
        section = startup(ctx, args.student)
        print_table(f"Default model, start-up included — {ctx.device_name}", section)
        rows += section
    if "gpu" in chosen and run_gpu:
        section = gpu(ctx, compile_=not args.no_compile)
        print_table(f"GPU batch throughput, compile, CUDA graphs, bfloat16 — {section[0].device if section else ''}", section)
        rows += section
    elif "gpu" in chosen:
        print("GPU section: no CUDA device here (pass --gpu-dry-run to exercise its code on this device).")
    if args.json:
        write_json(args.json, ctx, rows, load_average_at_start=load)


if __name__ == "__main__":
    main()
