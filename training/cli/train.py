"""`mka train TARGET`: train a VAE, the diffusion model, the inpainting fine-tune, a vocoder,
a conditioner alignment or any plugin's target, from a recipe.

::

    mka train diffusion --preset tiny --data corpus/train.tsv --out runs/diff
    mka train vae --recipe my-vae.toml --set optim.lr=2e-5 --set run.max_steps=20000 --out runs/vae
    mka train diffusion --out runs/diff --resume          # continue after a crash or Ctrl-C
    mka train export runs/diff --out my-model             # a pipeline folder from the last checkpoint
    torchrun --nproc_per_node=4 -m mka_core.cli.main train diffusion ...   # DDP

``mka train conditioner NAME`` aligns conditioner NAME into a model's embedding space.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mka_core.cli.command import Command
from mka_core.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET",
                        help="what to train: vae, diffusion, inpaint, vocoder, conditioner, a plugin's target; "
                             "or 'export RUN' / 'list'")
    parser.add_argument("extra", nargs="*", metavar="ARG",
                        help="the conditioner name for 'conditioner', the run folder for 'export'")
    parser.add_argument("--recipe", metavar="FILE", help="a TOML recipe (default: the built-in one of --preset)")
    parser.add_argument("--preset", default="tiny", help="built-in recipe preset: tiny or base (default tiny)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set optim.lr=2e-4 (repeatable)")
    parser.add_argument("--data", metavar="MANIFEST", help="training manifest (same as --set data.train=...)")
    parser.add_argument("--valid", metavar="MANIFEST", help="validation manifest (same as --set data.valid=...)")
    parser.add_argument("--steps", type=int, help="same as --set run.max_steps=N")
    parser.add_argument("--batch-size", type=int, help="same as --set run.batch_size=N")
    parser.add_argument("--device", help="same as --set run.device=...")
    parser.add_argument("--teacher", metavar="MODEL",
                        help="distill, light-decoder: the pipeline to distil (a folder, an installed model name or 'default'; "
                             "same as --set model.teacher=...)")
    parser.add_argument("--out", metavar="DIR", help="the run folder (checkpoints, logs, samples, export)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                        help="continue the run in --out from its last checkpoint (or from CHECKPOINT)")
    parser.add_argument("--export-to", metavar="DIR", help="where to export the trained pipeline (default RUN/export)")
    parser.add_argument("--print-recipe", action="store_true", help="print the resolved recipe and exit")


def _target_class(name: str):
    from mka_core.plugins import manager

    try:
        return manager.get("trainer", name)
    except Exception:
        names = ", ".join(sorted(manager.names("trainer")))
        raise InputError(f"There is no trainable target '{name}'; choose one of: {names}.") from None


def resolve_recipe(target_class, args: argparse.Namespace):
    from training.recipe import apply_overrides, builtin_recipe_path, read_recipe_file, validate_recipe

    source = args.recipe or builtin_recipe_path(target_class.name, args.preset)
    data = read_recipe_file(source)
    data.setdefault("target", target_class.name)
    if data["target"] != target_class.name:
        raise InputError(f"The recipe {source} is for '{data['target']}', not '{target_class.name}'.")
    shortcuts = []
    if args.data:
        shortcuts.append(f"data.train={_quoted(args.data)}")
    if args.valid:
        shortcuts.append(f"data.valid={_quoted(args.valid)}")
    if args.steps is not None:
        shortcuts.append(f"run.max_steps={args.steps}")
    if args.batch_size is not None:
        shortcuts.append(f"run.batch_size={args.batch_size}")
    if args.device:
        shortcuts.append(f"run.device={_quoted(args.device)}")
    if getattr(args, "teacher", None):
        model_section = getattr(target_class.recipe_class.model_fields.get("model"), "annotation", None)
        if "teacher" not in getattr(model_section, "model_fields", {}):
            raise InputError(f"--teacher is for `mka train distill` and `mka train light-decoder`; "
                             f"'{target_class.name}' has no teacher.")
        shortcuts.append(f"model.teacher={_quoted(args.teacher)}")
    extra = getattr(target_class, "positional_overrides", None)
    if extra is not None:
        shortcuts.extend(extra(args.extra))
    elif args.extra:
        raise InputError(f"'mka train {target_class.name}' takes no extra argument ({' '.join(args.extra)}).")
    data = apply_overrides(data, shortcuts + list(args.overrides))
    return validate_recipe(target_class.recipe_class, data, str(source))


def _quoted(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _export(args: argparse.Namespace) -> int:
    from training.checkpoint import latest_checkpoint
    from training.recipe import read_recipe_file, validate_recipe
    from training.trainer import RECIPE_FILE, Trainer

    if len(args.extra) != 1:
        raise InputError("Usage: mka train export RUN_FOLDER [--out DIR].")
    run_dir = Path(args.extra[0])
    if not (run_dir / RECIPE_FILE).is_file() or latest_checkpoint(run_dir) is None:
        raise InputError(f"{run_dir} is not a training run with a checkpoint (it needs {RECIPE_FILE} and checkpoints/).")
    data = read_recipe_file(run_dir / RECIPE_FILE)
    target_class = _target_class(data.get("target", ""))
    recipe = validate_recipe(target_class.recipe_class, data, str(run_dir / RECIPE_FILE))
    trainer = Trainer(target_class, recipe, run_dir, resume=True)
    trainer.target.setup()
    trainer._build_optimizers()
    from training.checkpoint import load_checkpoint

    _, state = load_checkpoint(trainer.resume_from)
    trainer.load_state(state)
    print(trainer.export(args.out or args.export_to))
    return 0


def _list() -> int:
    from rich.console import Console
    from rich.table import Table

    from mka_core.plugins import manager

    table = Table(title="trainable targets")
    for column in ("target", "from", "summary"):
        table.add_column(column)
    for reg in sorted(manager.registrations("trainer"), key=lambda r: r.name):
        table.add_row(reg.name, reg.distribution, getattr(reg.obj, "summary", ""))
    Console().print(table)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.target == "export":
        return _export(args)
    if args.target == "list":
        return _list()
    target_class = _target_class(args.target)
    recipe = resolve_recipe(target_class, args)
    if args.print_recipe:
        from training.recipe import recipe_to_toml

        print(recipe_to_toml(recipe), end="")
        return 0
    if not args.out:
        raise InputError("Give the run folder with --out DIR (checkpoints, logs and the exported model go there).")
    from training.trainer import Trainer

    trainer = Trainer(target_class, recipe, args.out, resume=args.resume)
    exported = trainer.fit()
    if exported is not None:
        print(exported)
    return 0


COMMANDS = [Command("train", "Train a VAE, the diffusion model, the inpainting fine-tune, a vocoder or a plugin's target.",
                    add_arguments, run)]
