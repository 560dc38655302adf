"""``mka eval compare A.json B.json``: is B better or worse than A, beyond the noise?

Two reports of ``mka eval`` on the same references (the same manifest rows, and for a fair
test the same seeds) are compared clip by clip, which is far more sensitive than comparing
their averages: the clips both runs find easy or hard cancel out.

- Accuracy: McNemar's exact test on the discordant clips (right in one run, wrong in the
  other). Under "no difference" each discordant clip is a fair coin, so the two-sided p-value
  is a binomial tail.
- KL: the mean of the per-clip differences with a seeded bootstrap 95 % interval.
- FD is a property of the whole set, not of clips, so both values are shown side by side.
- Per class (a clip's class is the first of its ``labels``): the accuracy of each run and the
  clips right in only one of them. A class holds a handful of clips, so these rows show where a
  change acts, not whether it is real; the paired test over all clips says that.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mka_core.errors import InputError

#: Resamples of the bootstrap interval, and its seed (the interval is reproducible).
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 0


def load_report(path: str | Path) -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"The report {path} does not exist; give a JSON file written by `mka eval --out`.")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a JSON report of `mka eval` ({exc.__class__.__name__}).") from exc
    if not isinstance(report, dict) or not isinstance(report.get("items"), list) or "metrics" not in report:
        raise InputError(f"{path} is not a report of `mka eval` (no 'items' and 'metrics').")
    return report


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def bootstrap_mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.integers(0, len(values), size=(BOOTSTRAP_RESAMPLES, len(values)))
    means = values[picks].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def compare_reports(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The paired comparison of report ``b`` against report ``a`` (see the module docstring)."""
    items_a = {item["name"]: item for item in a["items"]}
    items_b = {item["name"]: item for item in b["items"]}
    names = [name for name in items_a if name in items_b]
    if not names:
        raise InputError("The two reports share no clip (matched by name); compare reports made on the same manifest.")
    result: dict[str, Any] = {"clips": len(names), "only_in_a": len(items_a) - len(names),
                              "only_in_b": len(items_b) - len(names)}
    if a.get("manifest") != b.get("manifest"):
        result["warning"] = "the reports were made on different manifests; only clips of the same name are compared"

    if all("correct" in items_a[n] and "correct" in items_b[n] for n in names):
        right_a = np.array([bool(items_a[n]["correct"]) for n in names])
        right_b = np.array([bool(items_b[n]["correct"]) for n in names])
        only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
        result["accuracy"] = {"a": float(right_a.mean()), "b": float(right_b.mean()),
                              "difference": float(right_b.mean() - right_a.mean()),
                              "right_only_in_a": only_a, "right_only_in_b": only_b,
                              "p_value": mcnemar_exact_p(only_a, only_b)}
        classes = [_first_label(items_a[n]) for n in names]
        if all(classes):
            result["per_class"] = per_class_accuracy(classes, right_a, right_b)
    kl_a = np.array([float(items_a[n]["kl"]) for n in names])
    kl_b = np.array([float(items_b[n]["kl"]) for n in names])
    low, high = bootstrap_mean_interval(kl_b - kl_a)
    result["kl"] = {"a": float(kl_a.mean()), "b": float(kl_b.mean()), "difference": float((kl_b - kl_a).mean()),
                    "interval_95": [low, high]}
    result["fd"] = {"a": a["metrics"].get("fd"), "b": b["metrics"].get("fd")}
    return result


def _first_label(item: dict[str, Any]) -> str | None:
    # Reports store each clip's labels as the list ManifestRow.labels parsed (evaluate.py).
    labels = item.get("labels")
    return str(labels[0]) if labels else None


def per_class_accuracy(classes: list[str], right_a: np.ndarray, right_b: np.ndarray) -> dict[str, dict[str, Any]]:
    """Accuracy of both runs per class, with the discordant clips of each, classes sorted by name."""
    out = {}
    for name in sorted(set(classes)):
        mask = np.array([c == name for c in classes])
        out[name] = {"clips": int(mask.sum()), "a": float(right_a[mask].mean()), "b": float(right_b[mask].mean()),
                     "right_only_in_a": int((right_a & ~right_b & mask).sum()),
                     "right_only_in_b": int((~right_a & right_b & mask).sum())}
    return out


