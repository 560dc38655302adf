"""What a model folder's ``origin`` says about its weights, and the note for untrained ones.

``mka new-model`` writes a folder whose VAE and U-Net (and, with ``--preset tiny``, the
conditioner) are randomly initialised: the start of a training run, not a model that makes
sounds. It records ``origin = "untrained:new-model:<preset>"`` in ``model_index.json``;
training replaces the origin when it exports (``trained:<run>``...). Generating with an
untrained model warns once per loaded pipeline, so nobody mistakes its noise for a bug.
"""

from __future__ import annotations

import warnings
from typing import Any

#: The origin prefix of a folder whose weights were never trained.
UNTRAINED_PREFIX = "untrained:"


def untrained_origin(preset: str) -> str:
    """The origin ``mka new-model --preset PRESET`` records."""
    return f"{UNTRAINED_PREFIX}new-model:{preset}"


def is_untrained(origin: str | None) -> bool:
    return bool(origin) and str(origin).startswith(UNTRAINED_PREFIX)


def warn_if_untrained(pipe: Any) -> None:
    """Warn (once per pipeline object) that ``pipe`` generates from random weights."""
    config = getattr(pipe, "config", None)
    if not is_untrained(getattr(config, "origin", None)) or getattr(pipe, "_untrained_warned", False):
        return
    pipe._untrained_warned = True
    where = getattr(pipe, "directory", None)
    model = f"the model {where}" if where is not None else "this model"
    warnings.warn(
        f"{model} has random weights from new-model, so it makes noise, not sounds; train it with "
        "`mka train vae` and `mka train diffusion` (docs/training.md), or generate with a trained model.",
        UserWarning,
        stacklevel=3,
    )
