"""Property tests for the parsers and arithmetic users reach.

* mask specs (``mka_core.masks``): any text is a mask or one InputError, never another
  exception; valid ranges and boxes mark exactly the frames and bins they name;
* durations, frames and latent widths (``mka_core.geometry``): the rounding rules hold for
  every duration, and frames -> seconds -> frames is the identity;
* manifests (``training.data.manifest``): rows written and read back are the rows written.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mka_core import geometry
from mka_core.errors import InputError
from mka_core.masks import mask_from_input, mel_bin_centres

SR, HOP, N_MELS, GRANULARITY = 16000, 256, 80, 16
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def geometry_for(seconds: float) -> dict:
    frames, samples = geometry.frames_for(seconds, sample_rate=SR, hop_length=HOP, granularity=GRANULARITY)
    return dict(frames=frames, n_mels=N_MELS, num_samples=samples, sample_rate=SR, hop_length=HOP, fmax=8000.0)


# -- masks ---------------------------------------------------------------------------------------------------

durations = st.floats(min_value=0.1, max_value=30.0, allow_nan=False).map(lambda d: round(d, 3))


@FAST
@given(spec=st.text(max_size=40), seconds=durations)
@example(spec="1e3-2e3", seconds=1.0)
@example(spec="nan-inf", seconds=1.0)
@example(spec="0.1-0.2@-5-3", seconds=1.0)
@example(spec="\x00", seconds=1.0)
@example(spec="0.1-0.2@1k-2kk", seconds=1.0)
@example(spec="9" * 400 + "-1", seconds=1.0)
@example(spec="~0/", seconds=1.0)  # ~user of no known user
@example(spec="~nobody-here/mask.npy", seconds=1.0)
def test_any_text_is_a_mask_or_one_input_error(spec, seconds):
    try:
        mask = mask_from_input(spec, **geometry_for(seconds))
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert mask.shape == (1, 1, N_MELS, geometry_for(seconds)["frames"])
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0} and mask.any()


def time_ranges(total: float):
    """Comma-separated START-END ranges (seconds) inside ``[0, total]``, written in varied styles."""
    point = st.integers(min_value=0, max_value=int(total * 1000)).map(lambda ms: ms / 1000)
    pair = st.tuples(point, point).filter(lambda p: p[0] != p[1]).map(sorted)
    return st.lists(pair, min_size=1, max_size=4)


def write_number(value: float, style: int) -> str:
    text = f"{value:g}" if style == 0 else f"{value:.3f}" if style == 1 else repr(value)
    return text[1:] if style == 2 and text.startswith("0.") else text  # ".5" is accepted too


@FAST
@given(data=st.data(), seconds=durations, style=st.integers(0, 2), spaced=st.booleans())
def test_time_ranges_mark_exactly_the_frames_they_overlap(data, seconds, style, spaced):
    geo = geometry_for(seconds)
    ranges = data.draw(time_ranges(geo["num_samples"] / SR))
    sep = " - " if spaced else "-"
    spec = ", ".join(f"{write_number(a, style)}{sep}{write_number(b, style)}" for a, b in ranges)
    marked = mask_from_input(spec, **geo)[0, 0].numpy()
    assert (marked == marked[0]).all(), "time ranges cover every mel bin"
    expected = np.zeros(geo["frames"], np.float32)
    for start, end in ranges:
        s, e = round(start * SR), round(end * SR)
        for frame in range(geo["frames"]):  # frame f holds samples [f * hop, (f + 1) * hop)
            if frame * HOP < e and (frame + 1) * HOP > s:
                expected[frame] = 1
    assert np.array_equal(marked[0], expected), (spec, np.flatnonzero(marked[0]), np.flatnonzero(expected))


@FAST
@given(data=st.data(), kilo=st.booleans())
def test_boxes_mark_exactly_the_bins_whose_centre_is_inside(data, kilo):
    geo = geometry_for(2.0)
    centres = mel_bin_centres(N_MELS, SR, 0.0, 8000.0)
    low = data.draw(st.integers(0, 7999))
    high = data.draw(st.integers(low + 1, 8000))
    inside = (centres >= low) & (centres <= high)
    assume(inside.any())
    band = f"{low / 1000:g}k-{high / 1000:g}k" if kilo else f"{low}-{high}Hz"
    marked = mask_from_input(f"0.5-1.0@{band}", **geo)[0, 0].numpy()
    first, last = round(0.5 * SR) // HOP, math.ceil(round(1.0 * SR) / HOP)
    assert np.array_equal(marked[:, first].astype(bool), inside)
    assert not marked[:, :first].any() and not marked[:, last:].any()


@FAST
@given(shape=st.lists(st.integers(0, 90), min_size=0, max_size=3), seconds=durations)
def test_arrays_of_any_shape_are_a_mask_or_one_input_error(shape, seconds):
    geo = geometry_for(seconds)
    array = np.ones(shape, np.float32)
    try:
        mask = mask_from_input(array, **geo)
    except InputError as exc:
        assert "expected" in str(exc) or "nothing" in str(exc)
        return
    width = shape[-1]
    assert mask.shape == (1, 1, N_MELS, geo["frames"])
    assert mask[0, 0, :, :width].all() and not mask[0, 0, :, width:].any()


# -- durations, frames, latents -------------------------------------------------------------------------------


@FAST
@given(seconds=st.floats(min_value=0.1, max_value=120.0, allow_nan=False),
       granularity=st.sampled_from([1, 2, 4, 8, 16, 32]), hop=st.sampled_from([128, 160, 256, 320]))
def test_frames_cover_the_request_with_the_fewest_model_frames(seconds, granularity, hop):
    frames, samples = geometry.frames_for(seconds, sample_rate=SR, hop_length=hop, granularity=granularity)
    assert samples == round(seconds * SR)
    assert frames % granularity == 0
    assert frames * hop >= samples  # the request is covered ...
    assert frames == granularity or (frames - granularity) * hop < samples  # ... by the fewest model frames
    assert geometry.seconds_for_frames(frames, sample_rate=SR, hop_length=hop) >= samples / SR


@FAST
@given(columns=st.integers(min_value=1, max_value=400))
def test_frames_to_seconds_and_back_is_the_identity(columns):
    frames = columns * GRANULARITY
    seconds = geometry.seconds_for_frames(frames, sample_rate=SR, hop_length=HOP)
    assume(seconds <= geometry.MAX_DURATION)
    assert geometry.frames_for(seconds, sample_rate=SR, hop_length=HOP, granularity=GRANULARITY)[0] == frames
    assert geometry.latent_width(frames, 8) == frames // 8


@FAST
@given(value=st.one_of(st.floats(), st.integers(-10**6, 10**6), st.booleans(), st.text(max_size=5), st.none()))
def test_durations_are_checked_with_one_sentence(value):
    try:
        checked = geometry.check_duration(value)
    except InputError as exc:
        assert str(exc).endswith(".")
        return
    assert isinstance(checked, float) and geometry.MIN_DURATION <= checked <= geometry.MAX_DURATION
    assert not isinstance(value, bool)


# -- manifests ---------------------------------------------------------------------------------------------------

# Tabs and line breaks cannot live inside a TSV field; the writer folds all whitespace runs to one space.
SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\'), max_size=30)
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
names = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="-_."), min_size=1, max_size=12)


def folded(text: str) -> str:
    return " ".join(text.split())


def round_trip(rows_data):
    from training.data.manifest import ManifestRow, read_manifest, write_manifest

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder).resolve()
        rows = [ManifestRow(name=name, caption=caption, audio_path=str(base / "audio" / f"{i}.wav"),
                            dataset=dataset, mel_path=str(base / "mels" / f"{i}.npy") if with_mel else "",
                            duration=duration, extra={"labels": labels})
                for i, (name, caption, dataset, with_mel, duration, labels) in enumerate(rows_data)]
        write_manifest(base / "m.tsv", rows)
        back = read_manifest(base / "m.tsv")
    assert len(back) == len(rows)
    for row, got in zip(rows, back):
        assert got.name == (folded(row.name) or got.name)
        assert got.caption == folded(row.caption), (row.caption, got.caption)
        assert got.dataset == folded(row.dataset)
        assert got.audio_path == row.audio_path and got.mel_path == row.mel_path
        assert (got.duration is None) == (row.duration is None)
        if row.duration is not None:
            assert abs(got.duration - row.duration) <= 5e-5
        assert got.extra.get("labels", "") == folded(row.extra["labels"])


def manifest_rows(text):
    durations_or_none = st.one_of(st.none(), st.floats(min_value=0, max_value=1e5, allow_nan=False))
    return st.lists(st.tuples(names, text, text, st.booleans(), durations_or_none, text), min_size=1, max_size=5)


@FAST
@given(rows=manifest_rows(SAFE_TEXT))
@example(rows=[("a", "  tabs\tand\nnew lines\r\n inside ", "set", True, 1.23456, "dog; cat")])
def test_manifest_rows_round_trip(rows):
    round_trip(rows)


@settings(max_examples=60, deadline=None)
@given(rows=manifest_rows(ANY_TEXT))
@example(rows=[("a", 'the "big" bell \\ rings', "", False, None, "")])
def test_manifest_captions_with_quotes_and_backslashes_round_trip(rows):
    round_trip(rows)