def verdict(comparison: dict[str, Any], alpha: float = 0.05) -> str:
    """One sentence: whether B differs from A beyond the noise, and in which direction."""
    parts = []
    accuracy = comparison.get("accuracy")
    if accuracy is not None:
        if accuracy["p_value"] < alpha:
            parts.append(f"accuracy {'better' if accuracy['difference'] > 0 else 'worse'} (p = {accuracy['p_value']:.3f})")
        else:
            parts.append(f"accuracy equal within the noise (p = {accuracy['p_value']:.2f})")
    low, high = comparison["kl"]["interval_95"]
    if high < 0:
        parts.append("KL better (its 95 % interval is below 0)")
    elif low > 0:
        parts.append("KL worse (its 95 % interval is above 0)")
    else:
        parts.append("KL equal within the noise (its 95 % interval holds 0)")
    return "B against A: " + "; ".join(parts) + "."


def _clips(count: int) -> str:
    return f"{count} clip" if count == 1 else f"{count} clips"


def print_comparison(comparison: dict[str, Any], label_a: str, label_b: str, console=None,
                     per_class: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if per_class:
        print_per_class(comparison, console)
    table = Table(title=f"mka eval compare: {comparison['clips']} clips in both reports")
    for column, justify in (("metric", "left"), ("A", "right"), ("B", "right"), ("B - A", "right"),
                            ("noise", "left")):
        table.add_column(column, justify=justify, no_wrap=column != "noise")
    accuracy = comparison.get("accuracy")
    if accuracy is not None:
        table.add_row("accuracy", f"{100 * accuracy['a']:.1f} %", f"{100 * accuracy['b']:.1f} %",
                      f"{100 * accuracy['difference']:+.1f} pt",
                      f"McNemar p = {accuracy['p_value']:.3f} ({_clips(accuracy['right_only_in_a'])} right only in A, "
                      f"{accuracy['right_only_in_b']} only in B)")
    kl = comparison["kl"]
    low, high = kl["interval_95"]
    table.add_row("KL", f"{kl['a']:.4f}", f"{kl['b']:.4f}", f"{kl['difference']:+.4f}",
                  f"95 % interval [{low:+.4f}, {high:+.4f}]")
    fd = comparison["fd"]
    if fd["a"] is not None and fd["b"] is not None:
        table.add_row("FD", f"{fd['a']:.2f}", f"{fd['b']:.2f}", f"{fd['b'] - fd['a']:+.2f}", "set-level, no interval")
    console.print(table)
    console.print(f"A: {label_a}\nB: {label_b}")
    if comparison.get("warning"):
        console.print(f"[yellow]note: {comparison['warning']}[/yellow]")
    console.print(verdict(comparison))


def print_per_class(comparison: dict[str, Any], console) -> None:
    """The per-class rows, the classes that changed most first."""
    from rich.table import Table

    rows = comparison.get("per_class")
    if not rows:
        console.print("[yellow]note: no per-class rows: the reports' clips have no labels or no accuracy[/yellow]")
        return
    table = Table(title="per class (first label); too few clips each for a test: read it as where, not whether")
    for column in ("class", "clips", "A", "B", "B - A", "right only in A / B"):
        table.add_column(column, justify="left" if column == "class" else "right")
    order = sorted(rows.items(), key=lambda kv: (-(kv[1]["b"] - kv[1]["a"]), kv[0]))
    for name, row in order:
        table.add_row(name, str(row["clips"]), f"{100 * row['a']:.0f} %", f"{100 * row['b']:.0f} %",
                      f"{100 * (row['b'] - row['a']):+.0f} pt", f"{row['right_only_in_a']} / {row['right_only_in_b']}")
    console.print(table)
