"""Boxes drawn on the spectrogram become exactly that mask once mka_core.masks parses them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mka_core.errors import InputError
from mka_core.masks import mask_from_input
from mka_core.serve.mask_boxes import MaskBox, boxes_to_mask_spec

RATE, HOP = 16000, 256


def parse(spec: str, num_samples: int, n_mels: int) -> np.ndarray:
    shown = -(-num_samples // HOP)
    frames = -(-shown // 16) * 16
    mask = mask_from_input(spec, frames=frames, n_mels=n_mels, num_samples=num_samples, sample_rate=RATE, hop_length=HOP)
    return mask[0, 0, :, :shown].numpy().astype(bool)


@st.composite
def drawings(draw):
    """Boxes as the page makes them: whole frames [f0, f1), inclusive bins, seconds from frame edges."""
    n_mels = draw(st.sampled_from([64, 80, 128]))
    num_samples = draw(st.integers(int(0.2 * RATE), int(3 * RATE)))
    shown = -(-num_samples // HOP)
    boxes, cells = [], []
    for _ in range(draw(st.integers(1, 4))):
        f0 = draw(st.integers(0, shown - 1))
        f1 = draw(st.integers(f0 + 1, shown))
        band = draw(st.booleans())
        b0 = draw(st.integers(0, n_mels - 1)) if band else 0
        b1 = draw(st.integers(b0, n_mels - 1)) if band else n_mels - 1
        box = {"start": f0 * HOP / RATE, "end": min(f1 * HOP, num_samples) / RATE}
        if band:
            box.update(low_bin=b0, high_bin=b1)
        boxes.append(MaskBox(**box))
        cells.append((f0, f1, b0, b1))
    return n_mels, num_samples, boxes, cells


@settings(max_examples=60, deadline=None)
@given(drawings())
def test_the_parsed_mask_is_exactly_the_drawn_boxes(drawing):
    n_mels, num_samples, boxes, cells = drawing
    spec = boxes_to_mask_spec(boxes, n_mels=n_mels, sample_rate=RATE, duration=num_samples / RATE)
    expected = np.zeros((n_mels, -(-num_samples // HOP)), dtype=bool)
    for f0, f1, b0, b1 in cells:
        expected[b0 : b1 + 1, f0:f1] = True
    np.testing.assert_array_equal(parse(spec, num_samples, n_mels), expected)


def test_a_full_height_box_is_a_plain_time_range():
    spec = boxes_to_mask_spec([MaskBox(start=0.512, end=1.024, low_bin=0, high_bin=79)], n_mels=80, sample_rate=RATE,
                              duration=2.0)
    assert spec == "0.512000-1.024000"


def test_a_box_ending_a_hair_past_the_audio_is_clamped():
    spec = boxes_to_mask_spec([MaskBox(start=1.0, end=2.0004)], n_mels=80, sample_rate=RATE, duration=2.0)
    assert spec == "1.000000-2.000000"


@pytest.mark.parametrize(
    ("boxes", "fragment"),
    [
        ([], "empty"),
        ([MaskBox(start=1.5, end=2.5)], "outside the init audio"),
        ([MaskBox(start=0.0, end=1.0, low_bin=3, high_bin=80)], "bins 0-79"),
    ],
)
def test_bad_boxes_are_input_errors(boxes, fragment):
    with pytest.raises(InputError, match=fragment):
        boxes_to_mask_spec(boxes, n_mels=80, sample_rate=RATE, duration=2.0)


@pytest.mark.parametrize(
    "fields",
    [{"start": 1.0, "end": 0.5}, {"start": 0, "end": 1, "low_bin": 3}, {"start": 0, "end": 1, "low_bin": 5, "high_bin": 2},
     {"start": -1, "end": 1}, {"start": 0, "end": 1, "path": "/etc/passwd"}],
)
def test_malformed_boxes_are_refused(fields):
    with pytest.raises(ValueError):
        MaskBox(**fields)
