"""Accounting for a conversion: every source tensor is used or ignored with a reason.

The reference loads with ``strict=False`` and never says what it skipped. A :class:`Ledger`
records, for each tensor of a source file, where it went (``component:key``) or why it was
left out. A conversion ends by calling :meth:`Ledger.check_complete`: a tensor nobody claimed
is an error that names it, so an unexpected layout can never be converted silently.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch

from mka_core.errors import WeightsError


@dataclass
class TensorRecord:
    key: str
    shape: list[int]
    dtype: str
    numel: int
    fate: str | None = None  # "used" | "ignored"
    target: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "shape": self.shape, "dtype": self.dtype, "fate": self.fate}
        if self.target is not None:
            out["target"] = self.target
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).replace("torch.", "")


class Ledger:
    """Where each tensor of one source file went."""

    def __init__(self, source: str, tensors: Mapping[str, torch.Tensor]) -> None:
        self.source = source
        self.records: "OrderedDict[str, TensorRecord]" = OrderedDict(
            (k, TensorRecord(k, list(v.shape), _dtype_name(v), int(v.numel()))) for k, v in tensors.items()
        )

    def add(self, key: str, tensor: torch.Tensor) -> None:
        """Register a tensor that lives outside the state dict (e.g. inside optimizer states)."""
        self.records[key] = TensorRecord(key, list(tensor.shape), _dtype_name(tensor), int(tensor.numel()))

    def _record(self, key: str) -> TensorRecord:
        if key not in self.records:
            raise KeyError(f"{key} is not a tensor of {self.source}")
        return self.records[key]

    def use(self, key: str, target: str) -> None:
        record = self._record(key)
        record.fate = "used"
        # A tensor may feed several mka tensors (each caller says so); keep every target.
        record.target = target if record.target is None else f"{record.target}, {target}"

    def ignore(self, key: str, reason: str) -> None:
        record = self._record(key)
        record.fate, record.reason = "ignored", reason

    def ignore_prefix(self, prefix: str, reason: str) -> int:
        keys = [k for k, r in self.records.items() if k.startswith(prefix) and r.fate is None]
        for key in keys:
            self.ignore(key, reason)
        return len(keys)

    def pending(self) -> list[str]:
        return [k for k, r in self.records.items() if r.fate is None]

    def check_complete(self) -> None:
        """Every tensor must be used or ignored; the first unclaimed ones are named."""
        left = self.pending()
        if left:
            more = f" and {len(left) - 5} more" if len(left) > 5 else ""
            raise WeightsError(
                f"{self.source} has {len(left)} tensors that this conversion does not know ({', '.join(left[:5])}{more}); "
                "the file is not of the expected layout."
            )

    # -- summaries ------------------------------------------------------------------------------
    def groups(self) -> list[dict[str, Any]]:
        """Rows of (fate, where/why) with tensor and element counts, in file order."""
        rows: "OrderedDict[tuple[str, str], dict[str, Any]]" = OrderedDict()
        for record in self.records.values():
            where = _component_of(record.target) if record.fate == "used" else (record.reason or "")
            key = (record.fate or "unclaimed", where)
            row = rows.setdefault(key, {"source": self.source, "fate": key[0], "where": where, "tensors": 0,
                                        "elements": 0, "first_key": record.key})
            row["tensors"] += 1
            row["elements"] += record.numel
        return list(rows.values())

    def totals(self) -> dict[str, int]:
        used = [r for r in self.records.values() if r.fate == "used"]
        ignored = [r for r in self.records.values() if r.fate == "ignored"]
        return {
            "tensors": len(self.records),
            "used_tensors": len(used),
            "ignored_tensors": len(ignored),
            "used_elements": sum(r.numel for r in used),
            "ignored_elements": sum(r.numel for r in ignored),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "totals": self.totals(),
            "groups": self.groups(),
            "tensors": [r.to_json() for r in self.records.values()],
        }


def _component_of(target: str | None) -> str:
    """``"unet:input_blocks.0.0.weight"`` -> ``"unet"`` (several targets: each component once)."""
    if not target:
        return ""
    parts = [t.strip().split(":", 1)[0] for t in target.split(",")]
    return ", ".join(dict.fromkeys(parts))


def print_summary(ledgers: Iterable[Ledger], filled: Mapping[str, int], console: Any = None) -> None:
    """A table per source file (fate, where/why, counts) and the filled mka components."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for ledger in ledgers:
        title = f"{ledger.source}: every tensor accounted for"
        table = Table(title=title, min_width=len(title) + 2)  # keep the title on one line
        for column, justify in (("fate", "left"), ("tensors", "right"), ("elements", "right"), ("into / why", "left")):
            table.add_column(column, justify=justify, overflow="fold")
        for row in ledger.groups():
            table.add_row(row["fate"], str(row["tensors"]), f"{row['elements']:,}", row["where"])
        console.print(table)
    table = Table(title="mka components filled")
    table.add_column("component")
    table.add_column("tensors filled", justify="right")
    for name, count in filled.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
