"""Inpainting masks from what users type or pass: ranges, boxes, files, arrays.

A mask is ``[1, 1, n_mels, frames]`` float32 on the CPU, in the mel layout used everywhere
(row = mel bin, lowest frequency first; column = frame). **1 marks the region to regenerate**,
0 the region to keep.

Accepted inputs (see ``docs/generate.md``):

* **Time ranges** in seconds, comma-separated: ``"2.0-3.5,6-7"`` regenerates every mel bin
  of frames 2.0 s to 3.5 s and 6 s to 7 s.
* **Time x frequency boxes**: ``"2.0-3.5@300-2000"`` regenerates 2.0-3.5 s, but only the mel
  bins whose centre frequency lies in 300-2000 Hz (``k`` multiplies by 1000: ``@300-2k``).
  Ranges and boxes mix freely: ``"0.5-1,2-3@0-1k"``.
* **A .npy file** of shape ``[n_mels, frames]`` or ``[frames]`` (time only).
* **A PNG image** ``n_mels`` pixels high and ``frames`` wide, drawn as a spectrogram is shown:
  **row 0 is the highest frequency**; white (>= 50 % grey) = 1 = regenerate.
* **A torch tensor or numpy array** with the shapes of the .npy file (leading size-1 axes are
  ignored).

Time mapping: frame ``f`` stands for samples ``[f*hop, (f+1)*hop)``; a range marks every
frame it overlaps. Widths of arrays and images may be anything from the audio's mel length
(``num_samples // hop``) up to ``frames`` (the length rounded up to the model's granularity);
missing columns at the end are 0 (kept; they lie past the end of the audio and are cropped).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mka_core.errors import InputError, shown

#: The syntax, quoted by error messages.
RANGE_SYNTAX = "START-END in seconds, e.g. 2.0-3.5, or a time x frequency box 2.0-3.5@300-2000 (Hz)"

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_TIME_RANGE = re.compile(rf"^\s*{_NUMBER}\s*s?\s*-\s*{_NUMBER}\s*s?\s*$", re.IGNORECASE)
_FREQ_RANGE = re.compile(rf"^\s*{_NUMBER}\s*(k?)\s*(?:hz)?\s*-\s*{_NUMBER}\s*(k?)\s*(?:hz)?\s*$", re.IGNORECASE)
_FILE_SUFFIXES = (".npy", ".png")


def mask_from_input(
    mask: Any,
    *,
    frames: int,
    n_mels: int,
    num_samples: int,
    sample_rate: int,
    hop_length: int,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> torch.Tensor:
    """Turn any accepted mask input into a ``[1, 1, n_mels, frames]`` float32 tensor (1 = regenerate).

    ``fmin``/``fmax`` are the mel filterbank's frequency range (default 0 to Nyquist); they place
    the bins of frequency boxes. Raises :class:`InputError` with one sentence for bad input.
    """
    geometry = _Geometry(frames, n_mels, num_samples, sample_rate, hop_length, fmin,
                         float(fmax) if fmax is not None else sample_rate / 2)
    if isinstance(mask, torch.Tensor):
        grid = _from_array(mask.detach().float().cpu().numpy(), geometry, "The mask tensor")
    elif isinstance(mask, np.ndarray):
        grid = _from_array(mask, geometry, "The mask array")
    elif isinstance(mask, Path) or (isinstance(mask, str) and _looks_like_file(mask)):
        grid = _from_file(_expanded(mask), geometry)
    elif isinstance(mask, str):
        grid = _from_ranges(mask, geometry)
    else:
        raise InputError(
            f"A mask must be a range string, a .npy or .png file, or an array; got {type(mask).__name__}."
        )
    if not grid.any():
        raise InputError("The mask selects nothing to regenerate (it is all 0); mark the region to regenerate with 1 (white).")
    return torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))[None, None]


def describe_mask(mask: Any) -> str:
    """A short printable form of a mask input (for sidecars and tables)."""
    if isinstance(mask, (str, Path)):
        return str(mask)
    shape = tuple(getattr(mask, "shape", ()))
    return f"<{type(mask).__name__} {shape}>"


# -- geometry -----------------------------------------------------------------------------------


class _Geometry:
    def __init__(self, frames: int, n_mels: int, num_samples: int, sample_rate: int, hop_length: int,
                 fmin: float, fmax: float) -> None:
        self.frames, self.n_mels, self.num_samples = int(frames), int(n_mels), int(num_samples)
        self.sample_rate, self.hop_length = int(sample_rate), int(hop_length)
        self.fmin, self.fmax = float(fmin), float(fmax)

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def min_width(self) -> int:
        """The mel length of the audio itself; narrower masks would leave audio unaccounted for."""
        return max(1, min(self.frames, self.num_samples // self.hop_length))

    def frame_span(self, start_s: float, end_s: float) -> tuple[int, int]:
        """Frames overlapped by ``[start_s, end_s)`` (frame f covers samples ``[f*hop, (f+1)*hop)``)."""
        start = int(round(start_s * self.sample_rate))
        end = int(round(end_s * self.sample_rate))
        return start // self.hop_length, min(self.frames, math.ceil(end / self.hop_length))

    def bin_centres(self) -> np.ndarray:
        return mel_bin_centres(self.n_mels, self.sample_rate, self.fmin, self.fmax)


def mel_bin_centres(n_mels: int, sample_rate: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Centre frequency (Hz) of each mel bin, lowest first, from the front end's own mel scale
    (so masks and mels cannot drift apart)."""
    from mka_core.audio import mel

    config = mel.MelConfig(n_mels=n_mels, sample_rate=sample_rate, fmin=fmin,
                           fmax=sample_rate / 2 if fmax is None else fmax)
    return mel.mel_bin_centres(config).double().numpy()


