"""Shared machinery of the benchmarks: options, the machine, timing, memory, tables and JSON.

Every benchmark module exposes ``run(ctx) -> list[Row]`` and a ``main()`` that runs it alone;
``run_all.py`` runs them in one process. A :class:`Row` carries its figure, the floor it is
compared with where one exists (FLOPs divided by the machine's measured matmul peak), and the
name of the device it was taken on, so no figure travels without its machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from a checkout
    sys.path.insert(0, str(ROOT))


# -- options and context ----------------------------------------------------------------------
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--quick", action="store_true", help="fewer repetitions and smaller sweeps (a smoke run)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per figure (default 5, quick 2)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--json", type=Path, default=None, help="write the rows and the machine here")
    return p


@dataclass
class Context:
    device: torch.device
    quick: bool = False
    reps: int = 5
    #: Measured matmul peaks in GFLOP/s by dtype name, filled by the peak benchmark.
    peaks: dict[str, float] = field(default_factory=dict)

    @property
    def device_name(self) -> str:
        return device_name(self.device)


def context_from_args(args: argparse.Namespace) -> Context:
    from mka_core.devices import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    reps = args.reps if args.reps else (2 if args.quick else 5)
    return Context(device=resolve_device(args.device), quick=args.quick, reps=max(1, reps))


# -- the machine --------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bfloat16 dot-product instructions (AVX512-BF16 or AMX)."""
    from mka_core.models.precision import cpu_has_native_bf16 as native

    return native()


def device_name(device: torch.device) -> str:
    """A short human name: the GPU model, or the CPU model with its thread count and bf16 support."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    model = cpu_model()
    for noise in ("(R)", "(TM)", " CPU", " Processor"):
        model = model.replace(noise, "")
    bf16 = "bf16" if cpu_has_native_bf16() else "no bf16 insns"
    return f"{' '.join(model.split())}, {torch.get_num_threads()} thr, {torch.backends.cpu.get_cpu_capability()}, {bf16}"


def machine(ctx: Context) -> dict[str, Any]:
    info = {
        "device": str(ctx.device),
        "device_name": ctx.device_name,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if ctx.device.type == "cuda":
        props = torch.cuda.get_device_properties(ctx.device)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    return info


# -- timing -------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass
class Timing:
    times: list[float]

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def time_call(fn: Callable[[], Any], device: torch.device, reps: int, warmup: int = 1) -> Timing:
    """Seconds per call of ``fn`` (``warmup`` untimed calls first), synchronising the device."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        sync(device)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
    return Timing(times)


def time_alternating(fns: dict[str, Callable[[], Any]], device: torch.device, reps: int,
                     warmup: int = 1) -> dict[str, Timing]:
    """Time several functions in turn (a, b, a, b, ...) so drifting machine load hits all alike."""
    with torch.inference_mode():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        sync(device)
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(reps):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                sync(device)
                times[name].append(time.perf_counter() - start)
    return {name: Timing(t) for name, t in times.items()}


# -- memory -------------------------------------------------------------------------------------
def _read_hwm_kib() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak on a GPU, resident-set peak (VmHWM) on a CPU.

    On the CPU the process's high-water mark is reset at entry (``/proc/self/clear_refs``), so
    the figure is the whole process's peak resident memory during the block (Python, torch and
    every live model included), not only what the block allocated.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes: int | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            kib = _read_hwm_kib()
            self.peak_bytes = kib * 1024 if kib is not None else None

    @property
    def gib(self) -> float | None:
        return None if self.peak_bytes is None else self.peak_bytes / 2**30

    @property
    def kind(self) -> str:
        return "CUDA allocator peak" if self.device.type == "cuda" else "process peak RSS"


# -- rows, tables, JSON ---------------------------------------------------------------------------
@dataclass
class Row:
    """One figure. ``floor`` is in the same unit (the ideal from FLOPs and peak) when known."""

    bench: str
    case: str
    value: float
    unit: str
    device: str
    dtype: str | None = None
    floor: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """How far from the floor: value / floor for times, floor / value for rates."""
        if self.floor is None or not self.value:
            return None
        return self.value / self.floor if self.unit in ("s", "ms") else self.floor / self.value

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["x_floor"] = self.ratio
        return d


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "s" and value < 1:
        return f"{value * 1e3:.1f} ms"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return f"{text} {unit}".strip()


def print_table(title: str, rows: Iterable[Row]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("case", "dtype", "value", "floor", "x floor", "device", "note"):
        table.add_column(column, overflow="fold")
    for row in rows:
        ratio = row.ratio
        table.add_row(row.case, row.dtype or "", fmt(row.value, row.unit), fmt(row.floor, row.unit),
                      "-" if ratio is None else f"{ratio:.2f}x", row.device, row.note)
    Console(width=200).print(table)


def write_json(path: Path, ctx: Context, rows: list[Row], **extra: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(ctx), "quick": ctx.quick, "reps": ctx.reps, "peaks_gflops": ctx.peaks,
               "rows": [r.as_dict() for r in rows], **extra}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


def standalone(title: str, run: Callable[[Context], list[Row]], description: str,
               needs_peaks: bool = False) -> None:
    """``main()`` of a single benchmark module."""
    args = parser(description).parse_args()
    ctx = context_from_args(args)
    if needs_peaks:
        from benchmarks import bench_peak

        bench_peak.run(ctx)
    rows = run(ctx)
    print_table(f"{title} — {ctx.device_name}", rows)
    if args.json:
        write_json(args.json, ctx, rows)
