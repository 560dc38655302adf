"""Random training masks for the inpainting fine-tune (the paper's mask mix).

Make-An-Audio fine-tunes its inpainting model on two families of masks over the mel
spectrogram (``[n_mels, frames]``, 1 = region to regenerate):

* **Irregular** masks in the style of LaMa, in three classes - ``thin``, ``medium``,
  ``thick`` - made of random polylines drawn with a brush whose width depends on the class,
  plus (medium and thick) random boxes. The image-inpainting sizes are rescaled to a
  spectrogram: lengths and widths below are in pixels of an 80-bin mel and scale with
  ``n_mels / 80``. On an 80 x 624 mel they cover on average about 7 % (thin), 14 % (medium)
  and 23 % (thick) of the spectrogram.
* **Frame-based** masks in the style of wav2vec 2.0: whole frames (every mel bin) in spans
  of ``L = 10`` frames. ``p`` is the *nominal* coverage: ``floor(p * frames / L + u)`` span
  starts (``u ~ U[0, 1)``, so on average exactly ``p * frames / L``) are drawn without
  replacement, so ``starts * L / frames ~= p`` before overlaps. Overlapping spans make the
  real coverage lower: on 624-frame clips it averages 26 % for p = 30 %, 40 % for 50 % and
  52 % for 70 % (close to ``1 - exp(-p)``).

Everything is driven by a :class:`numpy.random.Generator`, so a seed gives the same mask on
every machine. :func:`random_training_mask` is the one entry point a trainer needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mka_core.errors import InputError

#: Span length of frame-based masks, in mel frames (wav2vec 2.0's M = 10).
SPAN_FRAMES = 10
#: Nominal coverages of the paper's frame-based masks.
FRAME_COVERAGES = {"frame30": 0.3, "frame50": 0.5, "frame70": 0.7}
#: The reference mel height the irregular sizes are written for.
_REFERENCE_BINS = 80


@dataclass(frozen=True)
class IrregularMaskStyle:
    """One irregular class: polyline strokes and optional boxes (sizes in 80-bin pixels)."""

    min_strokes: int
    max_strokes: int
    max_vertices: int
    max_segment: float
    min_width: float
    max_width: float
    box_probability: float = 0.0
    max_boxes: int = 0
    min_box: float = 0.0
    max_box: float = 0.0


IRREGULAR_STYLES: dict[str, IrregularMaskStyle] = {
    # Many short strokes of a fine brush: scattered holes, each easy to fill from context.
    "thin": IrregularMaskStyle(min_strokes=8, max_strokes=40, max_vertices=6, max_segment=40,
                               min_width=1, max_width=4),
    "medium": IrregularMaskStyle(min_strokes=3, max_strokes=10, max_vertices=8, max_segment=60,
                                 min_width=5, max_width=14, box_probability=0.3, max_boxes=3, min_box=10, max_box=40),
    # Few wide strokes and large boxes: long stretches of time x frequency to invent.
    "thick": IrregularMaskStyle(min_strokes=2, max_strokes=8, max_vertices=8, max_segment=80,
                                min_width=10, max_width=24, box_probability=0.3, max_boxes=3, min_box=20, max_box=60),
}

MASK_KINDS = (*IRREGULAR_STYLES, *FRAME_COVERAGES)


def irregular_mask(style: IrregularMaskStyle, n_mels: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Random polylines (and boxes) drawn on an ``[n_mels, frames]`` canvas."""
    from PIL import Image, ImageDraw

    scale = n_mels / _REFERENCE_BINS
    canvas = Image.new("L", (frames, n_mels), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(style.min_strokes, style.max_strokes + 1))):
        width = max(1, int(round(rng.uniform(style.min_width, style.max_width) * scale)))
        x, y = float(rng.uniform(0, frames)), float(rng.uniform(0, n_mels))
        points = [(x, y)]
        for _ in range(int(rng.integers(1, style.max_vertices + 1))):
            angle = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(width, max(width + 1.0, style.max_segment * scale))
            x = float(np.clip(x + length * math.cos(angle), 0, frames - 1))
            y = float(np.clip(y + length * math.sin(angle), 0, n_mels - 1))
            points.append((x, y))
        draw.line(points, fill=255, width=width)
        # Round joints and caps, as a brush would leave them.
        radius = width / 2
        for px, py in points:
            draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=255)
    if style.max_boxes and rng.random() < style.box_probability:
        for _ in range(int(rng.integers(1, style.max_boxes + 1))):
            box_w = rng.uniform(style.min_box, style.max_box) * scale
            box_h = min(n_mels, rng.uniform(style.min_box, style.max_box) * scale)
            left = rng.uniform(0, max(1.0, frames - box_w))
            top = rng.uniform(0, max(1.0, n_mels - box_h))
            draw.rectangle((left, top, left + box_w, top + box_h), fill=255)
    return (np.asarray(canvas, dtype=np.float32) > 127).astype(np.float32)


def frame_mask(coverage: float, n_mels: int, frames: int, rng: np.random.Generator,
               span: int = SPAN_FRAMES) -> np.ndarray:
    """wav2vec 2.0-style spans of ``span`` whole frames at nominal coverage ``coverage``."""
    if not 0 < coverage <= 1:
        raise InputError(f"Frame-mask coverage must be in (0, 1], got {coverage}.")
    span = max(1, min(span, frames))
    positions = frames - span + 1
    starts = int(coverage * frames / span + rng.random())
    starts = max(1, min(starts, positions))
    chosen = rng.choice(positions, size=starts, replace=False)
    columns = np.zeros(frames, dtype=np.float32)
    for start in chosen:
        columns[start:start + span] = 1.0
    return np.repeat(columns[None, :], n_mels, axis=0)


def random_training_mask(kind: str, n_mels: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """A ``[n_mels, frames]`` float32 mask (1 = regenerate) of ``kind``.

    ``kind``: ``thin``, ``medium``, ``thick`` (irregular), ``frame30``, ``frame50``,
    ``frame70`` (frame-based), ``irregular`` or ``frame`` (one of the family at random) or
    ``any`` (the paper's mix: irregular or frame-based with equal probability, then a class).
    A mask never comes back empty.
    """
    if kind == "any":
        kind = "irregular" if rng.random() < 0.5 else "frame"
    if kind == "irregular":
        kind = str(rng.choice(list(IRREGULAR_STYLES)))
    elif kind == "frame":
        kind = str(rng.choice(list(FRAME_COVERAGES)))
    if kind in IRREGULAR_STYLES:
        mask = irregular_mask(IRREGULAR_STYLES[kind], n_mels, frames, rng)
    elif kind in FRAME_COVERAGES:
        mask = frame_mask(FRAME_COVERAGES[kind], n_mels, frames, rng)
    else:
        valid = ", ".join((*MASK_KINDS, "irregular", "frame", "any"))
        raise InputError(f"Unknown training mask kind '{kind}'; choose one of: {valid}.")
    if not mask.any():  # a stroke can be clipped away on tiny canvases; never hand back nothing
        mask[:, int(rng.integers(0, frames))] = 1.0
    return mask
