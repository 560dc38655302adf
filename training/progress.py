"""Training progress for people: a live bar on a terminal, plain lines everywhere else.

A bar redrawn in place means nothing in a log file (and rich draws nothing at all until the
end when its output is not a terminal), so when stderr is not a TTY - CI, ``nohup``, ``2> log``
- the trainer prints one plain line instead: at the first step (the run started and how fast a
step is), then every ``MKA_PROGRESS_SECONDS`` seconds (default 30), and at the last step::

    mka train: step 120/5000 (2.4%), loss 0.0132, 1.85 steps/s, ETA 43m57s

Only rank 0 reports. The numbers are the same ones ``metrics.jsonl`` records.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

#: Seconds between two plain progress lines when the environment does not say otherwise.
DEFAULT_INTERVAL = 30.0


def progress_interval() -> float:
    raw = os.environ.get("MKA_PROGRESS_SECONDS", "")
    try:
        return max(0.0, float(raw)) if raw.strip() else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL


def format_duration(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_logs(logs: dict[str, Any], limit: int = 3) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in list(logs.items())[:limit] if isinstance(v, (int, float)))


class TrainProgress:
    """``with TrainProgress(...) as progress: progress.update(step, logs)`` once per optimiser step."""

    def __init__(self, enabled: bool, total: int, done: int, *, stream: TextIO | None = None,
                 interval: float | None = None) -> None:
        self.enabled, self.total, self.start_step = enabled, total, done
        self.stream = stream if stream is not None else sys.stderr
        self.interval = progress_interval() if interval is None else interval
        self.interactive = enabled and _is_tty(self.stream)
        self._bar = self._task = None
        self._started = self._last_time = time.perf_counter()
        self._last_step = done

    def __enter__(self) -> "TrainProgress":
        if self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.description}"), console=Console(file=self.stream),
                                 transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task("training", total=self.total, completed=self.start_step)
        self._started = self._last_time = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def update(self, step: int, logs: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=step, description=format_logs(logs).replace(",", ""))
            return
        now = time.perf_counter()
        first = step == self.start_step + 1
        if not (first or step >= self.total or now - self._last_time >= self.interval):
            return
        self.stream.write(self.line(step, logs, now) + "\n")
        self.stream.flush()
        self._last_time, self._last_step = now, step

    def line(self, step: int, logs: dict[str, Any], now: float) -> str:
        """The plain line for ``step``: the rate over the steps since the previous line."""
        elapsed = max(now - self._last_time, 1e-9)
        rate = (step - self._last_step) / elapsed
        parts = [f"mka train: step {step}/{self.total} ({100.0 * step / max(self.total, 1):.1f}%)"]
        if logs:
            parts.append(format_logs(logs))
        parts.append(f"{rate:.3g} steps/s")
        overall = (step - self.start_step) / max(now - self._started, 1e-9)
        remaining = self.total - step
        parts.append(f"ETA {format_duration(remaining / overall) if overall > 0 else '?'}" if remaining > 0
                     else f"done in {format_duration(now - self._started)}")
        return ", ".join(parts)


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
