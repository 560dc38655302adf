"""Which model folder a name means, the same way for the CLI and for Python.

``resolve_model(name)`` is used by ``mka generate --model``, ``mka serve --model``,
``mka eval --model`` and ``Pipeline.from_pretrained(name)``:

* ``None`` or ``"default"`` - the embedded default model (``mka_core/default_model/``);
* a folder path holding ``model_index.json`` - used as is;
* a name - ``$MKA_HOME/models/<name>`` (models converted by ``mka weights pull``, trained with
  ``mka train``, or put there by hand);
* a catalogue model that is not pulled yet - an error giving the one command that pulls it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mka_core.errors import InputError

INDEX = "model_index.json"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
DEFAULT_NAME = "default"


def models_home() -> Path:
    from mka_core.weights import mka_home

    return mka_home() / "models"


def _default() -> Path:
    if (DEFAULT_MODEL_DIR / INDEX).is_file():
        return DEFAULT_MODEL_DIR
    raise InputError("The default model is not installed with this copy of mka; pass --model with a folder or a pulled "
                     "model name (see `mka weights`).")


def named_model(name: str) -> Path | None:
    """The folder ``name`` resolves to when it is a name rather than a path (None if nothing is there).

    A catalogue model that is not pulled yet raises with the command that pulls it.
    """
    if name == DEFAULT_NAME:
        return _default()
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        return None
    registered = models_home() / name
    if registered.is_dir():
        return registered.resolve()
    from mka_core.hub.catalogue import find_entry

    entry = find_entry(name)
    if entry is not None and entry.is_model:
        how = (f"run `mka weights pull {name} --allow-network`" if entry.downloadable
               else f"download it by hand and run `mka weights pull {name} --from FILE_OR_DIR` (see `mka weights`)")
        raise InputError(f"The model '{name}' is in the catalogue but not pulled yet: {how}.")
    return None


def resolve_model(name: str | Path | None) -> Path:
    """The folder of the model named ``name`` (see the module docstring)."""
    if name is None:
        return _default()
    text = str(name)
    path = Path(text).expanduser()
    if path.is_dir():
        return path.resolve()
    found = named_model(text)
    if found is not None:
        return found
    raise InputError(
        f"Model '{text}' is neither a folder nor a model in {models_home()}; pass a folder made by `mka new-model`, "
        "'default', or a name from `mka weights`."
    )


def index_hash(directory: Path) -> str | None:
    """SHA-256 of the model's ``model_index.json`` (identifies the model a sidecar was made with)."""
    path = Path(directory) / INDEX
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()
