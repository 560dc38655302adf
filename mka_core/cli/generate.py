"""`mka generate`: inputs -> audio files, each with a JSON sidecar that replays it bit for bit.

The command reads straight down: build the :class:`~mka_core.request.GenerationRequest` (from
flags, or from a sidecar with ``--replay``; every value is checked there), load the model,
run the one generation flow (:func:`mka_core.generate.generate`, shared with the Python API
and the web server), optionally rank candidates, then write each output atomically with its
sidecar (:mod:`mka_core.outputs`). Bad input stops the run before any file is written; an
interruption removes anything half-written. Under ``torchrun`` each process generates and
writes its share of the outputs (:mod:`mka_core.cli.sharding`). See ``docs/generate.md``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mka_core.cli.command import Command
from mka_core.cli.options import parse_key_values
from mka_core.errors import InputError
from mka_core.request import GenerationRequest, OutputNaming, build_request

#: Flags that define the generation itself; --replay takes them from the sidecar instead.
REQUEST_FLAGS = ("inputs", "cond", "cond_option", "prompts", "task", "task_option", "init", "strength", "mask",
                 "duration", "steps", "sampler", "sampler_option", "guidance", "seed", "n", "rank_with")


@dataclass
class Run:
    """A request and how to run it: which model, where, and (``--replay``) which output to write."""

    request: GenerationRequest
    model: str | None
    device: str = "auto"
    dtype: str = "float32"
    #: --replay: write only this flattened-batch index.
    only_index: int | None = None
    recorded_model_hash: str | None = None
    #: --replay: files the recorded request read, with their SHA-256.
    recorded_files: dict[str, str] | None = None
    #: "vae" or "light" (--decoder); None: the model's recorded default.
    decoder: str | None = None


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
    parser.add_argument("--cond-option", action="append", metavar="KEY=VALUE", default=None,
                        help="option of the conditioner over the ones the model saved, repeatable")
    parser.add_argument("--task-option", action="append", metavar="KEY=VALUE", default=None,
                        help="task option, repeatable (e.g. variant=blend for inpaint)")
    parser.add_argument("--init", metavar="AUDIO", default=None, help="init audio for sdedit and inpaint")
    parser.add_argument("--strength", type=float, default=None,
                        help="sdedit t0 in (0, 1] (default 0.5; 0.2-0.5 is the useful range)")
    parser.add_argument("--mask", default=None,
                        help="inpainting region to regenerate: '2.0-3.5,6-7' (seconds), '2-3.5@300-2000' (seconds@Hz), "
                             "a .npy or a .png file")
    parser.add_argument("--duration", default=None,
                        help="seconds (default: the init audio's length, else the model's default)")
    parser.add_argument("--steps", default=None, help="sampler steps, 1-1000 (default: the model's)")
    from mka_core.diffusion.samplers import sampler_names

    parser.add_argument("--sampler", default=None,
                        help=f"an installed sampler: {', '.join(sampler_names())} (default: the model's)")
    parser.add_argument("--sampler-option", action="append", metavar="KEY=VALUE", default=None,
                        help="sampler option, repeatable (e.g. eta=0.5 for ddim)")
    # Numbers arrive as text and are checked by the request model, so a bad value is one sentence
    # with the same rule as the server's and the Python API's.
    parser.add_argument("--guidance", default=None, help="classifier-free guidance scale, 0-100 (default: the model's)")
    parser.add_argument("--seed", default=None,
                        help="seed of the first output, 0 <= seed <= 2^63 - outputs; output i uses seed + i "
                             "(default: random)")
    # -n as well: under torchrun, "--n" is an ambiguous prefix of torchrun's own --nnodes and --nproc-per-node.
    parser.add_argument("--n", "-n", dest="n", default=None, help="candidates per input (default 1)")
    parser.add_argument("--rank-with", metavar="CLAP_CHECKPOINT", default=None,
                        help="with --n > 1, order each input's candidates by CLAP score (needs the clap-text plugin)")
    parser.add_argument("--out", "-o", default=None,
                        help="output file (one output) or folder (named <slug>_<seed>.wav); default: the current folder")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default float32)")
    parser.add_argument("--decoder", default=None, choices=("vae", "light"),
                        help="latents to mel with the VAE decoder or the model's light decoder "
                             "(mka train light-decoder; default: the model's recorded decoder, else vae)")
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


def run_from_args(args: argparse.Namespace) -> Run:
    """The flags as a :class:`GenerationRequest` (checked by the request model: one sentence on error)."""
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
    if args.init is not None and Path(args.init).expanduser().is_dir():
        raise InputError(f"The init audio {args.init} is a folder; give the path of an audio file inside it.")
    if args.init is not None and not Path(args.init).expanduser().is_file():
        raise InputError(f"The init audio {args.init} does not exist.")
    # Files the request reads are recorded by absolute path, so a sidecar replays from any folder.
    init = str(Path(args.init).expanduser().resolve()) if args.init is not None else None
    mask = args.mask
    if mask is not None and Path(mask).expanduser().is_file():
        mask = str(Path(mask).expanduser().resolve())
    request = build_request(
        inputs=inputs, cond=cond, cond_options=parse_key_values(args.cond_option, "conditioner option"),
        task=args.task, task_options=options, sampler=args.sampler,
        sampler_options=parse_key_values(args.sampler_option, "sampler option"), steps=args.steps,
        guidance=args.guidance, duration=args.duration, seed=args.seed, n=args.n, init_audio=init,
        mask=mask, output=OutputNaming(out=args.out, spectrogram=bool(args.spectrogram)),
    )
    return Run(request=request, model=args.model, device=args.device or "auto", dtype=args.dtype or "float32",
               decoder=getattr(args, "decoder", None))


def run_from_sidecar(args: argparse.Namespace) -> Run:
    """The request a sidecar recorded; output naming (``-o``, ``--spectrogram``) comes from this run's flags."""
    from mka_core.outputs.sidecar import check_recorded_files, read_sidecar

    given = [name for name in REQUEST_FLAGS if getattr(args, name, None) not in (None, [], False)]
    if given:
        flags = ", ".join("INPUT" if g == "inputs" else "--" + g.replace("_", "-") for g in given)
        raise InputError(f"--replay takes the whole request from the sidecar; drop {flags}.")
    sidecar = read_sidecar(args.replay)
    check_recorded_files(sidecar.files)
    request = sidecar.request.with_changes(output=OutputNaming(out=args.out, spectrogram=bool(args.spectrogram)))
    return Run(request=request, model=args.model or sidecar.model.path, device=args.device or sidecar.runtime.device,
               dtype=args.dtype or sidecar.runtime.dtype, only_index=sidecar.index,
               recorded_model_hash=sidecar.model.index_sha256, recorded_files=sidecar.files,
               decoder=getattr(args, "decoder", None) or sidecar.metadata.get("decoder"))


