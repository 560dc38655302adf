"""The inpainting mask drawn on a spectrogram: boxes in seconds and mel bins.

The page shows the init audio's mel (one pixel column per frame, one row per mel bin) and
the user drags boxes on it. A box is sent as ``{"start": s, "end": s}`` (every mel bin of
that time span) or with ``"low_bin"``/``"high_bin"`` (inclusive mel bin indices, 0 = lowest
frequency) for a time x frequency box.

:func:`boxes_to_mask_spec` turns the boxes into the range syntax of :mod:`mka_core.masks`
(``"1.024000-2.048000@312.5-1250.0"``), which :func:`mka_core.generate.generate` parses like
any ``--mask`` and which the output's sidecar records, so ``mka generate --replay`` remakes
the result. Frequency bounds are placed halfway between neighbouring bin centres (the centres
come from :func:`mka_core.masks.mel_bin_centres`, the same scale the parser uses), so a box
over bins ``a..b`` selects exactly bins ``a..b``; times a whole number of frames long select
exactly those frames. The tests check that the parsed mask equals the drawn one.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, model_validator

from mka_core.config import StrictModel
from mka_core.errors import InputError


class MaskBox(StrictModel):
    """One drawn box: a time span in seconds and optionally a band of mel bins (inclusive)."""

    start: float = Field(ge=0)
    end: float = Field(gt=0)
    low_bin: int | None = Field(None, ge=0)
    high_bin: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> MaskBox:
        if self.end <= self.start:
            raise ValueError(f"a box must end after it starts (start {self.start:g} s, end {self.end:g} s)")
        if (self.low_bin is None) != (self.high_bin is None):
            raise ValueError("give both low_bin and high_bin, or neither")
        if self.low_bin is not None and self.high_bin < self.low_bin:
            raise ValueError(f"high_bin {self.high_bin} is below low_bin {self.low_bin}")
        return self


def boxes_to_mask_spec(boxes: Sequence[MaskBox], *, n_mels: int, sample_rate: int, duration: float) -> str:
    """The :mod:`mka_core.masks` range string selecting exactly the drawn boxes."""
    from mka_core.masks import mel_bin_centres

    if not boxes:
        raise InputError("The inpainting mask is empty; drag over the spectrogram to mark the region to regenerate.")
    centres = mel_bin_centres(n_mels, sample_rate)
    nyquist = sample_rate / 2
    items = []
    for number, box in enumerate(boxes, start=1):
        # A box ending a hair past the audio (rounding on the page) is clamped; one clearly outside is refused.
        end = min(box.end, duration) if box.end <= duration + 1e-3 else box.end
        if end > duration or box.start >= end:
            raise InputError(
                f"Mask box {number} ({box.start:g}-{box.end:g} s) is outside the init audio, which is {duration:.3f} s long."
            )
        item = f"{box.start:.6f}-{end:.6f}"
        if box.low_bin is not None and not (box.low_bin == 0 and box.high_bin == n_mels - 1):
            if box.high_bin >= n_mels:
                raise InputError(f"Mask box {number} reaches mel bin {box.high_bin}; this model has bins 0-{n_mels - 1}.")
            low = 0.0 if box.low_bin == 0 else (centres[box.low_bin - 1] + centres[box.low_bin]) / 2
            high = nyquist if box.high_bin == n_mels - 1 else (centres[box.high_bin] + centres[box.high_bin + 1]) / 2
            item += f"@{low:.4f}-{high:.4f}"
        items.append(item)
    return ",".join(items)
