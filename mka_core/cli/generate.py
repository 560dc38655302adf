"""`mka generate`: inputs -> audio files, each with a JSON sidecar that replays it bit for bit.

The command reads straight down: gather the request (flags, or a sidecar with ``--replay``),
check what can be checked before loading anything, load the model, run the one generation
flow (:func:`mka_core.generate.generate`, shared with the Python API and the web server),
optionally rank candidates, then write each output atomically with its sidecar. Bad input
stops the run before any file is written; an interruption removes anything half-written.
See ``docs/generate.md``.
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mka_core.cli.command import Command
from mka_core.cli.options import parse_key_values
from mka_core.errors import InputError

#: Flags that define the generation itself; --replay takes them from the sidecar instead.
REQUEST_FLAGS = ("inputs", "cond", "prompts", "task", "task_option", "init", "strength", "mask", "duration",
                 "steps", "sampler", "guidance", "seed", "n", "rank_with")


@dataclass
class Plan:
    """What to generate, whether it came from flags or from a sidecar."""

    model: str | None
    inputs: list[str]
    cond: str | None = None
    task: str | None = None
    task_options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    mask: str | None = None
    duration: float | None = None
    steps: int | None = None
    sampler: str | None = None
    guidance: float | None = None
    seed: int | None = None
    n: int = 1
    device: str = "auto"
    dtype: str = "float32"
    #: --replay: write only this flattened-batch index.
    only_index: int | None = None
    recorded_model_hash: str | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="inputs for the model's own conditioner (prompts, or image/video paths); several make a batch")
    parser.add_argument("--model", "-m", default=None,
                        help="a model folder, or a model name in $MKA_HOME/models (default: the embedded default model)")
    parser.add_argument("--cond", nargs="+", metavar=("NAME", "INPUT"), default=None,
                        help="conditioner NAME (same embedding space as the model) followed by its inputs")
    parser.add_argument("--prompts", metavar="FILE", default=None, help="UTF-8 file with one input per line")
    parser.add_argument("--task", default=None,
                        help="t2a, sdedit, inpaint or a plugin's task (default: inpaint with --mask, sdedit with --init, "
                             "else the model's default)")
    parser.add_argument("--task-option", action="append", metavar="KEY=VALUE", default=None,
                        help="task option, repeatable (e.g. variant=blend for inpaint)")
    parser.add_argument("--init", metavar="AUDIO", default=None, help="init audio for sdedit and inpaint")
    parser.add_argument("--strength", type=float, default=None,
                        help="sdedit t0 in (0, 1] (default 0.5; 0.2-0.5 is the useful range)")
    parser.add_argument("--mask", default=None,
                        help="inpainting region to regenerate: '2.0-3.5,6-7' (seconds), '2-3.5@300-2000' (seconds@Hz), "
                             "a .npy or a .png file")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds (default: the init audio's length, else the model's default)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    from mka_core.diffusion.samplers import sampler_names

    parser.add_argument("--sampler", default=None,
                        help=f"an installed sampler: {', '.join(sampler_names())} (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the model's)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the first output; output i uses seed + i (default: random)")
    parser.add_argument("--n", type=int, default=None, help="candidates per input (default 1)")
    parser.add_argument("--rank-with", metavar="CLAP_CHECKPOINT", default=None,
                        help="with --n > 1, order each input's candidates by CLAP score (needs the clap-text plugin)")
    parser.add_argument("--out", "-o", default=None,
                        help="output file (one output) or folder (named <slug>_<seed>.wav); default: the current folder")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default float32)")
    parser.add_argument("--spectrogram", action="store_true", help="also write <file>.png, the output's mel spectrogram")
    parser.add_argument("--replay", metavar="SIDECAR", default=None,
                        help="re-make the output a sidecar (<file>.json) describes, bit for bit")


# -- gathering the request ------------------------------------------------------------------------------


def read_prompts(path: str) -> list[str]:
    """One input per line; an empty line or a file that is not UTF-8 is an error."""
    file = Path(path).expanduser()
    if file.is_dir():
        raise InputError(f"The prompt file {file} is a folder; give a text file with one input per line.")
    if not file.is_file():
        raise InputError(f"The prompt file {file} does not exist.")
    data = file.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # utf-8-sig counts offsets after a byte-order mark it removed.
        start = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data[:start].count(b"\n") + 1
        raise InputError(
            f"Line {line} of the prompt file {file} is not UTF-8 text (byte 0x{data[start]:02x} at offset {start}); "
            "save the file as UTF-8."
        ) from exc
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise InputError(f"Line {number} of the prompt file {file} is empty; remove it or write an input there.")
    if not lines:
        raise InputError(f"The prompt file {file} has no prompts.")
    return [line.strip() for line in lines]


def plan_from_args(args: argparse.Namespace) -> Plan:
    inputs = list(args.inputs or [])
    cond = None
    if args.cond:
        cond, inputs = args.cond[0], inputs + list(args.cond[1:])
    if args.prompts:
        inputs += read_prompts(args.prompts)
    options = parse_key_values(args.task_option, "task option")
    if args.strength is not None:
        if not 0 < args.strength <= 1:
            raise InputError(f"--strength must be in (0, 1] (t0 of sdedit; 0.2-0.5 is the useful range), got {args.strength:g}.")
        options["strength"] = args.strength
    task = args.task
    if task is None:
        task = "inpaint" if args.mask is not None else "sdedit" if (args.init or args.strength is not None) else None
    if args.init is not None and Path(args.init).expanduser().is_dir():
        raise InputError(f"The init audio {args.init} is a folder; give the path of an audio file inside it.")
    if args.init is not None and not Path(args.init).expanduser().is_file():
        raise InputError(f"The init audio {args.init} does not exist.")
    if args.duration is not None:
        from mka_core.geometry import check_duration

        check_duration(args.duration)
    n = 1 if args.n is None else args.n
    if n < 1:
        raise InputError(f"--n (candidates per input) must be at least 1, got {n}.")
    return Plan(model=args.model, inputs=inputs, cond=cond, task=task, task_options=options, init=args.init,
                mask=args.mask, duration=args.duration, steps=args.steps, sampler=args.sampler,
                guidance=args.guidance, seed=args.seed, n=n, device=args.device or "auto",
                dtype=args.dtype or "float32")


def plan_from_sidecar(args: argparse.Namespace) -> Plan:
    from mka_core.cli.sidecar import RecordedFile, check_recorded_file, read_sidecar

    given = [name for name in REQUEST_FLAGS if getattr(args, name, None) not in (None, [], False)]
    if given:
        flags = ", ".join("INPUT" if g == "inputs" else "--" + g.replace("_", "-") for g in given)
        raise InputError(f"--replay takes the whole request from the sidecar; drop {flags}.")
    sidecar = read_sidecar(args.replay)
    req = sidecar.request
    init = check_recorded_file(req.init, "init audio") if req.init is not None else None
    mask = check_recorded_file(req.mask, "mask file") if isinstance(req.mask, RecordedFile) else req.mask
    return Plan(model=args.model or sidecar.model.path, inputs=list(req.inputs), cond=req.cond, task=req.task,
                task_options=dict(req.task_options), init=init, mask=mask, duration=req.duration, steps=req.steps,
                sampler=req.sampler, guidance=req.guidance, seed=req.seed, n=req.n,
                device=args.device or req.device, dtype=args.dtype or req.dtype, only_index=sidecar.index,
                recorded_model_hash=sidecar.model.index_sha256)


def absolute_file_inputs(pipe, plan: Plan) -> list[str]:
    """File inputs (images, videos) as absolute paths, so a sidecar replays from any folder."""
    conditioner = pipe.conditioner_for(plan.cond)
    if getattr(conditioner, "input_kind", "text") == "text":
        return plan.inputs
    return [str(Path(item).expanduser().resolve()) if Path(item).expanduser().exists() else item for item in plan.inputs]


# -- running --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from mka_core.cli.output_files import plan_destination

    plan = plan_from_sidecar(args) if args.replay else plan_from_args(args)
    outputs = 1 if plan.only_index is not None else max(1, len(plan.inputs)) * plan.n
    out_file, out_dir = plan_destination(args.out, outputs)
    pipe, model_dir = load_pipeline(plan)
    if plan.task is not None:
        from mka_core.pipeline import get_task

        task = get_task(plan.task)
        if "strength" in plan.task_options and "strength" not in task.Options.model_fields:
            raise InputError(f"--strength applies to the sdedit task, not to '{plan.task}'.")
    plan.inputs = absolute_file_inputs(pipe, plan) if plan.inputs else plan.inputs
    scorer = None
    if getattr(args, "rank_with", None) and plan.n > 1:
        from mka_core.ranking import load_clap_scorer

        scorer = load_clap_scorer(args.rank_with, device=pipe.device)
    result = run_generation(pipe, plan)
    ranking = None
    if scorer is not None:
        from mka_core.ranking import rank_candidates

        prompts = [str(m.get("input") or "") for m in result.metadata]
        ranking = rank_candidates(result.waveforms, prompts, scorer)
    written = write_outputs(args, plan, pipe, model_dir, result, ranking, out_file, out_dir)
    print_summary(written, ranking)
    return 0


def load_pipeline(plan: Plan):
    from mka_core.model_lookup import index_hash, resolve_model
    from mka_core.pipeline import Pipeline

    model_dir = resolve_model(plan.model)
    if plan.recorded_model_hash and index_hash(model_dir) != plan.recorded_model_hash:
        print(f"mka: warning: the model at {model_dir} differs from the one the sidecar recorded; "
              "the replay may not match.", file=sys.stderr)
    return Pipeline.from_pretrained(model_dir, device=plan.device, dtype=plan.dtype), model_dir


def run_generation(pipe, plan: Plan):
    """The shared generation flow, with a progress bar on stderr while the sampler runs."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mka_core.generate import generate

    console = Console(stderr=True)
    with Progress(TextColumn("[bold]sampling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        bar = progress.add_task("sampling", total=None)

        def on_step(step: int, total: int) -> None:
            progress.update(bar, completed=step, total=total)

        return generate(
            pipe, plan.inputs or None, task=plan.task, cond=plan.cond, duration=plan.duration, steps=plan.steps,
            sampler=plan.sampler, guidance=plan.guidance, seed=plan.seed, n=plan.n, init_audio=plan.init,
            mask=plan.mask, task_options=plan.task_options or None, progress=on_step,
        )


# -- writing --------------------------------------------------------------------------------------------


def encode_audio(waveform, sample_rate: int, suffix: str) -> bytes:
    """16-bit PCM WAV (or FLAC) bytes; deterministic, so a replay gives the same file."""
    import numpy as np
    import soundfile as sf

    data = np.clip(waveform.float().cpu().numpy(), -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, data, sample_rate, format="FLAC" if suffix == ".flac" else "WAV", subtype="PCM_16")
    return buffer.getvalue()


def build_sidecar(plan: Plan, pipe, model_dir: Path, result, index: int, file: Path, ranking) -> Any:
    from mka_core import __version__
    from mka_core.cli.sidecar import RecordedModel, RecordedRequest, Sidecar, record_file
    from mka_core.devices import dtype_name
    from mka_core.model_lookup import index_hash

    meta = result.metadata[index]
    first = result.metadata[0]
    mask = plan.mask
    if mask is not None and Path(mask).expanduser().is_file():
        mask = record_file(mask)
    request = RecordedRequest(
        inputs=plan.inputs, cond=plan.cond, task=first["task"], task_options=first["task_options"],
        init=record_file(plan.init) if plan.init else None, mask=mask, duration=first["duration"],
        steps=first["steps"], sampler=first["sampler"], guidance=first["guidance"], seed=first["seed"], n=plan.n,
        device=str(pipe.device), dtype=dtype_name(pipe.dtype),
    )
    num_samples = int(result.waveforms.shape[-1])
    return Sidecar(
        mka_version=__version__, file=file.name, index=index, input_index=meta["input_index"],
        candidate=meta["candidate"], seed=meta["seed"], input=meta.get("input"),
        model=RecordedModel(path=str(model_dir), index_sha256=index_hash(model_dir)), request=request,
        sample_rate=result.sample_rate, num_samples=num_samples, duration=num_samples / result.sample_rate,
        rank=ranking.ranks[index] if ranking else None, score=ranking.scores[index] if ranking else None,
        metadata={k: v for k, v in meta.items() if k not in ("mka_version",)},
    )


def write_outputs(args, plan: Plan, pipe, model_dir: Path, result, ranking, out_file: Path | None,
                  out_dir: Path) -> list[dict[str, Any]]:
    """Write each output with its sidecar (and spectrogram): all of an output appears at once, or none of it."""
    from mka_core.cli.output_files import OutputFiles, slugify
    from mka_core.cli.sidecar import sidecar_json

    if plan.only_index is not None:
        if plan.only_index >= result.waveforms.shape[0]:
            raise InputError(f"The sidecar's index {plan.only_index} is outside its batch of {result.waveforms.shape[0]}.")
        indices = [plan.only_index]
    else:
        indices = ranking.order if ranking else list(range(result.waveforms.shape[0]))
    duration = result.waveforms.shape[-1] / result.sample_rate
    files = OutputFiles()
    written: list[dict[str, Any]] = []
    try:
        for index in indices:
            meta = result.metadata[index]
            suffix = out_file.suffix.lower() if out_file is not None else ".wav"
            audio = encode_audio(result.waveforms[index], result.sample_rate, suffix)
            image = None
            if args.spectrogram:
                from mka_core.spectrogram_image import mel_to_png_bytes

                frames = -(-result.waveforms.shape[-1] // pipe.hop_length)
                image = mel_to_png_bytes(result.mels[index, ..., :frames])

            def companions(path: Path, index: int = index, image: bytes | None = image) -> dict[str, bytes]:
                # The sidecar records the output's file name, so it is made for the name being taken.
                sidecar = build_sidecar(plan, pipe, model_dir, result, index, path, ranking)
                made = {".json": sidecar_json(sidecar).encode("utf-8")}
                if image is not None:
                    made[".png"] = image
                return made

            if out_file is not None:
                path = files.publish(out_file, audio, companions(out_file))
            else:
                slug = slugify(meta.get("input"), meta["task"])
                path = files.publish_unique(out_dir, slug, meta["seed"], audio, companions)
            written.append({"file": str(path), "input": meta.get("input"), "seed": meta["seed"],
                            "duration": duration, "index": index})
    finally:
        files.discard()
    return written


def print_summary(written: list[dict[str, Any]], ranking) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mka generate")
    for column in ("file", "input", "seed", "duration"):
        table.add_column(column, overflow="fold")
    if ranking:
        table.add_column("rank")
        table.add_column("CLAP score")
    for row in written:
        cells = [row["file"], row["input"] or "-", str(row["seed"]), f"{row['duration']:.3f} s"]
        if ranking:
            cells += [str(ranking.ranks[row["index"]]), f"{ranking.scores[row['index']]:.4f}"]
        table.add_row(*cells)
    Console(soft_wrap=True).print(table)


COMMANDS = [Command("generate", "Generate audio from prompts, images, videos or audio (t2a, sdedit, inpaint).",
                    add_arguments, run)]
