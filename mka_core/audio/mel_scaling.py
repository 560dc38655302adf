"""Mel value scalings: the log10 mel of family A and the dB-in-[0, 1] mel of family B.

Both start from the same floored magnitude ``m = max(mel, floor)``:

* ``"log10"`` (family A, mka's default): ``L = log10(m)``, about [-5, 1.5]. This is also the
  space every vocoder takes (the :class:`~mka_core.models.vocoders.base.Vocoder` contract).
* ``"db_unit"`` (family B, Make-An-Audio's hosted models): the level in dB relative to
  ``db_ref`` and mapped so that ``db_min`` dB is 0, clipped to [0, 1]::

      u = clip((20 * L - db_ref - db_min) / -db_min, 0, 1)      (db_ref 20, db_min -100)

  i.e. ``u = clip(0.2 L + 0.8, 0, 1)``. The family-B vocoder takes ``u``; the family-B VAE
  (and so mka's front end, which produces what the VAE sees) takes ``2u - 1`` in [-1, 1].

:func:`to_model_space` and :func:`to_log10` convert between the front end's output space and
the log10 space the vocoders take; for ``"log10"`` both are the identity. Going through log10
and back is exact up to float rounding for every value the clip lets through, and the clip
itself matches the reference, which clamps the decoded mel to [0, 1] before its vocoder.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def db_unit_from_log10(log_mel: torch.Tensor, db_ref: float = 20.0, db_min: float = -100.0) -> torch.Tensor:
    """log10 magnitude -> the family-B [0, 1] dB scale."""
    return ((20.0 * log_mel - db_ref - db_min) / -db_min).clamp(0.0, 1.0)


def log10_from_db_unit(unit: torch.Tensor, db_ref: float = 20.0, db_min: float = -100.0) -> torch.Tensor:
    """The family-B [0, 1] dB scale (clamped first) -> log10 magnitude."""
    return (unit.clamp(0.0, 1.0) * -db_min + db_ref + db_min) / 20.0


def to_model_space(log_mel: torch.Tensor, config: Any) -> torch.Tensor:
    """log10 mel -> the front end's output space for ``config`` (a :class:`MelConfig`)."""
    if getattr(config, "scaling", "log10") == "db_unit":
        return db_unit_from_log10(log_mel, config.db_ref, config.db_min) * 2.0 - 1.0
    return log_mel


def to_log10(mel: torch.Tensor, config: Any) -> torch.Tensor:
    """The front end's output space -> log10 mel (what vocoders take). Family B: ``[-1, 1]`` is clamped."""
    if getattr(config, "scaling", "log10") == "db_unit":
        return log10_from_db_unit((mel + 1.0) / 2.0, config.db_ref, config.db_min)
    return mel


def silence_value(config: Any) -> float:
    """The front end's output for silence (every magnitude at the floor): -5 for log10, -1 for db_unit."""
    floor = math.log10(config.log_floor)
    if getattr(config, "scaling", "log10") == "db_unit":
        return float(to_model_space(torch.tensor(floor, dtype=torch.float64), config))
    return floor