def absolute_file_inputs(pipe, request: GenerationRequest) -> GenerationRequest:
    """File inputs (images, videos) as absolute paths, so a sidecar replays from any folder."""
    if not request.inputs:
        return request
    conditioner = pipe.conditioner if request.cond is None else _conditioner_class(request.cond)
    if getattr(conditioner, "input_kind", "text") == "text":
        return request
    inputs = [str(Path(item).expanduser().resolve()) if Path(item).expanduser().exists() else item
              for item in request.inputs]
    return request.with_changes(inputs=inputs)


def _conditioner_class(name: str):
    from mka_core.plugins import manager

    return manager.get("conditioner", name)


# -- running --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from mka_core.cli.sharding import Shard, shard_device
    from mka_core.outputs.files import plan_destination
    from mka_core.outputs.writer import Destination

    job = run_from_sidecar(args) if args.replay else run_from_args(args)
    request = job.request
    outputs = 1 if job.only_index is not None else request.outputs
    out_file, out_dir = plan_destination(request.output.out, outputs)
    ranked = bool(getattr(args, "rank_with", None)) and request.n > 1
    shard = Shard.from_environment(request, replay=job.only_index is not None, ranked=ranked)
    if shard.rows is not None and len(shard.rows) == 0:
        print(f"mka: rank {shard.rank} of {shard.world} has no outputs to make ({outputs} in all); done.",
              file=sys.stderr)
        return 0
    pipe, model_dir = load_pipeline(job, shard_device(job.device, shard))
    if request.task is not None:
        from mka_core.pipeline import get_task

        task = get_task(request.task)
        if "strength" in request.task_options and "strength" not in task.Options.model_fields:
            raise InputError(f"--strength applies to the sdedit task, not to '{request.task}'.")
    request = absolute_file_inputs(pipe, request)
    scorer = None
    if ranked:
        from mka_core.ranking import load_clap_scorer

        scorer = load_clap_scorer(args.rank_with, device=pipe.device)
    result = run_generation(pipe, request, only=shard.rows)
    ranking = None
    if scorer is not None:
        from mka_core.ranking import rank_candidates

        prompts = [str(m.get("input") or "") for m in result.metadata]
        ranking = rank_candidates(result.waveforms, prompts, scorer)
    from mka_core.outputs.writer import write_outputs

    written = write_outputs(pipe, model_dir, result, Destination(out_file, out_dir), ranking=ranking,
                            only_index=job.only_index, spectrogram=request.output.spectrogram)
    print_summary(written, ranking, shard.title())
    return 0


def load_pipeline(job: Run, device: str):
    """The model, with a line on stderr while it loads (most of a short run) and its precision warnings."""
    from mka_core.model_lookup import index_hash, resolve_model
    from mka_core.models.precision import precision_warnings
    from mka_core.pipeline import Pipeline

    model_dir = resolve_model(job.model)
    if job.recorded_model_hash and index_hash(model_dir) != job.recorded_model_hash:
        print(f"mka: warning: the model at {model_dir} differs from the one the sidecar recorded; "
              "the replay may not match.", file=sys.stderr)
    from mka_core.devices import resolve_device

    print(f"mka: loading the model {model_dir} (device {resolve_device(device)}, {job.dtype})...", file=sys.stderr,
          flush=True)
    pipe = Pipeline.from_pretrained(model_dir, device=device, dtype=job.dtype)
    if job.decoder:
        pipe.use_decoder(job.decoder)
    for warning in precision_warnings(pipe.device, pipe.requested_dtype, pipe.dtype):
        print(f"mka: warning: {warning}", file=sys.stderr)
    pipe._precision_warned = True  # said here once; generate() would warn again otherwise
    return pipe, model_dir


def run_generation(pipe, request: GenerationRequest, only: range | None = None):
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

        return generate(pipe, request, progress=on_step, only=only)


def print_summary(written: list[dict[str, Any]], ranking, title: str = "mka generate") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("file", "input", "seed", "duration"):
        table.add_column(column, overflow="fold")
    if ranking:
        table.add_column("rank")
        table.add_column("CLAP score")
    for row in written:
        cells = [row["file"], row["input"] or "-", str(row["seed"]), f"{row['duration']:.3f} s"]
        if ranking:
            cells += [str(ranking.ranks[row["row"]]), f"{ranking.scores[row['row']]:.4f}"]
        table.add_row(*cells)
    Console(soft_wrap=True).print(table)


COMMANDS = [Command("generate", "Generate audio from prompts, images, videos or audio (t2a, sdedit, inpaint).",
                    add_arguments, run)]
