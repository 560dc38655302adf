"""Reading foreign checkpoints safely: a Lightning ``.ckpt`` or a vocoder ``.pt``.

Every read goes through :func:`mka_core.weights.safe_torch_load` (``weights_only=True``): a
pickle that would import a module or call a function is refused, nothing in it runs. Before
that, the file's first bytes are checked, because ``torch.load`` reports random bytes as an
"unsupported pickle" and the user should hear "corrupt", not "unsafe".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from mka_core.errors import WeightsError
from mka_core.weights import safe_torch_load

#: ``torch.save`` since 1.6 writes a zip archive; older versions a pickle that opens with protocol 2.
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02"


@dataclass
class ForeignCheckpoint:
    """A loaded checkpoint: its tensors (``state``) and everything else at the top level (``extra``)."""

    path: Path
    state: dict[str, torch.Tensor]
    #: Top-level entries other than the state dict (epoch, optimizer states, ...), kept for the report.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The top-level key the tensors were taken from ("state_dict", "generator", or "" for a bare dict).
    state_key: str = ""

    @property
    def name(self) -> str:
        return self.path.name


def check_file_kind(path: Path) -> None:
    """Refuse files that are not PyTorch checkpoints at all (empty, random bytes, another format)."""
    if not path.is_file():
        raise WeightsError(f"Checkpoint {path} does not exist; check the path.")
    size = path.stat().st_size
    if size == 0:
        raise WeightsError(f"Checkpoint {path} is empty (0 bytes); download it again.")
    with path.open("rb") as handle:
        head = handle.read(4)
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_LEGACY_MAGIC)):
        raise WeightsError(
            f"{path} is not a PyTorch checkpoint (it starts with bytes {head!r}); the file is corrupt or of "
            "another format - download it again."
        )


def load_checkpoint(path: str | Path, *, state_key: str = "state_dict", what: str = "checkpoint") -> ForeignCheckpoint:
    """Load ``path`` with ``weights_only=True`` and take its tensors from ``state_key``.

    A bare ``{name: tensor}`` dict (no ``state_key`` entry) is accepted too. Non-tensor values
    inside the state dict, or a top level that is not a dict, are a ``WeightsError``.
    """
    path = Path(path).expanduser()
    check_file_kind(path)
    data = safe_torch_load(path)
    if not isinstance(data, Mapping):
        raise WeightsError(f"The {what} {path} holds a {type(data).__name__}, not a dict of tensors; it is not a {what}.")
    used_key = ""
    state: Any = data
    if state_key in data and isinstance(data[state_key], Mapping):
        state, used_key = data[state_key], state_key
    elif not all(isinstance(v, torch.Tensor) for v in data.values()):
        _name_other_layout(data, path, what)
        found = ", ".join(sorted(str(k) for k in data)[:8])
        raise WeightsError(
            f"The {what} {path} has no '{state_key}' entry (top-level keys: {found}); it is not a {what} of this kind."
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"The {what} {path} has non-tensor entries in its weights (first: '{bad[0]}'); it is damaged.")
    extra = {k: v for k, v in data.items() if k != used_key} if used_key else {}
    return ForeignCheckpoint(path=path, state=dict(state), extra=extra, state_key=used_key)


def _name_other_layout(data: Mapping[str, Any], path: Path, what: str) -> None:
    """A file of another known kind (e.g. a vocoder's ``{"generator": ...}``) is named as such."""
    from mka_core.convert.families import KINDS, identify

    for key, value in data.items():
        if isinstance(value, Mapping) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            found = identify(value)
            if found is not None:
                kind = KINDS[found]
                raise WeightsError(f"{path} is not a {what}; it looks like {kind.description} (under '{key}') - "
                                   f"{kind.command}.")


def iter_tensors(value: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor inside nested dicts/lists/tuples, with a dotted path (for optimizer states)."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from iter_tensors(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from iter_tensors(item, f"{prefix}.{index}" if prefix else str(index))


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file (recorded in the conversion report and useful for the weights catalogue)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
