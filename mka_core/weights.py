"""Reading and writing weights safely.

* mka writes ``.safetensors`` only, atomically (temporary file, then rename).
* Foreign checkpoints (the reference release is PyTorch-Lightning pickles) are read with
  ``torch.load(weights_only=True)``: a pickle that would build arbitrary objects, run code
  or import modules is refused with a clear sentence, never executed.
* Weights are looked up in a local path first, then the user cache (``MKA_HOME``), then a
  hub only when the user allows network access; offline, the error names the missing files
  and where to put them.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Iterable

import torch

from mka_core.atomic import atomic_write, atomic_write_text
from mka_core.errors import WeightsError


def mka_home() -> Path:
    """The user cache: ``$MKA_HOME``, else ``~/.cache/mka``."""
    return Path(os.environ.get("MKA_HOME") or Path.home() / ".cache" / "mka")


def network_allowed() -> bool:
    """Network is used only when the user opts in and no offline switch is set."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("MKA_OFFLINE", "0") not in ("", "0"):
        return False
    return os.environ.get("MKA_ALLOW_NETWORK", "0") not in ("", "0")


# -- JSON ---------------------------------------------------------------------------------


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(Path(path), json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Missing file {path}; the folder is not a complete mka component.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path} is not valid JSON ({exc}); restore the file or re-create the folder.") from exc


# -- safetensors ----------------------------------------------------------------------------


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write tensors to ``path`` atomically. Shared storage is cloned so the file is valid."""
    from safetensors.torch import save

    seen: set[int] = set()
    clean: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else -1
        if ptr in seen or not tensor.is_contiguous():
            tensor = tensor.clone().contiguous()
        seen.add(ptr)
        clean[name] = tensor
    payload = save(clean, metadata=metadata)
    with atomic_write(Path(path), "wb") as handle:
        handle.write(payload)


def load_safetensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file; a truncated or corrupt file gives a clear WeightsError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Missing weights file {path}.")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(
            f"{path} is not a readable safetensors file ({exc}); it may be truncated or corrupt - "
            "download or export it again."
        ) from exc


def load_fitting_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path, *,
                       strict: bool = True, what: str = "the model", fix: str = "re-create the model folder") -> None:
    """Load ``state`` (read from ``source``) into ``module``, or say in one sentence why it does not fit.

    A tensor whose shape differs from the module's, a name the module does not have, and (when
    ``strict``) a name the module needs but ``state`` lacks are a :class:`WeightsError` naming the
    file and the first tensor concerned, never torch's multi-line RuntimeError.
    """
    own = module.state_dict()
    wrong = [name for name, tensor in state.items() if name in own and tuple(tensor.shape) != tuple(own[name].shape)]
    if wrong:
        name = wrong[0]
        raise WeightsError(
            f"{source} does not fit {what}: '{name}' has shape {list(state[name].shape)}, {what} needs "
            f"{list(own[name].shape)} ({len(wrong)} tensor(s) differ); {fix}."
        )
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state)) if strict else []
    if unexpected or missing:
        parts = ([f"unknown tensor(s) {unexpected[:3]}"] if unexpected else []) + \
                ([f"missing tensor(s) {missing[:3]}"] if missing else [])
        raise WeightsError(f"{source} does not fit {what}: {' and '.join(parts)}; {fix}.")
    module.load_state_dict(state, strict=strict)


# -- foreign checkpoints ------------------------------------------------------------------------


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``).

    Anything else - a pickle that would import a module or call a function - is refused and
    nothing in it is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Checkpoint {path} does not exist.")
    if path.stat().st_size == 0:
        raise WeightsError(f"Checkpoint {path} is empty (0 bytes); download it again.")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"Refusing to load {path}: it contains Python objects other than tensors and plain containers, "
            "which could run code when unpickled. Only load checkpoints you trust; convert trusted ones to "
            "safetensors with a tool you trust."
        ) from exc
    except (zipfile.BadZipFile, EOFError, RuntimeError, ValueError, OSError) as exc:
        raise WeightsError(f"Checkpoint {path} is truncated or corrupt ({exc.__class__.__name__}); download it again.") from exc


# -- resolution -----------------------------------------------------------------------------------


def resolve_weights(
    source: str | Path,
    required_files: Iterable[str],
    *,
    what: str,
    hint: str = "",
) -> Path:
    """Find a folder holding ``required_files`` for ``source``.

    ``source`` is a local folder, or an id looked up as ``$MKA_HOME/weights/<id>``. Hub access
    is left to the caller (and only when :func:`network_allowed`). Offline and missing, the
    message names the files and where to put them.
    """
    required = list(required_files)
    candidates = [Path(source).expanduser()]
    cache = mka_home() / "weights" / str(source).replace("/", "--")
    candidates.append(cache)
    for folder in candidates:
        if folder.is_dir() and all((folder / name).exists() for name in required):
            return folder
    missing = ", ".join(required) if required else "the model files"
    from mka_core.hub.catalogue import pull_hint

    pull = pull_hint(str(source))
    raise WeightsError(
        f"The {what} weights '{source}' are not available offline: put {missing} in {cache} "
        f"(or pass a local folder path){', or ' + pull if pull else ''}{' - ' + hint if hint else ''}."
    )
