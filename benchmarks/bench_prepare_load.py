"""Load test of `mka data prepare`: a large manifest with a share of broken rows.

    nice -n 19 python -m benchmarks.bench_prepare_load                 # 10 000 rows, 5 % broken
    python -m benchmarks.bench_prepare_load --rows 500 --workers 1     # a quick look

It writes short clips (0.55-1 s; most at 16 kHz mono, one in ten at 44.1 kHz stereo so the
resampling and downmix run too) and a manifest naming them, breaks a share of the rows in
varied ways (missing file, wav cut inside its header, NaN samples, digital silence, too short,
bytes that are not audio, an empty file), runs the real CLI (``python -m mka_core.cli.main data
prepare``) in a child process and checks the result exactly: ``dropped.tsv`` names every broken
row and nothing else, and the output manifest holds every good row, each with a readable mel.
It prints the wall time and the peak memory: of the largest process (``getrusage`` of the
children, exact) and of the whole process tree (the CLI and its workers, summed; sampled from
/proc five times a second). The figures are recorded in docs/reliability.md.

The parent imports neither torch nor mka, so its own memory is not part of the figures. The
pytest version (tests/reliability/test_prepare_load.py) runs the same code on 200 rows.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent

#: The ways a row is broken, each with the reason `mka data prepare` gives for it.
BROKEN_KINDS = {
    "missing file": "missing file",
    "wav cut inside its header": "unreadable audio",
    "NaN samples": "NaN or Inf samples",
    "digital silence": "silent",
    "too short (0.2 s)": "too short",
    "bytes that are not audio": "unreadable audio",
    "empty file": "unreadable audio",
}


@dataclass
class Corpus:
    manifest: Path
    good: list[str]
    #: name -> kind (a key of BROKEN_KINDS)
    broken: dict[str, str]


@dataclass
class Outcome:
    returncode: int
    wall_s: float
    peak_rss_largest_mb: float
    peak_rss_tree_mb: float
    stdout: str
    stderr: str
    problems: list[str] = field(default_factory=list)


# -- the corpus -----------------------------------------------------------------------------------


def _clip(rng: np.random.Generator, seconds: float, rate: int, channels: int) -> np.ndarray:
    n = int(round(seconds * rate))
    t = np.arange(n, dtype=np.float32) / rate
    freq = rng.uniform(110.0, 2000.0)
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(n).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


def _write_broken(path: Path, kind: str, rng: np.random.Generator) -> None:
    if kind == "missing file":
        return  # named in the manifest, never written
    if kind == "wav cut inside its header":
        sf.write(str(path), _clip(rng, 0.6, 16000, 1), 16000, subtype="PCM_16")
        path.write_bytes(path.read_bytes()[:30])
    elif kind == "NaN samples":
        data = _clip(rng, 0.8, 16000, 1)
        data[rng.integers(0, len(data)), 0] = np.nan
        sf.write(str(path), data, 16000, subtype="FLOAT")
    elif kind == "digital silence":
        sf.write(str(path), np.zeros((12000, 1), np.float32), 16000, subtype="PCM_16")
    elif kind == "too short (0.2 s)":
        sf.write(str(path), _clip(rng, 0.2, 16000, 1), 16000, subtype="PCM_16")
    elif kind == "bytes that are not audio":
        path.write_bytes(b"<html><body>404 not found</body></html>" + rng.bytes(2000))
    elif kind == "empty file":
        path.write_bytes(b"")
    else:
        raise ValueError(kind)


def build_corpus(folder: Path, rows: int, broken_share: float = 0.05, seed: int = 0) -> Corpus:
    """Write ``rows`` clips under ``folder/audio`` and ``folder/raw.tsv``; a ``broken_share`` of them broken."""
    rng = np.random.default_rng(seed)
    audio = folder / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    n_broken = int(round(rows * broken_share))
    broken_rows = set(rng.choice(rows, size=n_broken, replace=False).tolist()) if n_broken else set()
    kinds = list(BROKEN_KINDS)
    good, broken = [], {}
    manifest = folder / "raw.tsv"
    with open(manifest, "w", encoding="utf-8", newline="") as handle:
        handle.write("name\tdataset\tcaption\taudio_path\n")
        for i in range(rows):
            name = f"clip{i:05d}"
            path = audio / f"{name}.wav"
            if i in broken_rows:
                kind = kinds[len(broken) % len(kinds)]  # every kind, in turn
                _write_broken(path, kind, rng)
                broken[name] = kind
            else:
                stereo = i % 10 == 3
                rate = 44100 if stereo else 16000
                sf.write(str(path), _clip(rng, rng.uniform(0.55, 1.0), rate, 2 if stereo else 1), rate,
                         subtype="PCM_16")
                good.append(name)
            handle.write(f"{name}\tload\ta tone number {i}\t{path}\n")
    return Corpus(manifest, good, broken)


# -- running the CLI and measuring it --------------------------------------------------------------


def _tree_rss_kb(root: int) -> int:
    """Summed VmRSS of ``root`` and every descendant (kB), from /proc; 0 where /proc is missing."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue
        pid, ppid = int(entry), int(fields.get("PPid", "0").strip() or 0)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_prepare_cli(manifest: Path, out: Path, workers: int | None = None, timeout: float = 3600.0) -> Outcome:
    """``mka data prepare --manifest MANIFEST --out OUT`` in a child process, with its wall time and peak memory."""
    command = [sys.executable, "-m", "mka_core.cli.main", "data", "prepare", "--manifest", str(manifest),
               "--out", str(out), "--quiet"]
    if workers is not None:
        command += ["--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    peak_tree = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not stop.wait(0.2):
            peak_tree = max(peak_tree, _tree_rss_kb(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    finally:
        stop.set()
        if child.poll() is None:
            child.kill()
            child.communicate()
        sampler.join(timeout=5)
    wall = time.perf_counter() - start
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kB on Linux
    if largest <= before:  # an earlier child of this process was larger: the figure says nothing new
        largest = float("nan")
    return Outcome(child.returncode, wall, largest / 1024, peak_tree / 1024, stdout, stderr)


# -- checking the result ----------------------------------------------------------------------------


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def check(corpus: Corpus, out: Path) -> list[str]:
    """What differs from the exact expectation (empty when every row went where it should)."""
    problems = []
    kept = _read_tsv(out / "manifest.tsv")
    dropped = _read_tsv(out / "dropped.tsv")
    kept_names = [row["name"] for row in kept]
    dropped_names = [row["name"] for row in dropped]
    if len(set(kept_names)) != len(kept_names) or len(set(dropped_names)) != len(dropped_names):
        problems.append("a row appears twice in the output")
    lost = sorted(set(corpus.good) - set(kept_names))
    if lost:
        problems.append(f"{len(lost)} good rows are missing from manifest.tsv (first: {lost[:3]})")
    wrongly_kept = sorted(set(kept_names) - set(corpus.good))
    if wrongly_kept:
        problems.append(f"{len(wrongly_kept)} rows in manifest.tsv are not good ones (first: {wrongly_kept[:3]})")
    if set(dropped_names) != set(corpus.broken):
        extra = sorted(set(dropped_names) - set(corpus.broken))
        missed = sorted(set(corpus.broken) - set(dropped_names))
        problems.append(f"dropped.tsv differs from the broken rows: {len(extra)} good rows dropped "
                        f"(first: {extra[:3]}), {len(missed)} broken rows not reported (first: {missed[:3]})")
    for row in dropped:
        kind = corpus.broken.get(row["name"])
        if kind is not None and not row["reason"].startswith(BROKEN_KINDS[kind]):
            problems.append(f"{row['name']} ({kind}) is dropped as '{row['reason']}', not '{BROKEN_KINDS[kind]}'")
    unreadable = 0
    for row in kept:
        mel_path = Path(row.get("mel_path") or "")
        mel_path = mel_path if mel_path.is_absolute() else out / mel_path
        try:
            mel = np.load(mel_path, mmap_mode="r", allow_pickle=False)
            if mel.ndim != 2 or mel.shape[0] != 80 or mel.shape[1] < 1:
                unreadable += 1
        except (OSError, ValueError):
            unreadable += 1
    if unreadable:
        problems.append(f"{unreadable} kept rows have no readable [80, frames] mel")
    return problems


def run_load_test(folder: Path, rows: int, broken_share: float = 0.05, workers: int | None = None,
                  seed: int = 0) -> tuple[Corpus, Outcome, float]:
    """Build the corpus in ``folder``, prepare it into ``folder/prepared`` and check it."""
    start = time.perf_counter()
    corpus = build_corpus(folder, rows, broken_share, seed)
    build_s = time.perf_counter() - start
    outcome = run_prepare_cli(corpus.manifest, folder / "prepared", workers)
    if outcome.returncode == 0:
        outcome.problems = check(corpus, folder / "prepared")
    else:
        outcome.problems = [f"mka data prepare exited {outcome.returncode}: {outcome.stderr.strip()[-500:]}"]
    return corpus, outcome, build_s


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000, help="manifest rows (default 10 000)")
    parser.add_argument("--broken", type=float, default=0.05, help="share of broken rows (default 0.05)")
    parser.add_argument("--workers", type=int, default=None, help="mka data prepare --workers (default: its own)")
    parser.add_argument("--folder", type=Path, default=None, help="where to build it (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the folder afterwards")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="mka-prepare-load-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        corpus, outcome, build_s = run_load_test(folder, args.rows, args.broken, args.workers, args.seed)
        prepared_mb = _size_mb(folder / "prepared") if (folder / "prepared").exists() else 0.0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    workers = args.workers if args.workers is not None else f"default ({min(8, os.cpu_count() or 1)})"
    table = [
        ("rows", f"{args.rows}"),
        ("broken rows", f"{len(corpus.broken)} ({', '.join(sorted(set(corpus.broken.values())))})"),
        ("workers", f"{workers} on {os.cpu_count()} CPU cores, niceness {os.nice(0)}"),
        ("corpus written in", f"{build_s:.1f} s"),
        ("mka data prepare wall time", f"{outcome.wall_s:.1f} s ({args.rows / outcome.wall_s:.0f} rows/s)"),
        ("peak RSS, largest process", f"{outcome.peak_rss_largest_mb:.0f} MB"),
        ("peak RSS, process tree (summed)", f"{outcome.peak_rss_tree_mb:.0f} MB"),
        ("output size", f"{prepared_mb:.0f} MB"),
        ("result", "exact: every broken row reported, every good row kept" if not outcome.problems
         else "WRONG: " + "; ".join(outcome.problems)),
    ]
    width = max(len(k) for k, _ in table)
    print(f"mka data prepare load test ({sys.platform}, Python {sys.version.split()[0]})")
    for key, value in table:
        print(f"  {key:<{width}}  {value}")
    print(outcome.stdout.strip())
    return 0 if not outcome.problems else 1


if __name__ == "__main__":
    sys.exit(main())
