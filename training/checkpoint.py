"""Training checkpoints without pickle: nested state -> one safetensors file + one JSON file.

A training state (module weights, optimiser and scheduler states, EMA, RNG states, the data
position) is a tree of dicts, lists, tensors and plain values. :func:`flatten_state` moves every
tensor into a flat ``{key: tensor}`` table for safetensors and leaves a JSON skeleton that
names them, so loading never unpickles anything. A checkpoint is a folder written under a
temporary name and renamed into place, so a crash mid-write leaves the previous checkpoint
intact and never a half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mka_core.errors import WeightsError

TENSOR_TAG = "__tensor__"
TUPLE_TAG = "__tuple__"
INT_KEYS_TAG = "__int_keys__"
STATE_FILE = "state.safetensors"
META_FILE = "state.json"
CHECKPOINT_PREFIX = "step-"


def flatten_state(tree: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split ``tree`` into a JSON-able skeleton and a table of (contiguous, CPU) tensors."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            key = path or "root"
            tensors[key] = node.detach().to("cpu").contiguous().clone()
            return {TENSOR_TAG: key}
        if isinstance(node, dict):
            # Optimiser states key parameters by int; JSON keys are strings, so remember which.
            int_keys = [k for k in node if isinstance(k, int)]
            out = {str(k): walk(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
            if int_keys:
                out[INT_KEYS_TAG] = [str(k) for k in int_keys]
            return out
        if isinstance(node, (list, tuple)):
            items = [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(node)]
            return {TUPLE_TAG: items} if isinstance(node, tuple) else items
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"Cannot store a {type(node).__name__} in a checkpoint (at '{path}').")

    return walk(tree, ""), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if TENSOR_TAG in node:
                return tensors[node[TENSOR_TAG]]
            if TUPLE_TAG in node:
                return tuple(walk(v) for v in node[TUPLE_TAG])
            int_keys = set(node.get(INT_KEYS_TAG, []))
            return {(int(k) if k in int_keys else k): walk(v) for k, v in node.items() if k != INT_KEYS_TAG}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(skeleton)


def save_checkpoint(run_dir: str | Path, step: int, state: dict[str, Any], *, keep: int = 2) -> Path:
    """Write ``run_dir/checkpoints/step-XXXXXXXX/`` atomically and keep the newest ``keep``."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CHECKPOINT_PREFIX}{step:08d}"
    skeleton, tensors = flatten_state(state)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        save_file(tensors, str(tmp / STATE_FILE))
        (tmp / META_FILE).write_text(json.dumps({"step": step, "state": skeleton}), encoding="utf-8")
        for name in (STATE_FILE, META_FILE):
            with open(tmp / name, "rb") as handle:
                os.fsync(handle.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
             and (p / META_FILE).is_file() and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(path: str | Path) -> tuple[int, dict[str, Any]]:
    """``(step, state)`` of a checkpoint folder; tensors are on the CPU."""
    path = Path(path)
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(path / STATE_FILE))
    except FileNotFoundError:
        raise WeightsError(f"{path} is not a training checkpoint (it needs {META_FILE} and {STATE_FILE}).") from None
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise WeightsError(f"The checkpoint {path} is damaged ({exc}); resume from an earlier one.") from None
    return int(meta["step"]), unflatten_state(meta["state"], tensors)