# -- ranges and boxes ---------------------------------------------------------------------------


def _from_ranges(spec: str, geo: _Geometry) -> np.ndarray:
    items = [item.strip() for item in spec.split(",")]
    if not spec.strip() or any(not item for item in items):
        raise InputError(f"The mask '{shown(spec)}' has an empty range; write {RANGE_SYNTAX}, separated by commas.")
    grid = np.zeros((geo.n_mels, geo.frames), dtype=np.float32)
    for item in items:
        time_part, _, freq_part = item.partition("@")
        start, end = _parse_time_range(time_part, item, geo)
        first, last = geo.frame_span(start, end)
        rows = _parse_freq_range(freq_part, item, geo) if "@" in item else slice(None)
        grid[rows, first:last] = 1.0
    return grid


def _parse_time_range(text: str, item: str, geo: _Geometry) -> tuple[float, float]:
    match = _TIME_RANGE.match(text)
    if not match:
        raise InputError(f"The mask range '{shown(item)}' is malformed; write {RANGE_SYNTAX}.")
    start, end = float(match.group(1)), float(match.group(2))
    if start >= end:
        raise InputError(f"The mask range '{shown(item)}' is empty: its start ({start:g} s) must come before its end ({end:g} s).")
    if int(round(end * geo.sample_rate)) > geo.num_samples:
        raise InputError(
            f"The mask range '{shown(item)}' ends at {end:g} s, after the end of the audio ({geo.duration:.3f} s long)."
        )
    return start, end


def _parse_freq_range(text: str, item: str, geo: _Geometry) -> np.ndarray:
    match = _FREQ_RANGE.match(text)
    if not match:
        raise InputError(f"The frequency part of the mask box '{shown(item)}' is malformed; write {RANGE_SYNTAX}.")
    low = float(match.group(1)) * (1000.0 if match.group(2) else 1.0)
    high = float(match.group(3)) * (1000.0 if match.group(4) else 1.0)
    if low >= high:
        raise InputError(f"The mask box '{shown(item)}' has an empty frequency range: {low:g} Hz must be below {high:g} Hz.")
    if high > geo.fmax + 1e-6:
        raise InputError(
            f"The mask box '{shown(item)}' reaches {high:g} Hz, above the mel spectrogram's top frequency ({geo.fmax:g} Hz)."
        )
    centres = geo.bin_centres()
    rows = (centres >= low) & (centres <= high)
    if not rows.any():
        raise InputError(f"The mask box '{shown(item)}' contains no mel bin centre between {low:g} and {high:g} Hz; widen it.")
    return rows


# -- files and arrays ---------------------------------------------------------------------------


def _expanded(text: str | Path) -> Path:
    """``~`` expanded like a shell does; a ``~name`` of no known user is left as it is."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # pathlib cannot find that user's home
        return Path(text)


def _looks_like_file(text: str) -> bool:
    return text.lower().endswith(_FILE_SUFFIXES) or ("/" in text and _expanded(text).is_file())


def _from_file(path: Path, geo: _Geometry) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"The mask file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"Cannot read the mask file {path} as a numpy array ({exc}).") from exc
        return _from_array(array, geo, f"The mask file {path.name}")
    if suffix == ".png":
        return _from_image(path, geo)
    raise InputError(f"The mask file {path} is neither .npy nor .png; give one of those or a range like 2.0-3.5.")


def _from_image(path: Path, geo: _Geometry) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"Cannot read the mask image {path} ({exc.__class__.__name__}).") from exc
    height, width = grey.shape
    if height != geo.n_mels or not geo.min_width <= width <= geo.frames:
        raise InputError(
            f"The mask image {path.name} is {width}x{height} pixels; expected {geo.n_mels} pixels high (mel bins) "
            f"and {_width_text(geo)} pixels wide (frames)."
        )
    # Images show high frequencies at the top; the mel layout has bin 0 (lowest) first.
    grid = (grey[::-1] >= 0.5).astype(np.float32)
    return _pad_width(grid, geo)


def _from_array(array: np.ndarray, geo: _Geometry, what: str) -> np.ndarray:
    array = np.asarray(array)
    shape = tuple(array.shape)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    expected = f"[{geo.n_mels}, {_width_text(geo)}] (mel bins x frames) or [{_width_text(geo)}] (frames, time only)"
    if array.ndim == 1:
        ok = geo.min_width <= array.shape[0] <= geo.frames
        array = np.broadcast_to(array[None, :], (geo.n_mels, array.shape[0])) if ok else array
    else:
        ok = array.ndim == 2 and array.shape[0] == geo.n_mels and geo.min_width <= array.shape[1] <= geo.frames
    if not ok:
        raise InputError(f"{what} has shape {list(shape)}; expected {expected}.")
    if array.dtype == np.bool_:
        array = array.astype(np.float32)
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{what} holds {array.dtype} values; expected numbers between 0 and 1.")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError(f"{what} contains NaN or infinite values; use 0 (keep) and 1 (regenerate).")
    if array.min() < 0 or array.max() > 1:
        raise InputError(
            f"{what} has values from {array.min():g} to {array.max():g}; use values between 0 (keep) and 1 (regenerate)."
        )
    return _pad_width(np.array(array, dtype=np.float32), geo)


def _width_text(geo: _Geometry) -> str:
    return str(geo.frames) if geo.min_width == geo.frames else f"{geo.min_width}..{geo.frames}"


def _pad_width(grid: np.ndarray, geo: _Geometry) -> np.ndarray:
    if grid.shape[1] == geo.frames:
        return grid
    return np.pad(grid, ((0, 0), (0, geo.frames - grid.shape[1])))
