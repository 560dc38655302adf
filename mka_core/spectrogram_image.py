"""A mel spectrogram as a coloured PNG (Pillow only, no matplotlib).

Layout matches what people expect and what mask images use: time runs left to right, the
highest mel bin is row 0 (top). Values are mapped linearly from the mel's own range (or
``vmin``/``vmax``) through a perceptually ordered dark-blue -> green -> yellow colour map.
"""

from __future__ import annotations

import io

import numpy as np
import torch

# Anchor colours of the map (dark blue-violet, blue, teal, green, yellow), interpolated linearly.
_ANCHORS = np.array(
    [
        [0.267, 0.005, 0.329],
        [0.230, 0.322, 0.546],
        [0.128, 0.567, 0.551],
        [0.369, 0.789, 0.383],
        [0.993, 0.906, 0.144],
    ],
    dtype=np.float32,
)


def colour_map(values: np.ndarray) -> np.ndarray:
    """``[H, W]`` values in [0, 1] -> ``[H, W, 3]`` uint8 RGB."""
    scaled = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.floor(scaled).astype(np.int64).clip(0, len(_ANCHORS) - 2)
    frac = (scaled - low)[..., None]
    rgb = _ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac
    return (rgb * 255 + 0.5).astype(np.uint8)


def mel_to_png_bytes(mel: torch.Tensor | np.ndarray, *, vmin: float | None = None, vmax: float | None = None) -> bytes:
    """PNG bytes of a mel ``[n_mels, frames]`` (leading size-1 axes are dropped)."""
    from PIL import Image

    array = mel.detach().float().cpu().numpy() if isinstance(mel, torch.Tensor) else np.asarray(mel, dtype=np.float32)
    while array.ndim > 2:
        array = array[0]
    low = float(array.min()) if vmin is None else vmin
    high = float(array.max()) if vmax is None else vmax
    normalised = (array - low) / (high - low) if high > low else np.zeros_like(array)
    image = Image.fromarray(colour_map(normalised[::-1]), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
