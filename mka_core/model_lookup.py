"""Which model folder a command uses: ``--model DIR``, a registered name, or the embedded default.

* a folder path (holding ``model_index.json``) is used as is;
* otherwise the name is looked up in ``$MKA_HOME/models/<name>`` (models installed by
  ``mka weights`` / ``mka train`` / by hand);
* without ``--model``, the embedded default model folder ``mka_core/default_model/`` is used
  when it is installed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mka_core.errors import InputError

INDEX = "model_index.json"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"


def models_home() -> Path:
    from mka_core.weights import mka_home

    return mka_home() / "models"


def resolve_model(name: str | None) -> Path:
    """The folder of the model named ``name`` (see the module docstring)."""
    if name is None:
        if (DEFAULT_MODEL_DIR / INDEX).is_file():
            return DEFAULT_MODEL_DIR
        raise InputError(
            "No model given and no default model is installed; pass --model DIR (a folder made by `mka new-model`)."
        )
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    registered = models_home() / name
    if "/" not in name and registered.is_dir():
        return registered.resolve()
    raise InputError(
        f"Model '{name}' is neither a folder nor a model in {models_home()}; pass a folder made by `mka new-model`."
    )


def index_hash(directory: Path) -> str | None:
    """SHA-256 of the model's ``model_index.json`` (identifies the model a sidecar was made with)."""
    path = Path(directory) / INDEX
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()
