"""The report of ``mka eval``: one JSON document (written atomically) and a table on the terminal."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

#: metric key -> (label in the table, key of the reference-side figure, what that figure is)
ROWS = (
    ("fd", "FD (classifier embeddings)", None, ""),
    ("fd_halves", "FD, half vs half", "fd_real_floor", "real vs real floor"),
    ("kl", "KL ref||gen (label distr.)", None, ""),
    ("kl_sigmoid", "KL sigmoid (AudioLDM)", None, ""),
    ("accuracy", "accuracy (top class in labels)", "accuracy_reference", "the references"),
    ("clap", "CLAP score (audio-caption)", "clap_reference", "the references"),
)


def build_report(*, mode: str, manifest: str, model: str | None, generated: str | None, classifier: dict[str, Any],
                 clap: dict[str, Any], settings: dict[str, Any], scores: dict[str, Any], items: list[dict[str, Any]],
                 unmatched: int = 0) -> dict[str, Any]:
    from mka_core import __version__

    return {
        "mka_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": mode,
        "manifest": manifest,
        "model": model,
        "generated": generated,
        "classifier": classifier,
        "clap": clap,
        "settings": settings,
        "count": len(items),
        "unmatched_references": unmatched,
        "metrics": {key: _clean(value) for key, value in scores.items()},
        "items": items,
    }


def _clean(value: Any) -> Any:
    # JSON has no NaN; a score that could not be computed is null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    from mka_core.weights import write_json

    path = Path(path).expanduser()
    write_json(path, report)
    return path


def _fmt(value: Any, key: str) -> str:
    if value is None:
        return "n/a"
    if key.startswith("accuracy"):
        return f"{100 * value:.1f} %"
    return f"{value:.4f}"


def print_report(report: dict[str, Any], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    scores = report["metrics"]
    classifier = report["classifier"]
    title = f"mka eval: {report['count']} clips, classifier {classifier.get('name')}"
    table = Table(title=title)
    table.add_column("metric", no_wrap=True)
    table.add_column("generated", justify="right", no_wrap=True)
    table.add_column("reference", justify="right", no_wrap=True)
    table.add_column("reference is")
    for key, label, ref_key, ref_what in ROWS:
        if key == "kl_sigmoid" and scores.get(key) is None:
            continue
        ref_value = _fmt(scores.get(ref_key), ref_key) if ref_key else ""
        table.add_row(label, _fmt(scores.get(key), key), ref_value, ref_what if ref_key else "")
    console.print(table)
    notes = []
    if scores.get("clap") is None and report["clap"].get("reason"):
        notes.append(f"CLAP n/a: {report['clap']['reason']}")
    if scores.get("accuracy") is None and report["settings"].get("accuracy_note"):
        notes.append(f"accuracy n/a: {report['settings']['accuracy_note']}")
    if report.get("unmatched_references"):
        notes.append(f"{report['unmatched_references']} reference row(s) had no generated clip and were left out")
    for note in notes:
        console.print(f"[dim]{note}[/dim]")
